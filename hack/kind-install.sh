#!/usr/bin/env bash
# Install (or upgrade) the driver with Helm and wait until it serves every node.
#
#   hack/kind-install.sh [HELM ARGS...]     # e.g. --set mockDevices=4 --set logLevel=debug
#
# It is the one Helm command of deploy/README.md plus a pod annotation with the image's ID,
# so that a rebuilt image (same tag) rolls the DaemonSet. Works on any cluster:
# KUBE_CONTEXT= (empty) uses the current kubectl context.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
require "$KUBECTL"
helm="$(find_helm)"

args=(upgrade --install "$RELEASE" "$CHART_DIR"
    --namespace "$NAMESPACE" --create-namespace
    --set-string "image.repository=$IMAGE_REPOSITORY" --set-string "image.tag=$IMAGE_TAG"
    --set-string "driverName=$DRIVER_NAME"
    --wait --timeout 3m)
if [[ -n "$KUBE_CONTEXT" ]]; then
    args+=(--kube-context "$KUBE_CONTEXT")
fi
if command -v "$DOCKER" >/dev/null 2>&1; then
    if image_id="$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)"; then
        args+=(--set-string "podAnnotations.dra-cdi-driver/image-id=${image_id#sha256:}")
    fi
fi

log "helm ${args[*]} $*"
"$helm" "${args[@]}" "$@"

log "driver pods"
k -n "$NAMESPACE" get pods -o wide -l "app.kubernetes.io/instance=$RELEASE"

# Each node's driver publishes its devices; wait until at least one slice is there.
log "waiting for the driver's ResourceSlices"
slices() { [[ -n "$(k get resourceslices --field-selector "spec.driver=$DRIVER_NAME" -o name)" ]]; }
wait_for "ResourceSlices of $DRIVER_NAME" 90 slices
k get resourceslices --field-selector "spec.driver=$DRIVER_NAME" \
    -o custom-columns='NAME:.metadata.name,NODE:.spec.nodeName,POOL:.spec.pool.name,DEVICES:.spec.devices[*].name'
log "driver ready: next, hack/demo.sh"
