#!/usr/bin/env bash
# Single idempotent entry point of the `kind` e2e provider: fill the cache with everything a
# kind cluster needs here, where no registry can be reached. Cold: ~25 min on 2 cores (Go
# builds of kind, containerd, etcd, coredns, ...). Warm: seconds.
#
#   tests/e2e/kind/setup.sh        (env: DRA_E2E_CACHE, default ~/.cache/dra-cdi-driver-e2e)
#
# 1. host packages: docker.io (the engine and its 20.10 client) and debootstrap, via apt
# 2. the Kubernetes binaries of the local provider, kubeadm and kube-proxy included
#    (../local/setup.sh: both providers run the same Kubernetes)
# 3. a Docker engine: the running one, else Debian's dockerd started for the build and
#    stopped afterwards (tests/e2e/harness/engine.py)
# 4. debian:trixie-slim, the base of deploy/Dockerfile, from debootstrap (debian-image.sh)
# 5. kind and the kind node image (node-image.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
t0=$SECONDS

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing host packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$here/../local/setup.sh"

python="${PYTHON:-python3}"
cd "$repo"
started=""
if [ -z "${DOCKER_HOST:-}" ]; then
  before="$("$python" -c 'from tests.e2e.harness import engine; print(int(engine.answers(engine.our_host())))')"
  eval "$("$python" -m tests.e2e.harness.engine up)"
  [ "$before" = 1 ] || started=1
fi
stop_engine() { [ -z "$started" ] || "$python" -m tests.e2e.harness.engine down; }
trap stop_engine EXIT

DOCKER="${DOCKER:-/usr/bin/docker}" "$here/debian-image.sh" trixie
"$here/node-image.sh" >/dev/null
echo "kind e2e provider ready ($((SECONDS - t0))s)"
