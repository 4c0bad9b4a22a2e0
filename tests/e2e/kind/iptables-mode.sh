#!/bin/sh
# iptables, iptables-save, iptables-restore and their ip6tables twins in the offline
# kube-proxy image (kube-proxy.Dockerfile) point here. kube-proxy runs in the node's network
# namespace and must write its rules with the same backend as the node (kind's entrypoint picks
# legacy or nft by which one already holds rules) and its kubelet. On the first call this picks
# the backend that holds more rules, points those six commands at it for good, and runs the
# command asked for.
set -eu
legacy=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep -c '^-' || true)
nft=$( (timeout 5 sh -c 'iptables-nft-save; ip6tables-nft-save' || true) 2>/dev/null | grep -c '^-' || true)
mode=nft
if [ "${legacy:-0}" -gt "${nft:-0}" ]; then mode=legacy; fi
for family in iptables ip6tables; do
    for suffix in "" -save -restore; do
        ln -sf "$family-$mode$suffix" "/usr/sbin/$family$suffix"
    done
done
exec "/usr/sbin/$(basename "$0")" "$@"
