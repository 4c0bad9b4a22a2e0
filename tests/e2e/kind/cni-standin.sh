#!/bin/sh
# Stand-in for kindnetd in the offline node image (built by node-image.sh, run by busybox sh
# under the image name kind's default CNI manifest uses). kindnetd itself is a nested Go
# module that the module proxy does not serve.
#
# kind's manifest runs it on every node (hostNetwork, /etc/cni/net.d mounted from the node)
# with POD_SUBNET set to the cluster's pod subnet (comma-separated when dual-stack). It writes
# a CNI config for that subnet: ptp veths, host-local addresses, ipMasq so that traffic from a
# pod to anything outside the pod subnet (the node, the API server behind its ClusterIP) is
# masqueraded and finds its way back, and portmap for hostPorts. Then it sleeps.
#
# One node only: it sets up no routes between nodes, and host-local on each node would hand out
# addresses from the same subnet.
set -eu
: "${POD_SUBNET:?POD_SUBNET is not set}"
dir=/etc/cni/net.d
conf="$dir/10-kindnet.conflist"

ranges=""
routes=""
for subnet in $(echo "$POD_SUBNET" | tr ',' ' '); do
    case "$subnet" in
        *:*) default="::/0" ;;
        *) default="0.0.0.0/0" ;;
    esac
    ranges="$ranges${ranges:+, }[{\"subnet\": \"$subnet\"}]"
    routes="$routes${routes:+, }{\"dst\": \"$default\"}"
done
# the node's MTU (this pod shares the node's network namespace)
dev="$(ip route show default 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n1)"
mtu="$(cat "/sys/class/net/${dev:-eth0}/mtu" 2>/dev/null || echo 1500)"

mkdir -p "$dir"
cat >"$conf.tmp" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kindnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "mtu": $mtu,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [$routes],
        "ranges": [$ranges]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
EOF
mv "$conf.tmp" "$conf"
echo "kindnetd stand-in: wrote $conf for $POD_SUBNET (mtu $mtu)"

trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $! || true
done
