#!/usr/bin/env bash
# Build the pinned Kubernetes components from the Go module k8s.io/kubernetes (see ../go.mod)
# into the cache, keyed by version. A no-op when the binaries are there.
#   usage: build-k8s.sh            (env: DRA_E2E_CACHE, K8S_VERSION)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
moddir="$(cd "$here/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-$(awk '$1=="require"{$1=""; $0=$0} $1=="k8s.io/kubernetes"{print $2}' "$moddir/go.mod")}"
[ -n "$K8S_VERSION" ] || { echo "cannot read the k8s.io/kubernetes version from $moddir/go.mod" >&2; exit 1; }
cache="${DRA_E2E_CACHE:-$HOME/.cache/dra-cdi-driver-e2e}"
bin="$cache/k8s-$K8S_VERSION/bin"
# kubeadm and kube-proxy are for the kind node image (tests/e2e/kind/node-image.sh), built in the same
# go build so that both providers run the very same Kubernetes.
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kubeadm kube-proxy)

have_all() { for c in "${cmds[@]}"; do [ -x "$bin/$c" ] || return 1; done; }
if have_all; then echo "k8s $K8S_VERSION: cached in $bin"; exit 0; fi

command -v go >/dev/null || { echo "go not found: Go >= 1.24 is needed to build Kubernetes" >&2; exit 1; }
mkdir -p "$cache/k8s-$K8S_VERSION"
tmp="$(mktemp -d "$cache/k8s-$K8S_VERSION/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cd "$moddir"
t0=$(date +%s)
echo "k8s $K8S_VERSION: downloading modules"
go mod download -x 2>&1 | grep -c '^# get' | sed 's/^/modules fetched: /' || true
go mod verify >/dev/null
t1=$(date +%s)
echo "k8s $K8S_VERSION: module download took $((t1 - t0))s; building ${cmds[*]}"
vpkg=k8s.io/component-base/version
major="${K8S_VERSION#v}"; major="${major%%.*}"
minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
ldflags="-s -w -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor"
ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
pkgs=(); for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}"
t2=$(date +%s)
echo "k8s $K8S_VERSION: build took $((t2 - t1))s"
chmod 755 "$tmp"
rm -rf "$bin" && mv "$tmp" "$bin"
trap - EXIT
"$bin/kubelet" --version
