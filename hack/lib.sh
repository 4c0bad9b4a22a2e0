# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this
# Shared settings of the hack/kind-*.sh and hack/demo.sh scripts; sourced, not run.
# Every setting can be overridden from the environment.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART_DIR="$REPO_ROOT/deploy/helm/dra-cdi-driver"

# kind reads KIND_CLUSTER_NAME itself too.
KIND_CLUSTER_NAME="${KIND_CLUSTER_NAME:-dra-cdi-driver}"
# The kubectl/helm context; empty = the current context (for a cluster that is not kind).
KUBE_CONTEXT="${KUBE_CONTEXT-kind-$KIND_CLUSTER_NAME}"
RELEASE="${RELEASE:-dra-cdi-driver}"
NAMESPACE="${NAMESPACE:-dra-cdi-driver}"
DRIVER_NAME="${DRIVER_NAME:-gpu.cdi.example.com}"

# The image: the chart's default (repository dra-cdi-driver, tag = the chart's appVersion).
chart_app_version() {
    sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$CHART_DIR/Chart.yaml"
}
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-dra-cdi-driver}"
IMAGE_TAG="${IMAGE_TAG:-$(chart_app_version)}"
IMAGE="$IMAGE_REPOSITORY:$IMAGE_TAG"

KIND="${KIND:-kind}"
DOCKER="${DOCKER:-docker}"
KUBECTL="${KUBECTL:-kubectl}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (or set ${tool^^} to its path)"
    done
}

# kubectl against the chosen context.
k() {
    if [[ -n "$KUBE_CONTEXT" ]]; then
        "$KUBECTL" --context "$KUBE_CONTEXT" "$@"
    else
        "$KUBECTL" "$@"
    fi
}

# helm: $HELM, else helm on PATH, else the pinned one built by hack/install-helm.sh (needs Go).
find_helm() {
    if [[ -n "${HELM:-}" ]]; then
        echo "$HELM"
    elif command -v helm >/dev/null 2>&1; then
        command -v helm
    else
        "$REPO_ROOT/hack/install-helm.sh"
    fi
}

kind_cluster_exists() {
    "$KIND" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER_NAME"
}

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: run COMMAND every 2 s until it succeeds.
wait_for() {
    local what="$1" timeout="$2" deadline
    shift 2
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            printf 'error: timed out after %ss waiting for %s\n' "$timeout" "$what" >&2
            return 1
        fi
        sleep 2
    done
}
