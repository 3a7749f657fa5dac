#!/usr/bin/env bash
# podman with TaskForge's configuration and storage (see common.sh), e.g.
#   scripts/images/podman.sh images
#   scripts/images/podman.sh save -o api.tar taskforge-api:dev
# `build` gets the build configuration (host CA bundle and uv.toml mounted into RUN steps);
# every other command the plain one, so no container run sees those mounts.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
images_setup
if [ "${1:-}" = build ]; then
    export CONTAINERS_CONF=$IMAGES_CACHE/build.conf
fi
exec podman "$@"
