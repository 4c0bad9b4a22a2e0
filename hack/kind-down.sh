#!/usr/bin/env bash
# Delete the kind cluster made by hack/kind-up.sh (and everything in it).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
require "$KIND"
if kind_cluster_exists; then
    log "deleting kind cluster $KIND_CLUSTER_NAME"
    "$KIND" delete cluster --name "$KIND_CLUSTER_NAME"
else
    log "no kind cluster $KIND_CLUSTER_NAME"
fi
