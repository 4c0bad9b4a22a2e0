#!/usr/bin/env bash
# Create the classic mock GPU layout of the device-plugin days on a node (needs root):
#
#   /dev/mock/device_<i>         character devices (mknod c 89 1, as the classic set-up did)
#   /mock/so/device_<i>.so       one library per device
#   /mock/bin/list_device.sh     a tool every container with a mock GPU gets in /usr/local/bin
#
#   hack/mock-layout.sh [COUNT] [ROOT]     # COUNT 8, ROOT / (a prefix, for tests)
#
# The driver's mock source hands each allocated GPU's device node and library to the
# container, and /mock/bin's files to every container of the claim. hack/kind-up.sh runs
# this inside the kind node; the local e2e provider runs it with ROOT under its cluster dir.
# Idempotent.
set -euo pipefail
count="${1:-8}"
root="${2:-}"

mkdir -p "$root/dev/mock" "$root/mock/so" "$root/mock/bin"
for ((i = 0; i < count; i++)); do
    [[ -c "$root/dev/mock/device_$i" ]] || mknod -m 666 "$root/dev/mock/device_$i" c 89 1
    echo "mock library of GPU $i" >"$root/mock/so/device_$i.so"
done
cat >"$root/mock/bin/list_device.sh" <<'TOOL'
#!/bin/sh
# The mock GPUs this container was given: one line per device node, with its library.
for dev in /dev/mock/device_*; do
    [ -e "$dev" ] || continue
    name="${dev##*/}"
    lib="/mock/so/$name.so"
    [ -e "$lib" ] || lib="(no library)"
    echo "$name $lib"
done
TOOL
chmod 755 "$root/mock/bin/list_device.sh"
echo "mock layout: $count devices under ${root:-/}"
