#!/usr/bin/env bash
# Build helm from its Go module (through the Go module proxy), cache it, print its path.
#
#   HELM="$(hack/install-helm.sh)"      # a no-op when cached: prints the path and exits
#
# The version is pinned below (override with HELM_VERSION). The binary lives in
#   ${DRA_TOOLS_CACHE:-~/.cache/dra-cdi-driver-tools}/helm-<version>/helm
# A cold build needs Go 1.24+ and takes a few minutes (download + compile); progress goes
# to stderr, the path alone to stdout. (A Helm 3 built this way assumes Kubernetes v1.20
# where no cluster is asked: our scripts and tests pass --kube-version to template and lint.)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
cache="${DRA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-cdi-driver-tools}"
dest="$cache/helm-$HELM_VERSION"

if [[ -x "$dest/helm" ]]; then
    echo "$dest/helm"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "install-helm: go is not on PATH; install Go (https://go.dev/dl/) or put helm" \
        "$HELM_VERSION at $dest/helm" >&2
    exit 1
fi

major="${HELM_VERSION%%.*}" # v4.3.1 -> v4: the module path carries the major version
module="helm.sh/helm/$major"
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.helm-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "install-helm: building $module/cmd/helm@$HELM_VERSION (a few minutes on a cold cache)" >&2
start=$SECONDS
# -X sets what `helm version` prints (go install leaves it at the major.minor default).
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath \
    -ldflags "-s -w -X $module/internal/version.version=$HELM_VERSION" \
    "$module/cmd/helm@$HELM_VERSION" >&2
"$tmp/helm" version --short >&2
mkdir -p "$dest"
mv "$tmp/helm" "$dest/helm.new"
mv "$dest/helm.new" "$dest/helm" # a rename: a concurrent reader never sees half a file
echo "install-helm: built in $((SECONDS - start))s" >&2
echo "$dest/helm"
