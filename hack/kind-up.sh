#!/usr/bin/env bash
# Create the kind cluster from kind-config.yaml: Kubernetes with DRA, containerd with CDI.
#
#   hack/kind-up.sh            # KIND_CLUSTER_NAME (dra-cdi-driver), KIND_NODE_IMAGE to override
#
# Idempotent: an existing cluster of that name is kept. Needs docker (or podman through
# KIND_EXPERIMENTAL_PROVIDER, with DOCKER=podman), kind v0.32.0+ for the pinned node image,
# and kubectl. Each node gets the classic mock GPU layout (hack/mock-layout.sh: /dev/mock,
# /mock/so, /mock/bin), which the driver's mock source hands to containers.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
require "$KIND" "$KUBECTL" "$DOCKER"

if kind_cluster_exists; then
    log "kind cluster $KIND_CLUSTER_NAME exists; keeping it (hack/kind-down.sh removes it)"
    # Another shell or KUBECONFIG may lack its context: (re)write it.
    "$KIND" export kubeconfig --name "$KIND_CLUSTER_NAME"
else
    log "creating kind cluster $KIND_CLUSTER_NAME"
    args=(create cluster --name "$KIND_CLUSTER_NAME" --config "$REPO_ROOT/kind-config.yaml" --wait 180s)
    if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
        args+=(--image "$KIND_NODE_IMAGE")
    fi
    "$KIND" "${args[@]}"
fi

log "creating the classic mock GPU layout on the nodes (hack/mock-layout.sh)"
for node in $("$KIND" get nodes --name "$KIND_CLUSTER_NAME"); do
    "$DOCKER" exec -i "$node" bash -s -- "${MOCK_DEVICES:-8}" <"$REPO_ROOT/hack/mock-layout.sh"
done

log "checking that the cluster serves DRA (resource.k8s.io/v1)"
if ! k get --raw /apis/resource.k8s.io/v1 >/dev/null; then
    die "the API server does not serve resource.k8s.io/v1: use a Kubernetes 1.34+ node image"
fi
k get nodes -o wide
log "cluster ready: next, hack/kind-load.sh (build and load the image)"
