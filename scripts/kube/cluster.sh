#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, from the binaries scripts/kube/build.sh
# cached: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a node (Debian's
# containerd 1.6 + runc + bridge CNI, kubelet, kube-proxy in iptables mode, CoreDNS as a host
# process), the KEDA operator and metrics adapter, and the KEDA and Prometheus Operator CRDs.
#
#   cluster.sh up <state dir> [image.tar ...]    start it; images are imported into containerd
#   cluster.sh down <state dir>                  stop everything, remove what the node added
#
# Every port is chosen free at `up` and written to <state dir>/cluster.env (sourced by `down`
# and by the tests), except CoreDNS's 53 on the host address (kubelet's clusterDNS takes an
# address only). One cluster per machine at a time: the bridge (cni0), the pod and service
# ranges and the iptables chains are machine-wide; a lock says so instead of a clash.
# Needs root (containerd, mounts, iptables). Quirks: docs/kubernetes-local.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"


write_env() {
    HOST_IP=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)
    [ -n "$HOST_IP" ] || die "no global IPv4 address on this host (the node needs one)"
    local ports; read -r -a ports <<<"$(free_ports 10)"
    cat >"$S/cluster.env" <<EOF
HOST_IP=$HOST_IP
NODE=$(hostname | tr '[:upper:]' '[:lower:]')
API_PORT=${ports[0]}
ETCD_PORT=${ports[1]}
ETCD_PEER_PORT=${ports[2]}
ADAPTER_PORT=${ports[3]}
KEDA_GRPC_PORT=${ports[4]}
KUBELET_PORT=${ports[5]}
KUBELET_HEALTHZ_PORT=${ports[6]}
PROXY_METRICS_PORT=${ports[7]}
PROXY_HEALTHZ_PORT=${ports[8]}
KEDA_METRICS_PORT=${ports[9]}
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBECONFIG=$S/kubeconfig
CONTAINERD_SOCK=$S/containerd.sock
EOF
}

pki() {
    mkdir -p "$S/pki"
    (
        cd "$S/pki"
        o() { openssl "$@" 2>/dev/null; }
        o genrsa -out sa.key 2048
        o rsa -in sa.key -pubout -out sa.pub
        o req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=taskforge-kube-test-ca
        cert() { # cert <name> <subject> <extensions>
            o req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
            printf '%s\n' "$3" >"$1.ext"
            o x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext"
        }
        cert apiserver /CN=kube-apiserver "subjectAltName=DNS:localhost,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.96.0.1,IP:$HOST_IP
extendedKeyUsage=serverAuth"
        cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
        cert front-proxy-client /CN=front-proxy-client "extendedKeyUsage=clientAuth"
        cert keda /CN=keda-operator "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:$HOST_IP
extendedKeyUsage=serverAuth,clientAuth"
        mkdir -p keda-certs
        cp ca.crt keda-certs/ca.crt && cp keda.crt keda-certs/tls.crt && cp keda.key keda-certs/tls.key
    )
    cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: kube-test, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: $S/pki/ca.crt}}]
users: [{name: admin, user: {client-certificate: $S/pki/admin.crt, client-key: $S/pki/admin.key}}]
contexts: [{name: kube-test, context: {cluster: kube-test, user: admin}}]
current-context: kube-test
EOF
}

control_plane_up() {
    local peer="http://127.0.0.1:$ETCD_PEER_PORT" p="$S/pki"
    start etcd "$ETCD_DIR/etcd" --data-dir "$S/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" --initial-cluster "default=$peer" --log-level warn \
        --listen-metrics-urls ""
    # The apiserver advertises the host address: Endpoints may not be loopback.
    start kube-apiserver "$K8S_DIR/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --advertise-address="$HOST_IP" --secure-port="$API_PORT" \
        --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC --allow-privileged=true \
        --requestheader-client-ca-file="$p/ca.crt" --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- --enable-aggregator-routing=true \
        --proxy-client-cert-file="$p/front-proxy-client.crt" --proxy-client-key-file="$p/front-proxy-client.key"
    wait_for 60 "the apiserver to be ready" kctl get --raw /readyz
    start kube-controller-manager "$K8S_DIR/kube-controller-manager" --kubeconfig="$KUBECONFIG" \
        --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
        --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" --leader-elect=false \
        --bind-address=127.0.0.1 --secure-port=0 --use-service-account-credentials=true \
        --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key"
    start kube-scheduler "$K8S_DIR/kube-scheduler" --kubeconfig="$KUBECONFIG" \
        --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
        --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
}

crds_up() {
    # Server-side: the KEDA and Prometheus Operator CRDs exceed client-side apply's annotation.
    kctl apply --server-side -f "$KEDA_DIR/crds/" >/dev/null
    kctl apply --server-side -f "$PROMOP_DIR/crds/" >/dev/null
    kctl wait --for=condition=Established crd --all --timeout=60s >/dev/null
}

keda_up() {
    kctl create namespace keda >/dev/null
    # The operator runs on the host but must resolve Services as a pod in namespace "keda"
    # would (cluster DNS, that namespace's search path): its own mount namespace gets such a
    # resolv.conf, so a chart that names Redis without its namespace fails here as in a cluster.
    printf 'nameserver %s\nsearch keda.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
        "$HOST_IP" >"$S/keda-resolv.conf"
    # Both read these as a pod of the keda namespace would; WATCH_NAMESPACE="" is every namespace.
    export KEDA_CLUSTER_OBJECT_NAMESPACE=keda POD_NAMESPACE=keda WATCH_NAMESPACE=""
    start keda-operator unshare --mount --propagation private -- sh -c \
        'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$S/keda-resolv.conf" \
        "$KEDA_DIR/keda-operator" --kubeconfig="$KUBECONFIG" --cert-dir="$S/pki/keda-certs" \
        --ca-dir="$S/pki/keda-certs" --metrics-bind-address="127.0.0.1:$KEDA_METRICS_PORT" \
        --health-probe-bind-address=127.0.0.1:0 --metrics-service-bind-address="127.0.0.1:$KEDA_GRPC_PORT"
    # The adapter reads KUBECONFIG from its environment (client config), not only the flags.
    KUBECONFIG=$KUBECONFIG start keda-adapter "$KEDA_DIR/keda-adapter" --secure-port="$ADAPTER_PORT" \
        --bind-address="$HOST_IP" --cert-dir="$S/pki/keda-certs" \
        --tls-cert-file="$S/pki/keda-certs/tls.crt" --tls-private-key-file="$S/pki/keda-certs/tls.key" \
        --lister-kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" \
        --authorization-kubeconfig="$KUBECONFIG" --metrics-service-address="127.0.0.1:$KEDA_GRPC_PORT" --port=0
    # The aggregator routes by Endpoints (deprecated in favour of EndpointSlices, hence a
    # warning that is not ours to fix and is dropped).
    kctl apply -f - 2> >(grep -v 'v1 Endpoints is deprecated' >&2) >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: keda-metrics-apiserver, namespace: keda}
spec: {ports: [{name: https, port: 443, targetPort: $ADAPTER_PORT}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: keda-metrics-apiserver, namespace: keda}
subsets: [{addresses: [{ip: "$HOST_IP"}], ports: [{name: https, port: $ADAPTER_PORT}]}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.external.metrics.k8s.io}
spec: {service: {name: keda-metrics-apiserver, namespace: keda, port: 443}, group: external.metrics.k8s.io,
       version: v1beta1, insecureSkipTLSVerify: true, groupPriorityMinimum: 100, versionPriority: 100}
EOF
    kctl wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout=120s >/dev/null
}

up() {
    [ "$(id -u)" = 0 ] || die "the node needs root (containerd, mounts, iptables)"
    ensure_node_packages
    for d in "$ETCD_DIR" "$K8S_DIR" "$KUBECTL_DIR" "$KEDA_DIR" "$COREDNS_DIR" "$PROMOP_DIR"; do
        [ -f "$d/.complete" ] || die "$d is not built: run make kube-tools"
    done
    # The daemons started below inherit the locked descriptor: the lock is held until the last
    # of them stops. kube-test.sh takes it itself, before building anything.
    if [ "${TASKFORGE_KUBE_LOCKED:-0}" != 1 ]; then
        exec 8>"$LOCK"
        flock -n 8 || die "another local cluster runs on this machine ($LOCK is held)"
    fi
    mkdir -p "$S/run"
    write_env
    load_env
    pki
    local t=$SECONDS
    control_plane_up
    crds_up
    log "control plane ready in $((SECONDS - t)) s (apiserver https://127.0.0.1:$API_PORT)"
    "$here/node.sh" up "$S" "$@"
    keda_up
    log "cluster up in $((SECONDS - t)) s; export KUBECONFIG=$KUBECONFIG"
}

down() {
    [ -f "$S/cluster.env" ] || return 0
    load_env
    "$here/node.sh" down "$S"
    # The apiserver stops before etcd: one whose etcd went first hangs on shutdown.
    stop keda-adapter keda-operator kube-scheduler kube-controller-manager kube-apiserver etcd
    log "cluster in $S stopped"
}

case "${1:-}" in
up | down)
    cmd=$1
    [ $# -ge 2 ] || die "usage: cluster.sh $cmd <state dir> [image.tar ...]"
    S=$(realpath -m "$2")
    shift 2
    "$cmd" "$@"
    ;;
*) die "usage: cluster.sh up|down <state dir> [image.tar ...]" ;;
esac
