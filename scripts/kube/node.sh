#!/usr/bin/env bash
# The local cluster's one real node (called by cluster.sh, which has written <state dir>/cluster.env):
# Debian's containerd 1.6 + runc, the bridge CNI plugin, CoreDNS as a host process, kubelet and
# kube-proxy from the pinned Kubernetes build, and hostPath PersistentVolumes (no provisioner).
#
#   node.sh up <state dir> [image.tar ...]     images: archives `ctr images import` reads
#   node.sh down <state dir>                   cordon, delete pods, stop, clean the host
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"

PAUSE_IMAGE=registry.k8s.io/pause:3.10
# Statically provisioned volumes for PersistentVolumeClaims (the Redis StatefulSet's).
PV_COUNT=4
# The images run as this numeric user; hostPath volumes get no fsGroup ownership change.
APP_UID=10001

ctrd() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

containerd_up() {
    mkdir -p "$S/cni/net.d" "$S/cni/bin"
    ln -sf /usr/lib/cni/* "$S/cni/bin/"
    cat >"$S/containerd.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  # root here lacks CAP_SYS_RESOURCE: the sandbox's oom_score_adj of -998 kills runc init.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$S/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$S/cni/bin"
    conf_dir = "$S/cni/net.d"
EOF
    cat >"$S/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "kube-test", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$S/cni/ipam",
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
    start containerd containerd --config "$S/containerd.toml"
    wait_for 30 containerd ctrd version
}

images_up() {
    local t=$SECONDS archive
    python3 "$here/oci_image.py" "$K8S_DIR/pause" "$PAUSE_IMAGE" "$S/pause.tar"
    for archive in "$S/pause.tar" "$@"; do
        ctrd images import "$archive" >/dev/null || die "ctr images import $archive failed"
    done
    # podman names local builds localhost/<name>; the kubelet resolves the chart's short names
    # to docker.io/library/<name>.
    local name short
    for name in $(ctrd images ls -q | grep '^localhost/' || true); do
        short=${name#localhost/}
        [[ $short == */* ]] && short=docker.io/$short || short=docker.io/library/$short
        ctrd images tag --force "$name" "$short" >/dev/null
    done
    log "$(($# + 1)) images imported into containerd in $((SECONDS - t)) s"
}

coredns_up() {
    cat >"$S/Corefile" <<EOF
.:53 {
    bind $HOST_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 5
}
EOF
    start coredns "$COREDNS_DIR/coredns" -conf "$S/Corefile"
}

kubelet_up() {
    cat >"$S/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroups v1 (hybrid); Kubernetes 1.34 refuses them unless told otherwise.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $S/pod-logs
port: $KUBELET_PORT
healthzPort: $KUBELET_HEALTHZ_PORT
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: [$HOST_IP]
evictionHard: {memory.available: "100Mi", nodefs.available: "5%", imagefs.available: "5%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
EOF
    mkdir -p "$S/pod-logs"
    start kubelet "$K8S_DIR/kubelet" --config="$S/kubelet-config.yaml" --kubeconfig="$KUBECONFIG" \
        --root-dir="$S/kubelet" --cert-dir="$S/kubelet/pki" --hostname-override="$NODE" --node-ip="$HOST_IP"
    start kube-proxy "$K8S_DIR/kube-proxy" --kubeconfig="$KUBECONFIG" --hostname-override="$NODE" \
        --cluster-cidr="$POD_CIDR" --proxy-mode=iptables --conntrack-max-per-core=0 --oom-score-adj=0 \
        --nodeport-addresses=primary --metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" \
        --healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT"
    wait_for 60 "node $NODE to register" kctl get node "$NODE"
    kctl wait --for=condition=Ready "node/$NODE" --timeout=120s >/dev/null
}

volumes_up() {
    local i
    for i in $(seq 0 $((PV_COUNT - 1))); do
        mkdir -p "$S/pv/$i"
        chown "$APP_UID:$APP_UID" "$S/pv/$i"
        printf -- '---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: kube-test-pv-%s}\nspec: {capacity: {storage: 10Gi}, accessModes: [ReadWriteOnce], persistentVolumeReclaimPolicy: Retain, hostPath: {path: "%s", type: Directory}}\n' \
            "$i" "$S/pv/$i"
    done | kctl apply -f - >/dev/null
}

# Services need forwarding, and bridged pod-to-pod replies must pass through iptables (else a
# reply to a pod that dialled a ClusterIP bypasses the un-DNAT and is dropped).
preflight() {
    local key
    modprobe br_netfilter 2>/dev/null || true
    for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; do
        [ "$(sysctl -n "$key" 2>/dev/null)" = 1 ] || sysctl -qw "$key=1" 2>/dev/null \
            || die "$key must be 1 (sysctl -w $key=1)"
    done
    if ip link show cni0 >/dev/null 2>&1; then
        die "a bridge cni0 exists: another cluster runs, or a leftover (ip link del cni0)"
    fi
    if ss -Hlnu "sport = :53" | grep -q "$HOST_IP:53\|\*:53\|0.0.0.0:53"; then
        die "port 53 on $HOST_IP is taken: CoreDNS serves the cluster's DNS there"
    fi
}

up() {
    local t=$SECONDS
    preflight
    containerd_up
    images_up "$@"
    coredns_up
    kubelet_up
    volumes_up
    log "node $NODE ready in $((SECONDS - t)) s"
}

down() {
    # Cordon first, or controllers recreate the pods deleted here. Pods go before the kubelet so
    # that it tears down their sandboxes, network and mounts itself.
    if kctl get node "$NODE" >/dev/null 2>&1; then
        kctl cordon "$NODE" >/dev/null 2>&1 || true
        for _ in $(seq 60); do
            kctl delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
            [ -z "$(ctrd tasks ls -q 2>/dev/null)" ] && break
            sleep 1
        done
    fi
    stop kube-proxy kubelet coredns
    # Containers the kubelet could not remove (apiserver gone, timeout): their shims outlive
    # containerd, so they are killed here.
    local id
    for id in $(ctrd tasks ls -q 2>/dev/null); do
        ctrd tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        ctrd tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    stop containerd
    host_cleanup
}

# What the node leaves on the host outside $S: kube-proxy's and the kubelet's iptables chains,
# the bridge, mounts under $S, kubelet cgroups, and libcni/kubelet/shim paths at fixed places.
host_cleanup() {
    "$K8S_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
    local t
    for t in iptables ip6tables; do
        $t -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
        $t -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
        $t -F KUBE-FIREWALL 2>/dev/null || true
        $t -X KUBE-FIREWALL 2>/dev/null || true
        local table
        for table in filter nat mangle; do
            $t -t "$table" -X KUBE-KUBELET-CANARY 2>/dev/null || true
        done
        $t -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
    done
    # The bridge plugin's per-pod masquerade chains (CNI-*, tagged with this network's name) go
    # with their pods; those of pods the kubelet could not tear down are removed here.
    local rule chain
    while read -r rule; do
        eval "iptables -t nat ${rule/#-A /-D }" 2>/dev/null || true
        chain=${rule##* -j }
        iptables -t nat -F "$chain" 2>/dev/null || true
        iptables -t nat -X "$chain" 2>/dev/null || true
    done < <(iptables-save -t nat | grep -- '^-A POSTROUTING .*name: \\"kube-test\\".* -j CNI-')
    ip link del cni0 2>/dev/null || true
    mount | awk -v s="$S/" 'index($3, s) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l
    find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
    rm -rf /var/lib/cni/results /var/lib/kubelet/device-plugins
    rmdir /var/lib/kubelet 2>/dev/null || true
    # Shim sockets and fifos, and the pods' network namespaces (CRI keeps them at fixed paths);
    # only when no other containerd could be using them.
    if ! pgrep -x containerd >/dev/null; then
        rm -rf /run/containerd/s /run/containerd/fifo
        local ns
        for ns in /run/netns/cni-*; do
            [ -e "$ns" ] || continue
            umount "$ns" 2>/dev/null || true
            rm -f "$ns"
        done
    fi
}

case "${1:-}" in
up | down)
    cmd=$1
    [ $# -ge 2 ] || die "usage: node.sh $cmd <state dir> [image.tar ...]"
    S=$(realpath -m "$2")
    shift 2
    load_env
    "$cmd" "$@"
    ;;
*) die "usage: node.sh up|down <state dir> [image.tar ...]" ;;
esac
