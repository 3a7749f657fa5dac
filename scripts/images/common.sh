# Shared by scripts/images/*.sh (sourced): where the podman configuration and storage live, the
# pinned stand-in names (read from the Dockerfiles and the chart, never repeated here), and the
# podman configuration files themselves.
#
# Everything lives outside the repository in a cache shared by every clone on the machine:
#   $IMAGES_CACHE = ${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}/images
#     containers.conf  runtime + ulimits (runs)      build.conf    + CA bundle, uv.toml (builds)
#     storage.conf     overlay graph/run roots       storage/ run/ podman's images and state
#     uvconf/uv.toml   system-certs for uv in RUN    tmp/          podman's scratch space
#     bases/           stand-in rootfs tarballs and their build logs
#     lock             flock serialising stand-in builds between clones
# shellcheck shell=bash

IMAGES_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TASKFORGE_CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
IMAGES_CACHE=$TASKFORGE_CACHE/images
# Bump when a stand-in recipe changes: images built by an older recipe are rebuilt.
STANDIN_RECIPE=1
STANDIN_LABEL=io.taskforge.standin-recipe

images_log() { printf '==> [images] %s\n' "$*" >&2; }
images_die() { printf 'ERROR [images]: %s\n' "$*" >&2; exit 1; }

# The single value the four Dockerfiles agree on, e.g. `FROM` images; dies when they disagree.
_dockerfiles_value() {
    local values
    values=$(sed -n "$1" "$IMAGES_REPO"/services/*/Dockerfile | sort -u)
    [ -n "$values" ] && [ "$(printf '%s\n' "$values" | wc -l)" -eq 1 ] \
        || images_die "the Dockerfiles do not agree on one value for $2: ${values:-none}"
    printf '%s\n' "$values"
}

# A short Docker Hub name as podman and Kubernetes resolve it (redis:7 -> docker.io/library/redis:7).
qualify_image() {
    local name=$1 first=${1%%/*}
    if [[ $name != */* ]]; then
        name=docker.io/library/$name
    elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
        name=docker.io/$name
    fi
    printf '%s\n' "$name"
}

# repository:tag of the chart's Redis (values.yaml redis.image); the chart's own layout: two-space
# nesting, `repository:` and `tag:` directly under `redis:` -> `image:`.
chart_redis_image() {
    awk '
        /^[^ #]/ { top = $1 }
        top == "redis:" && /^  [^ #]/ { sub_ = $1 }
        top == "redis:" && sub_ == "image:" && /^    repository:/ { repo = $2 }
        top == "redis:" && sub_ == "image:" && /^    tag:/ { tag = $2 }
        END { if (repo != "" && tag != "") print repo ":" tag }
    ' "$IMAGES_REPO/charts/taskforge/values.yaml" | tr -d '"'"'"
}

# Assigned in steps: a failure inside a nested $(...) would not stop the script.
PYTHON_BASE=$(_dockerfiles_value 's/^FROM \([^ ]*\).*/\1/p' 'FROM')
PYTHON_BASE=$(qualify_image "$PYTHON_BASE")
# Only COPY --from an image (a name with a tag or a registry), not from a build stage.
UV_IMAGE=$(_dockerfiles_value 's/^COPY --from=\([^ ]*[:/][^ ]*\) .*/\1/p' 'COPY --from=<image>')
UV_IMAGE=$(qualify_image "$UV_IMAGE")
REDIS_IMAGE=$(chart_redis_image)
[ -n "$REDIS_IMAGE" ] || images_die "no redis.image repository/tag in charts/taskforge/values.yaml"
REDIS_IMAGE=$(qualify_image "$REDIS_IMAGE")
IMAGE_SERVICES=(gateway api worker scheduler)

# Writes $2 from stdin unless it already holds exactly that (a shared cache: no needless churn).
_write_if_changed() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat > "$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# Writes the configuration and exports what podman reads. Idempotent.
images_setup() {
    mkdir -p "$IMAGES_CACHE"/{tmp,uvconf,bases,storage,run}
    _write_if_changed "$IMAGES_CACHE/storage.conf" <<EOC
[storage]
driver = "overlay"
runroot = "$IMAGES_CACHE/run"
graphroot = "$IMAGES_CACHE/storage"
EOC
    # runc: crun refuses hybrid cgroup hierarchies (some VMs). default_ulimits: without
    # CAP_SYS_RESOURCE podman's own defaults (nofile 1048576, nproc) cannot be set, and every
    # run fails with "setrlimit ... operation not permitted"; the host's hard limit always can.
    local nofile
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    _write_if_changed "$IMAGES_CACHE/containers.conf" <<EOC
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOC
    # Builds only: RUN steps that fetch over HTTPS trust what the host trusts (a re-signing proxy's
    # CA, if any), read-only and never written into a layer; uv is told to use that store.
    local volumes=""
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        volumes='"/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro", '
    fi
    volumes+="\"$IMAGES_CACHE/uvconf:/etc/uv:ro\""
    printf 'system-certs = true\n' | _write_if_changed "$IMAGES_CACHE/uvconf/uv.toml"
    sed "s|^\[containers\]|[containers]\nvolumes = [$volumes]|" "$IMAGES_CACHE/containers.conf" \
        | _write_if_changed "$IMAGES_CACHE/build.conf"
    export CONTAINERS_STORAGE_CONF=$IMAGES_CACHE/storage.conf
    export CONTAINERS_CONF=$IMAGES_CACHE/containers.conf
    export TMPDIR=$IMAGES_CACHE/tmp
}
