#!/usr/bin/env bash
# `make kube-test`: the chart on a real local Kubernetes cluster (see docs/kubernetes-local.md).
#   1. the cluster's parts from the version-keyed cache (build.sh; make kube-tools builds them);
#   2. the images the test release runs, saved from podman (make images-build) into archives
#      cached by image id, imported into the node's containerd;
#   3. cluster.sh up in a fresh state dir, validate.sh (server-side, Pod Security restricted),
#      then tests/kube/scenarios.py, whose last line is the summary;
#   4. cluster.sh down and the state dir removed, on success, failure or interrupt.
# KUBE_TEST_KEEP=1 keeps the state dir (logs) after a failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"

HELM=${HELM:-$repo/bin/helm}
UV=${UV:-uv}
PODMAN=${PODMAN:-$repo/scripts/images/podman.sh}
IMAGE_CACHE=$KUBE_CACHE/images

# The images the test release runs, as the chart renders them with the test values.
release_images() {
    "$HELM" template taskforge "$repo/charts/taskforge" -f "$repo/k8s/values-kind.yaml" \
        -f "$repo/tests/kube/values.yaml" --api-versions keda.sh/v1alpha1 \
        | sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | sort -u
}

# One archive per image, named by image id: a rebuilt image gets a new archive, an unchanged
# one is not saved again. Archives of images no longer used are removed.
image_archives() {
    local image id archive keep=()
    mkdir -p "$IMAGE_CACHE"
    for image in $(release_images); do
        id=$("$PODMAN" image inspect --format '{{.Id}}' "$image" 2>/dev/null) \
            || die "image $image is not in podman's store: run make images-build"
        archive=$IMAGE_CACHE/${id:0:20}-$(printf '%s' "$image" | tr '/:' '__').tar
        if [ ! -f "$archive" ]; then
            log "podman save $image"
            "$PODMAN" save --quiet -o "$archive.tmp" "$image" >&2 && mv "$archive.tmp" "$archive"
        fi
        keep+=("$archive")
        echo "$archive"
    done
    for archive in "$IMAGE_CACHE"/*.tar; do
        [[ " ${keep[*]} " == *" $archive "* ]] || rm -f "$archive"
    done
}

diagnose() {
    [ -f "$S/cluster.env" ] || return 0
    load_env
    {
        echo "---- pods, events"
        kctl get pods -A -o wide || true
        kctl get events -A --sort-by=.lastTimestamp | tail -40 || true
        local f
        for f in "$S"/run/*.log; do
            echo "---- tail $f"
            tail -8 "$f"
        done
    } >&2 2>&1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ "$rc" -eq 0 ] || diagnose
    "$here/cluster.sh" down "$S" || rc=1
    if mount | awk -v s="$S/" 'index($3, s) == 1 {found = 1} END {exit !found}'; then
        log "mounts remain under $S: not removing it"
        rc=1
    elif [ "$rc" -ne 0 ] && [ "${KUBE_TEST_KEEP:-0}" = 1 ]; then
        log "state kept in $S"
    else
        rm -rf --one-file-system "$S"
    fi
    exit "$rc"
}

t0=$SECONDS
exec 8>"$LOCK"
flock -n 8 || die "another local cluster runs on this machine ($LOCK is held)"
export TASKFORGE_KUBE_LOCKED=1
"$here/build.sh"
mapfile -t archives < <(image_archives)
[ ${#archives[@]} -gt 0 ] || die "no image archives"
S=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-kube.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT TERM
"$here/cluster.sh" up "$S" "${archives[@]}"
load_env
validation=$("$here/validate.sh" "$S" "$HELM")
log "server-side validation: $validation"
cd "$repo"
"$UV" run --frozen python -m tests.kube.scenarios --kubectl "$KUBECTL_DIR/kubectl" --helm "$HELM" \
    --kubeconfig "$KUBECONFIG" --validation "$validation"
log "kube-test passed in $((SECONDS - t0)) s (cluster stopped next)"
