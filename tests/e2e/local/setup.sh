#!/usr/bin/env bash
# Single idempotent entry point of the `local` e2e provider: fill the cache with everything
# the cluster needs. Cold: ~8-11 min on 2 cores (almost all of it `go build`). Warm: ~1 s.
#
#   tests/e2e/local/setup.sh        (env: DRA_E2E_CACHE, default ~/.cache/dra-cdi-driver-e2e)
#
# 1. host packages: runc (containerd's runtime) and busybox-static (image contents), via apt
# 2. etcd 3.5 + containerd 1.7 from Debian trixie (private apt config; see fetch-debs.sh)
# 3. kube-apiserver, -controller-manager, -scheduler, kubelet, kubectl (see build-k8s.sh)
# 4. the pause and busybox image tarballs (tests/e2e/harness/images.py)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${DRA_E2E_CACHE:-$HOME/.cache/dra-cdi-driver-e2e}"
mkdir -p "$cache"
t0=$(date +%s)

need=()
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
for tool in openssl mount; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing host packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$here/fetch-debs.sh"
"$here/build-k8s.sh"

images="$cache/images"
stamp="$images/.busybox-$(sha256sum /bin/busybox "$here/../harness/images.py" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$images"
  python3 "$here/../harness/images.py" "$images"
  touch "$stamp"
else
  echo "images: cached in $images"
fi
echo "local e2e provider ready ($(( $(date +%s) - t0 ))s)"
