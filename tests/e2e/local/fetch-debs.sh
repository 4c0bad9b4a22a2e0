#!/usr/bin/env bash
# Fetch etcd (3.5) and containerd (1.7) from Debian trixie into the cache and unpack them.
# Uses a private apt configuration (own sources list, lists and archive dirs under the cache):
# the machine's apt sources are never touched.
#   usage: fetch-debs.sh   (env: DRA_E2E_CACHE, DEB_SUITE, DEB_MIRROR)
set -euo pipefail
cache="${DRA_E2E_CACHE:-$HOME/.cache/dra-cdi-driver-e2e}"
suite="${DEB_SUITE:-trixie}"
mirror="${DEB_MIRROR:-http://deb.debian.org/debian}"
pkgs=(etcd-server containerd)
root="$cache/debs-$suite"
stamp="$root/.done"
if [ -f "$stamp" ]; then echo "debs ($suite): cached in $root/root"; exit 0; fi

apt_dir="$root/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$root/dl"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
  > "$apt_dir/sources.list"
opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::archives=$apt_dir/archives"
  -o "APT::Get::List-Cleanup=0"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
mkdir -p "$apt_dir/cache"
apt-get "${opts[@]}" -qq update
(cd "$root/dl" && rm -f ./*.deb && apt-get "${opts[@]}" -q download "${pkgs[@]}")
rm -rf "$root/root"; mkdir -p "$root/root"
for d in "$root"/dl/*.deb; do dpkg -x "$d" "$root/root"; echo "unpacked $(basename "$d")"; done
"$root/root/usr/bin/etcd" --version | head -1
"$root/root/usr/bin/containerd" --version
touch "$stamp"
