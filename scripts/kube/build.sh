#!/usr/bin/env bash
# Builds the parts of the local test cluster from Go module sources (no prebuilt downloads) into a
# cache keyed by version, shared by every clone on this machine:
#   $TASKFORGE_CACHE/kube/<component>-<version>/  (default cache: ~/.cache/taskforge)
# Components: etcd, kube-apiserver/-controller-manager/-scheduler/kubelet/kube-proxy, kubectl,
# CoreDNS, the KEDA operator and metrics adapter (+ its CRDs), the Prometheus Operator CRDs, and
# the pause image's binary (from the Kubernetes tree).
# A component is rebuilt only when its directory lacks a `.complete` stamp. Cold: ~25 min on 2 cores.
#
# Modules with `replace` directives (etcd, Kubernetes, KEDA) cannot be `go install`ed: each is built
# from a writable copy of its module directory with the replaces rewritten or removed (see
# docs/kubernetes-local.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

log() { printf '==> [kube-build] %s\n' "$*" >&2; }

# modsrc <module@version> <dir>: a writable copy of the module, without go.work.
modsrc() {
    local dir
    dir=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { echo "ERROR [kube-build]: go mod download $1 failed" >&2; exit 1; }
    rm -rf "$2"
    cp -r "$dir" "$2"
    chmod -R u+w "$2"
    rm -f "$2/go.work" "$2/go.work.sum"
}

# done_or_build <dir> <function>: runs the function unless <dir>/.complete exists.
done_or_build() {
    if [ -f "$1/.complete" ]; then
        log "$(basename "$1"): cached in $1"
        return 0
    fi
    local start=$SECONDS
    rm -rf "$1"
    mkdir -p "$1"
    "$2" "$1"
    touch "$1/.complete"
    log "$(basename "$1"): built in $((SECONDS - start)) s"
}

build_etcd() {
    local src; src=$(mktemp -d "$KUBE_CACHE/src.XXXXXX")
    modsrc "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$src/etcd"
    # server/v3's replaces point at sibling directories absent from the module zip: use the
    # published modules of the same version instead.
    (cd "$src/etcd" && sed -i '/^replace (/,/^)/d; /^replace /d' go.mod \
        && go build -mod=mod -o "$1/etcd" .)
    rm -rf "$src"
}

k8s_ldflags() {
    local minor p out=""
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    # Unstamped binaries report v0.0.0-master, which kubectl and helm reject.
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        out="$out -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    echo "$out"
}

# k8s_tree <dir>: a buildable copy of the Kubernetes tree: its ./staging replaces point at
# directories absent from the module zip, so they are rewritten to the published k8s.io/* modules
# of the same release (v0.<minor>.<patch>).
k8s_tree() {
    modsrc "k8s.io/kubernetes@$K8S_VERSION" "$1"
    sed -i -E "s#(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+#\1 => \1 v0.${K8S_VERSION#v1.}#" "$1/go.mod"
}

build_kubernetes() {
    local src ldflags cmd
    src=$(mktemp -d "$KUBE_CACHE/src.XXXXXX")
    k8s_tree "$src/k8s"
    ldflags=$(k8s_ldflags)
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
        log "go build k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION"
        (cd "$src/k8s" && go build -mod=mod -ldflags "$ldflags" -o "$1/$cmd" "./cmd/$cmd")
    done
    # The sandbox ("pause") image's program: no registry serves registry.k8s.io/pause here.
    gcc -Os -static -DVERSION="$K8S_VERSION" -o "$1/pause" "$src/k8s/build/pause/linux/pause.c"
    rm -rf "$src"
}

# kubectl has a directory of its own so that adding it did not invalidate the server binaries.
build_kubectl() {
    local src; src=$(mktemp -d "$KUBE_CACHE/src.XXXXXX")
    k8s_tree "$src/k8s"
    (cd "$src/k8s" && go build -mod=mod -ldflags "$(k8s_ldflags)" -o "$1/kubectl" ./cmd/kubectl)
    rm -rf "$src"
}

build_keda() {
    local src; src=$(mktemp -d "$KUBE_CACHE/src.XXXXXX")
    modsrc "github.com/kedacore/keda/v2@$KEDA_VERSION" "$src/keda"
    (cd "$src/keda" && go build -o "$1/keda-operator" ./cmd/operator \
        && go build -o "$1/keda-adapter" ./cmd/adapter)
    cp -r "$src/keda/config/crd/bases" "$1/crds"
    rm -rf "$src"
}

build_coredns() {
    GOBIN="$1" go install "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_prometheus_operator_crds() {
    local dir
    dir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    cp -r "$dir/example/prometheus-operator-crd" "$1/crds"
    chmod -R u+w "$1/crds"
}

command -v go >/dev/null || { echo "ERROR [kube-build]: Go is required" >&2; exit 1; }
command -v gcc >/dev/null || { echo "ERROR [kube-build]: gcc is required (pause)" >&2; exit 1; }
mkdir -p "$KUBE_CACHE"
# Two clones building at once would each rm -rf the other's half-built directory.
exec 9>"$KUBE_CACHE/.build.lock"
flock 9
done_or_build "$ETCD_DIR" build_etcd
done_or_build "$K8S_DIR" build_kubernetes
done_or_build "$KUBECTL_DIR" build_kubectl
done_or_build "$KEDA_DIR" build_keda
done_or_build "$COREDNS_DIR" build_coredns
done_or_build "$PROMOP_DIR" build_prometheus_operator_crds
