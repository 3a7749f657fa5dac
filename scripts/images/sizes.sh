#!/usr/bin/env bash
# Prints the size of each image images-build makes: sizes.sh [<image prefix> [<tag>]].
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
images_setup
prefix=${1:-taskforge-} tag=${2:-dev}
for image in "${IMAGE_SERVICES[@]/#/$prefix}" "$REDIS_IMAGE"; do
    [[ $image == "$REDIS_IMAGE" ]] || image=$image:$tag
    bytes=$(podman image inspect --format '{{.Size}}' "$image") \
        || images_die "$image is missing (run: make images-build)"
    printf '==> [images] %-45s %4d MB\n' "$image" $((bytes / 1000000))
done
