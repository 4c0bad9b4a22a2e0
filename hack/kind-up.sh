#!/usr/bin/env bash
# Create the kind cluster from kind-config.yaml: Kubernetes with DRA, containerd with CDI.
#
#   hack/kind-up.sh            # KIND_CLUSTER_NAME (dra-cdi-driver), KIND_NODE_IMAGE to override
#
# Idempotent: an existing cluster of that name is kept. Needs docker (or podman through
# KIND_EXPERIMENTAL_PROVIDER), kind v0.32.0+ for the pinned node image, and kubectl.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
require "$KIND" "$KUBECTL"

if kind_cluster_exists; then
    log "kind cluster $KIND_CLUSTER_NAME exists; keeping it (hack/kind-down.sh removes it)"
else
    log "creating kind cluster $KIND_CLUSTER_NAME"
    args=(create cluster --name "$KIND_CLUSTER_NAME" --config "$REPO_ROOT/kind-config.yaml" --wait 180s)
    if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
        args+=(--image "$KIND_NODE_IMAGE")
    fi
    "$KIND" "${args[@]}"
fi

log "checking that the cluster serves DRA (resource.k8s.io/v1)"
if ! k get --raw /apis/resource.k8s.io/v1 >/dev/null; then
    die "the API server does not serve resource.k8s.io/v1: use a Kubernetes 1.34+ node image"
fi
k get nodes -o wide
log "cluster ready: next, hack/kind-load.sh (build and load the image)"
