# Helpers shared by scripts/kube/*.sh (sourced after versions.sh). $S is the cluster's state dir.

# One local cluster per machine: the bridge, the pod and service ranges and the iptables chains
# are machine-wide.
LOCK=/run/taskforge-kube.lock

log() { printf '==> [kube] %s\n' "$*" >&2; }
die() {
    printf 'ERROR [kube]: %s\n' "$*" >&2
    exit 1
}

# kubectl from the cached build of the pinned Kubernetes release, never a system one.
kctl() { "$KUBECTL_DIR/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

load_env() {
    set -a
    # shellcheck disable=SC1091
    . "$S/cluster.env"
    set +a
}

# free_ports <n>: n distinct TCP ports free right now, held together while being chosen.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("0.0.0.0", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# start <name> <command...>: run in the background; log and pid under $S/run. In a session of
# its own: Ctrl-C (SIGINT to the foreground process group) must reach the test, whose trap then
# stops the cluster in order, not the daemons (Go programs that watch SIGINT stop on it even
# when the shell started them with SIGINT ignored).
start() {
    nohup setsid "${@:2}" >"$S/run/$1.log" 2>&1 &
    echo $! >"$S/run/$1.pid"
}

# stop <name...>: SIGTERM each process started by `start`, in order, SIGKILL after 30 s.
stop() {
    local name pid
    for name in "$@"; do
        [ -f "$S/run/$name.pid" ] || continue
        pid=$(cat "$S/run/$name.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$S/run/$name.pid"
    done
}

# wait_for <seconds> <what> <command...>: retry the command until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${deadline}s waiting for $what"
        sleep 0.5
    done
}

# The node's runtime comes from Debian: containerd 1.6 (the kubelet of Kubernetes <= 1.35 still
# speaks to it), runc and the reference CNI plugins.
ensure_node_packages() {
    local missing=()
    command -v containerd >/dev/null || missing+=(containerd)
    command -v runc >/dev/null || missing+=(runc)
    [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v conntrack >/dev/null || missing+=(conntrack)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: apt-get install ${missing[*]} (as root)"
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}
