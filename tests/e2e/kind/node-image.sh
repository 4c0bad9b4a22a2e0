#!/usr/bin/env bash
# Build, offline, the kind node image of the e2e tests: every part from source (Go modules,
# Debian packages, the kind module's own base files), nothing pulled from a registry.
# Idempotent: each part is cached under $cache/kind-parts/<name>-<version>/, and a warm run
# exits at once when the engine already has the image. Progress goes to stderr; the last line
# of stdout is the image's tag:
#
#   tag="$(tests/e2e/kind/node-image.sh)"     (env: DOCKER_HOST, DOCKER, DRA_E2E_CACHE,
#                                              KIND_VERSION, K8S_VERSION, *_VERSION below)
#   "$cache/kind-$KIND_VERSION/kind" create cluster --config kind-config.yaml --image "$tag"
#
# Tag: dra-cdi-driver-e2e/kind-node:<k8s version>-kind<kind version>-<hash of the inputs>.
#
# What goes in, and why (see /work/shared/KIND-OFFLINE.md for the host's traps):
# - kind itself, into $cache/kind-$KIND_VERSION/kind.
# - Kubernetes from ../local/build-k8s.sh (shared with the local provider).
# - A stand-in for kindest/base: debian:<suite>-slim (from ./debian-image.sh), the Debian
#   packages and the files of kind's images/base (read from the kind module in the Go module
#   cache at build time), containerd, runc, crictl and CNI plugins built from their modules.
# - kind's `build node-image --type file` takes a kubernetes-server tarball. Its image archives
#   also carry every other image that kind would otherwise fetch from the network (etcd,
#   coredns, pause, kindnetd, local-path-provisioner and -helper): all in kube-proxy.tar, whose
#   `repositories` entry comes first (./image-archive.py says why).
# - kindnetd is a nested Go module that the proxy refuses: ./cni-standin.sh stands in for it
#   (a ptp + host-local CNI config with ipMasq, then sleep). Enough for one node; there are
#   no routes between nodes.
set -euo pipefail
exec 3>&1 1>&2 # progress to stderr; only the tag goes to the real stdout (fd 3)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
e2e="$(cd "$here/.." && pwd)"
cache="${DRA_E2E_CACHE:-$HOME/.cache/dra-cdi-driver-e2e}"
parts="$cache/kind-parts"
docker="${DOCKER:-/usr/bin/docker}"
export DOCKER="$docker" GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}"

# Versions. kind's own base image pins runc, crictl and the CNI plugins (images/base/Dockerfile);
# containerd is the newest 2.x patch release on the module proxy (kind pins v2.3.1);
# local-path-provisioner: kind pins v0.0.34; the proxy serves v0.0.30 (v0.0.34 is refused,
# and v0.0.35 has an .info but its .zip is refused).
KIND_VERSION="${KIND_VERSION:-v0.32.0}"
K8S_VERSION="${K8S_VERSION:-$(awk '$1=="require"{$1=""; $0=$0} $1=="k8s.io/kubernetes"{print $2}' "$e2e/go.mod")}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.4.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.36.0}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.9.1}"
LOCAL_PATH_VERSION="${LOCAL_PATH_VERSION:-v0.0.30}"
DEBIAN_SUITE="${DEBIAN_SUITE:-trixie}" # kind v0.32.0's base: debian:trixie-slim
[ -n "$K8S_VERSION" ] || { echo "cannot read the k8s.io/kubernetes version from $e2e/go.mod"; exit 1; }
export K8S_VERSION

t_start=$SECONDS
log() { echo "[node-image] $*"; }

# --- the tag: versions and every file of ours that shapes the image ---------------------------
inputs=(node-image.sh base.Dockerfile kube-proxy.Dockerfile iptables-mode.sh cni-standin.sh
        image-archive.py debian-image.sh)
versions="kind=$KIND_VERSION k8s=$K8S_VERSION containerd=$CONTAINERD_VERSION runc=$RUNC_VERSION"
versions+=" crictl=$CRICTL_VERSION cni=$CNI_PLUGINS_VERSION local-path=$LOCAL_PATH_VERSION debian=$DEBIAN_SUITE"
hash="$( (echo "$versions"; cd "$here" && sha256sum "${inputs[@]}") | sha256sum | cut -c1-12)"
repo=dra-cdi-driver-e2e/kind-node
tag="$repo:$K8S_VERSION-kind$KIND_VERSION-$hash"
base_tag="dra-cdi-driver-e2e/kind-base:kind$KIND_VERSION-$hash"

# --- kind ------------------------------------------------------------------------------------
kind="$cache/kind-$KIND_VERSION/kind"
if [ ! -x "$kind" ]; then
    t0=$SECONDS
    log "kind $KIND_VERSION: go install"
    mkdir -p "$(dirname "$kind")"
    GOBIN="$(dirname "$kind")" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
    log "kind $KIND_VERSION: built in $((SECONDS - t0))s"
fi

present() {
    "$docker" image inspect "$tag" >/dev/null 2>&1 || return 1
    log "$tag: present"
    echo "$tag" >&3
}
present && exit 0
# One build at a time (parts are shared); the one we waited for may have built the image.
mkdir -p "$cache"
exec 9>"$cache/kind-parts.lock"
flock 9
present && exit 0
log "building $tag"

kindmod="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION"
[ -d "$kindmod/images/base/files" ] || go mod download "sigs.k8s.io/kind@$KIND_VERSION"
k8sbin="$cache/k8s-$K8S_VERSION/bin"
"$e2e/local/build-k8s.sh" >&2

tmp="$(mktemp -d /tmp/dra-kind-node.XXXXXX)"
cleanup() {
    local rc=$?
    rm -rf "$tmp"
    [ "$rc" = 0 ] || log "FAILED (exit $rc)"
}
trap cleanup EXIT

# --- parts from source, each cached in $parts/<name>-<version>/ -------------------------------
# part NAME VERSION FUNCTION: run FUNCTION OUTDIR once, into a fresh dir moved into place whole.
part() {
    local name="$1" version="$2" fn="$3" dir="$parts/$1-$2"
    if [ -f "$dir/.done" ]; then
        log "$name $version: cached"
        return
    fi
    local t0=$SECONDS out
    mkdir -p "$parts"
    rm -rf "$parts/.$name-$version".* # what a failed or killed build left
    out="$(mktemp -d "$parts/.$name-$version.XXXXXX")"
    log "$name $version: building"
    "$fn" "$out" "$version" 2> >(grep --line-buffered -Ev '^go: (downloading|added|upgraded) ' >&2)
    touch "$out/.done"
    chmod 755 "$out"
    rm -rf "$dir" && mv "$out" "$dir"
    log "$name $version: built in $((SECONDS - t0))s ($(du -sh "$dir" | cut -f1))"
}

build_containerd() {
    local m=github.com/containerd/containerd/v2
    GOBIN="$1" CGO_ENABLED=0 go install -trimpath \
        -tags "no_aufs no_zfs no_btrfs no_devmapper" \
        -ldflags "-s -w -X $m/version.Version=${2#v} -X $m/version.Revision=$2" \
        "$m/cmd/containerd@$2" "$m/cmd/ctr@$2" "$m/cmd/containerd-shim-runc-v2@$2"
}
build_runc() {
    # cgo for libseccomp (libseccomp-dev), linked statically as runc's own `make static` does
    if ! command -v gcc >/dev/null || [ ! -f /usr/include/seccomp.h ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libseccomp-dev >/dev/null
    fi
    GOBIN="$1" CGO_ENABLED=1 go install -trimpath -tags "seccomp urfave_cli_no_docs netgo osusergo" \
        -ldflags "-s -w -X main.gitCommit=$2 -extldflags -static" \
        "github.com/opencontainers/runc@$2"
}
build_crictl() {
    GOBIN="$1" CGO_ENABLED=0 go install -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$2" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$2"
}
build_cni() {
    local m=github.com/containernetworking/plugins/plugins
    GOBIN="$1" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
        "$m/ipam/host-local@$2" "$m/main/loopback@$2" "$m/main/ptp@$2" \
        "$m/meta/portmap@$2" "$m/main/bridge@$2"
}
build_etcd() {
    # etcd's server module replaces its sibling modules with ../ paths, which `go install
    # module@version` refuses: build it from a throwaway module that requires them all.
    local mod="$tmp/etcd-mod" e=go.etcd.io/etcd
    mkdir -p "$mod"
    (
        cd "$mod"
        go mod init dra-cdi-driver-e2e/etcd-build >/dev/null 2>&1
        go get "$e/server/v3@$2" "$e/api/v3@$2" "$e/client/pkg/v3@$2" "$e/client/v3@$2" "$e/pkg/v3@$2"
        CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$1/etcd" "$e/server/v3"
    )
}
build_coredns() {
    GOBIN="$1" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$2"
}
build_local_path() {
    GOBIN="$1" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.VERSION=$2" \
        "github.com/rancher/local-path-provisioner@$2"
}
build_pause() {
    # Kubernetes' own pause, from the k8s.io/kubernetes module (as its build/pause/Makefile does)
    local src
    src="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
    gcc -Os -Wall -Werror -static -DVERSION="$2" -o "$1/pause" "$src/build/pause/linux/pause.c"
    strip "$1/pause"
}

# The tags that kind's build needs besides the four Kubernetes images: what kubeadm lists for
# this version (etcd, coredns), containerd's sandbox image in kind's config, and the images
# named in kind's default CNI and storage manifests.
kubeadm_images="$("$k8sbin/kubeadm" config images list --kubernetes-version "$K8S_VERSION")"
etcd_image="$(grep '/etcd:' <<<"$kubeadm_images")"
coredns_image="$(grep '/coredns:' <<<"$kubeadm_images")"
pause_image="$(sed -n 's/^ *sandbox_image *= *"\(.*\)"/\1/p' "$kindmod/images/base/files/etc/containerd/config.toml")"
kind_const() { sed -n "s/^const $1 = \"\(.*\)\"/\1/p" "$kindmod/pkg/build/nodeimage/$2"; }
kindnetd_image="$(kind_const kindnetdImage const_cni.go)"
provisioner_image="$(kind_const storageProvisionerImage const_storage.go)"
helper_image="$(kind_const storageHelperImage const_storage.go)"
for v in etcd_image coredns_image pause_image kindnetd_image provisioner_image helper_image; do
    [ -n "${!v}" ] || { log "cannot find $v in kubeadm's list or kind's source"; exit 1; }
done
etcd_version="v${etcd_image##*:}"; etcd_version="${etcd_version%-*}" # 3.6.8-0 -> v3.6.8
coredns_version="${coredns_image##*:}"

part containerd "$CONTAINERD_VERSION" build_containerd
part runc "$RUNC_VERSION" build_runc
part crictl "$CRICTL_VERSION" build_crictl
part cni-plugins "$CNI_PLUGINS_VERSION" build_cni
part etcd "$etcd_version" build_etcd
part coredns "$coredns_version" build_coredns
part local-path-provisioner "$LOCAL_PATH_VERSION" build_local_path
part pause "$K8S_VERSION" build_pause

# --- images ----------------------------------------------------------------------------------
dbuild() { # dbuild TAG DOCKERFILE CONTEXT [build args...]: BuildKit, quiet unless it fails
    local t="$1" f="$2" ctx="$3" t0=$SECONDS
    shift 3
    if ! DOCKER_BUILDKIT=1 "$docker" build --progress=plain -t "$t" -f "$f" "$@" "$ctx" >"$tmp/build.log" 2>&1; then
        tail -40 "$tmp/build.log"
        return 1
    fi
    log "image $t: built in $((SECONDS - t0))s"
}
# scratch_image TAG ROOTFS ENTRYPOINT-JSON: a one-layer image of ROOTFS (static binaries only)
scratch_image() {
    mkdir -p "$2/tmp" && chmod 1777 "$2/tmp"
    tar -C "$2" --numeric-owner --owner=0 --group=0 -c . |
        "$docker" import --change "ENTRYPOINT $3" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$1" >/dev/null
}
# busybox_rootfs DIR: a static busybox with a link for each applet
busybox_rootfs() {
    if [ ! -x /bin/busybox ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    fi
    mkdir -p "$1/bin"
    cp /bin/busybox "$1/bin/busybox"
    local a
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$1/bin/$a"; done
}
# stage ROOT SRC DEST: copy SRC to ROOT/DEST with mode 0755
stage() { install -D -m 0755 "$2" "$1/$3"; }

"$here/debian-image.sh" "$DEBIAN_SUITE" >&2
debian="debian:$DEBIAN_SUITE-slim"
t_images=$SECONDS

# Each image gets a temporary name of ours; image-archive.py writes the names kind wants.
p=dra-cdi-driver-e2e/kind-part
for c in kube-apiserver kube-controller-manager kube-scheduler; do
    stage "$tmp/rootfs-$c" "$k8sbin/$c" usr/local/bin/$c
    scratch_image "$p:$c" "$tmp/rootfs-$c" "[\"/usr/local/bin/$c\"]"
done
mkdir -p "$tmp/ctx-kube-proxy"
cp "$k8sbin/kube-proxy" "$here/iptables-mode.sh" "$tmp/ctx-kube-proxy/"
dbuild "$p:kube-proxy" "$here/kube-proxy.Dockerfile" "$tmp/ctx-kube-proxy" --build-arg "BASE=$debian"

stage "$tmp/rootfs-etcd" "$parts/etcd-$etcd_version/etcd" usr/local/bin/etcd
scratch_image "$p:etcd" "$tmp/rootfs-etcd" '["/usr/local/bin/etcd"]'
stage "$tmp/rootfs-coredns" "$parts/coredns-$coredns_version/coredns" coredns
scratch_image "$p:coredns" "$tmp/rootfs-coredns" '["/coredns"]'
stage "$tmp/rootfs-pause" "$parts/pause-$K8S_VERSION/pause" pause
scratch_image "$p:pause" "$tmp/rootfs-pause" '["/pause"]'
stage "$tmp/rootfs-provisioner" "$parts/local-path-provisioner-$LOCAL_PATH_VERSION/local-path-provisioner" \
    usr/local/bin/local-path-provisioner
scratch_image "$p:local-path-provisioner" "$tmp/rootfs-provisioner" '["/usr/local/bin/local-path-provisioner"]'
busybox_rootfs "$tmp/rootfs-helper"
scratch_image "$p:local-path-helper" "$tmp/rootfs-helper" '["/bin/sh"]'
busybox_rootfs "$tmp/rootfs-kindnetd"
stage "$tmp/rootfs-kindnetd" "$here/cni-standin.sh" bin/kindnetd
scratch_image "$p:kindnetd" "$tmp/rootfs-kindnetd" '["/bin/kindnetd"]'
log "part images: built in $((SECONDS - t_images))s"

# --- the stand-in for kindest/base -----------------------------------------------------------
if "$docker" image inspect "$base_tag" >/dev/null 2>&1; then
    log "image $base_tag: present"
else
    ctx="$tmp/ctx-base"
    # kind's images/base/files, from the module cache (read-only there): scripts 0755, rest 0644
    mkdir -p "$ctx"
    cp -r "$kindmod/images/base/files" "$ctx/files"
    chmod -R u+w "$ctx/files"
    find "$ctx/files" -type d -exec chmod 0755 {} +
    find "$ctx/files" -type f -exec chmod 0644 {} +
    chmod 0755 "$ctx"/files/usr/local/bin/* "$ctx"/files/kind/bin/*
    stage "$ctx/parts" "$parts/containerd-$CONTAINERD_VERSION/containerd" usr/local/bin/containerd
    stage "$ctx/parts" "$parts/containerd-$CONTAINERD_VERSION/ctr" usr/local/bin/ctr
    stage "$ctx/parts" "$parts/containerd-$CONTAINERD_VERSION/containerd-shim-runc-v2" usr/local/bin/containerd-shim-runc-v2
    stage "$ctx/parts" "$parts/runc-$RUNC_VERSION/runc" usr/local/sbin/runc
    stage "$ctx/parts" "$parts/crictl-$CRICTL_VERSION/crictl" usr/local/bin/crictl
    for plugin in host-local loopback ptp portmap bridge; do
        stage "$ctx/parts" "$parts/cni-plugins-$CNI_PLUGINS_VERSION/$plugin" "opt/cni/bin/$plugin"
    done
    dbuild "$base_tag" "$here/base.Dockerfile" "$ctx" --build-arg "BASE=$debian"
fi

# --- the kubernetes-server tarball, in the release layout ------------------------------------
t0=$SECONDS
srv="$tmp/server/kubernetes"
mkdir -p "$srv/server/bin"
echo "$K8S_VERSION" >"$srv/version"
for c in kubeadm kubelet kubectl; do cp "$k8sbin/$c" "$srv/server/bin/"; done
k8s_image() { echo "registry.k8s.io/$1:$K8S_VERSION"; }
for c in kube-apiserver kube-controller-manager kube-scheduler; do
    python3 "$here/image-archive.py" "$srv/server/bin/$c.tar" "$p:$c=$(k8s_image "$c")"
done
python3 "$here/image-archive.py" "$srv/server/bin/kube-proxy.tar" \
    "$p:kube-proxy=$(k8s_image kube-proxy)" "$p:etcd=$etcd_image" "$p:coredns=$coredns_image" \
    "$p:pause=$pause_image" "$p:kindnetd=$kindnetd_image" \
    "$p:local-path-provisioner=$provisioner_image" "$p:local-path-helper=$helper_image"
tarball="$tmp/kubernetes-server-linux-amd64.tar.gz"
tar -C "$tmp/server" -c kubernetes | gzip -1 >"$tarball"
rm -rf "$tmp/server"
log "kubernetes-server tarball: $((SECONDS - t0))s ($(du -h "$tarball" | cut -f1))"
# The images live on in the archive (and their layers in BuildKit's cache): drop the names.
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause \
    kindnetd local-path-provisioner local-path-helper; do
    "$docker" rmi "$p:$c" >/dev/null
done

# --- kind build node-image -------------------------------------------------------------------
# kind runs `docker` from PATH: make it the client we were given, except that `docker pull` of
# an image the engine has succeeds at once (kind pulls the base image first, and retries a
# failed pull for 10 s). kind also extracts the tarball under $TMPDIR and leaves it there, so
# give it ours.
t0=$SECONDS
mkdir -p "$tmp/bin" "$tmp/kindtmp"
cat >"$tmp/bin/docker" <<EOF
#!/bin/sh
if [ "\$1" = pull ]; then
    for arg; do case "\$arg" in pull | -*) ;; *) "$docker" image inspect "\$arg" >/dev/null 2>&1 && exit 0 ;; esac; done
fi
exec "$docker" "\$@"
EOF
chmod 755 "$tmp/bin/docker"
if ! PATH="$tmp/bin:$PATH" TMPDIR="$tmp/kindtmp" "$kind" build node-image --type file "$tarball" \
    --base-image "$base_tag" --image "$tag" >"$tmp/kind-build.log" 2>&1; then
    tail -40 "$tmp/kind-build.log"
    exit 1
fi
log "kind build node-image: $((SECONDS - t0))s"

# Older builds of this script's images (another hash) are garbage now; an image that a cluster
# still runs on stays (docker refuses to remove it).
for old in $("$docker" images --format '{{.Repository}}:{{.Tag}}' "$repo") \
    $("$docker" images --format '{{.Repository}}:{{.Tag}}' "${base_tag%%:*}"); do
    [ "$old" = "$tag" ] || [ "$old" = "$base_tag" ] || "$docker" rmi "$old" >/dev/null 2>&1 || true
done
log "$tag: built in $((SECONDS - t_start))s ($("$docker" image inspect --format '{{.Size}}' "$tag") bytes)"
echo "$tag" >&3
