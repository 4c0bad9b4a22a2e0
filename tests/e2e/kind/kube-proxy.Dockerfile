# kube-proxy for the offline kind node image (node-image.sh): Debian, the packet-filtering
# tools kube-proxy runs, and the kube-proxy binary built from k8s.io/kubernetes.
# Context: kube-proxy, iptables-mode.sh.
ARG BASE=debian:trixie-slim
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       iptables nftables conntrack ipset kmod \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/* /usr/share/doc/* /usr/share/man/*
COPY iptables-mode.sh /usr/sbin/iptables-mode
RUN chmod 0755 /usr/sbin/iptables-mode \
    && for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
         ln -sf iptables-mode "/usr/sbin/$cmd"; \
       done
COPY kube-proxy /usr/local/bin/kube-proxy
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
