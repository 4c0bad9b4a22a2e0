#!/usr/bin/env bash
# Build the driver image (deploy/Dockerfile) and load it into the kind cluster's nodes.
#
#   hack/kind-load.sh          # IMAGE_REPOSITORY (dra-cdi-driver), IMAGE_TAG (chart appVersion)
#
# The tag is the chart's default, so `helm install` needs no image settings. Rebuilding
# under the same tag is fine: hack/kind-install.sh rolls the DaemonSet when the image changed.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
require "$DOCKER" "$KIND"
kind_cluster_exists || die "no kind cluster $KIND_CLUSTER_NAME: run hack/kind-up.sh first"

log "building $IMAGE from deploy/Dockerfile"
# BuildKit: the Dockerfile caches pip downloads with RUN --mount=type=cache.
DOCKER_BUILDKIT=1 "$DOCKER" build -f "$REPO_ROOT/deploy/Dockerfile" \
    --build-arg "VERSION=$IMAGE_TAG" -t "$IMAGE" "$REPO_ROOT"

log "loading $IMAGE into kind cluster $KIND_CLUSTER_NAME"
"$KIND" load docker-image "$IMAGE" --name "$KIND_CLUSTER_NAME"
log "image loaded: next, hack/kind-install.sh"
