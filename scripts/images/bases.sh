#!/usr/bin/env bash
# Builds the stand-in images no registry can give us here, under the exact names the project uses:
#   python:<ver>-slim-<suite>  (Dockerfiles' FROM)   Debian <suite> minbase + Debian's python<X.Y>
#   ghcr.io/astral-sh/uv:<ver> (Dockerfiles' COPY)   FROM scratch + uv, uvx from PyPI's uv wheel
#   redis:<tag>                (chart redis.image)   Debian <suite> minbase + Debian's redis-server
# Each is built once per name and recipe (label io.taskforge.standin-recipe) into the shared
# podman storage; clones building at the same time wait on one lock. See docs/images.md.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
images_setup

# 0 when <image> exists and was made by the current recipe.
is_current() {
    local label
    label=$(podman image inspect --format "{{ index .Labels \"$STANDIN_LABEL\" }}" "$1" 2>/dev/null) \
        || return 1
    [ "$label" = "$STANDIN_RECIPE" ]
}

# The Debian archive the host's apt already uses (a mirror or proxy that works from here).
debian_mirror() {
    local mirror
    mirror=$({ grep -rhoE '^deb +(\[[^]]*\] +)?https?://[^ ]+' /etc/apt/sources.list \
                   /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $NF}'
               grep -rhE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
                   | awk '{print $2}'; } | grep -v security | head -1 || true)
    printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

# rootfs <tarball> <suite> <packages> [customize-hook]: a Debian minbase root filesystem. Docs,
# man pages and locales are left out as the slim images do.
rootfs() {
    local hook=(--customize-hook='mkdir -p "$1/tmp" && chmod 1777 "$1/tmp"')
    [ -n "${4:-}" ] && hook+=(--customize-hook="$4")
    mmdebstrap --variant=minbase --include="$3" --quiet \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        "${hook[@]}" "$2" "$1" "deb $(debian_mirror) $2 main"
}

build_python() {
    local tag=${PYTHON_BASE##*:} tar=$IMAGES_CACHE/bases/python.tar
    [[ $tag =~ ^([0-9]+\.[0-9]+)\.[0-9]+-slim-([a-z]+)$ ]] \
        || images_die "cannot read a Python version and Debian suite from $PYTHON_BASE"
    local minor=${BASH_REMATCH[1]} suite=${BASH_REMATCH[2]}
    # The real image's interpreter is python.org's build in /usr/local/bin: point those names at
    # Debian's, so UV_PYTHON=/usr/local/bin/python<X.Y> and the venv's symlinks resolve the same.
    rootfs "$tar" "$suite" "python$minor,ca-certificates,passwd" \
        "for n in python$minor python3 python; do ln -sf /usr/bin/python$minor \"\$1/usr/local/bin/\$n\"; done"
    podman import --quiet \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --change "LABEL $STANDIN_LABEL=$STANDIN_RECIPE" \
        --change "LABEL io.taskforge.standin=\"Debian $suite minbase + python$minor for $PYTHON_BASE\"" \
        "$tar" "$PYTHON_BASE" >/dev/null
    rm -f "$tar"
}

build_uv() {
    local version=${UV_IMAGE##*:} dir=$IMAGES_CACHE/bases/uv
    rm -rf "$dir" && mkdir -p "$dir"
    python3 -m pip --version >/dev/null 2>&1 \
        || images_die "python3 -m pip is needed to fetch the uv wheel (apt-get install python3-pip)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform "manylinux_2_17_$(uname -m)" --python-version 3.11 "uv==$version" -d "$dir"
    python3 -m zipfile -e "$dir"/uv-*.whl "$dir/wheel"
    install -m 755 "$dir"/wheel/uv-*.data/scripts/uv "$dir"/wheel/uv-*.data/scripts/uvx "$dir/"
    printf 'FROM scratch\nCOPY uv uvx /\nLABEL %s=%s\n' "$STANDIN_LABEL" "$STANDIN_RECIPE" \
        > "$dir/Containerfile"
    podman build --quiet --tag "$UV_IMAGE" "$dir" >/dev/null
    rm -rf "$dir"
}

build_redis() {
    local suite=${PYTHON_BASE##*-} tar=$IMAGES_CACHE/bases/redis.tar
    # The chart runs `sh -c "exec redis-server /etc/redis/redis.conf ..."` as uid 10001 with its
    # config mounted on /etc/redis and its data volume on /data; /data belongs to 10001 so the
    # image also works without a volume (or fsGroup).
    rootfs "$tar" "$suite" "redis-server" 'mkdir -p "$1/data" && chown 10001:10001 "$1/data"'
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'WORKDIR /data' --change 'USER 10001:10001' --change 'EXPOSE 6379' \
        --change 'CMD ["redis-server"]' \
        --change "LABEL $STANDIN_LABEL=$STANDIN_RECIPE" \
        --change "LABEL io.taskforge.standin=\"Debian $suite minbase + redis-server for $REDIS_IMAGE\"" \
        "$tar" "$REDIS_IMAGE" >/dev/null
    rm -f "$tar"
}

ensure() {
    local name=$1 start=$SECONDS
    if is_current "$name"; then
        images_log "stand-in $name: cached"
        return 0
    fi
    images_log "stand-in $name: building"
    "$2"
    is_current "$name" || images_die "stand-in $name was not built"
    images_log "stand-in $name: built in $((SECONDS - start)) s"
}

exec 9>"$IMAGES_CACHE/lock"
flock 9
# The two Debian root filesystems build side by side: each spends most of its time waiting
# on downloads and dpkg, not on a CPU.
ensure "$PYTHON_BASE" build_python & python_job=$!
ensure "$REDIS_IMAGE" build_redis & redis_job=$!
rc=0
ensure "$UV_IMAGE" build_uv || rc=$?
wait "$python_job" || rc=$?
wait "$redis_job" || rc=$?
exit "$rc"
