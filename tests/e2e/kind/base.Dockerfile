# A stand-in for kindest/base, which cannot be pulled here (node-image.sh builds it; kind's
# `build node-image --base-image` then adds Kubernetes). It follows the steps of kind's
# images/base/Dockerfile, on the same Debian, with the parts built from source by node-image.sh.
# Context (assembled by node-image.sh):
#   files/  kind's images/base/files, from the kind module in the Go module cache
#   parts/  containerd, ctr, containerd-shim-runc-v2, runc, crictl, CNI plugins, at their paths
ARG BASE=debian:trixie-slim
FROM ${BASE}

# kind's entrypoint, helper scripts, containerd config and systemd units (modes set in context)
COPY files/ /

# The packages kind's base installs to run systemd, Kubernetes and containerd, less the ones
# only storage e2e tests or rootless nodes use (nfs-common, open-iscsi, fuse-overlayfs).
# Then, as kind does: no systemd units but ours, no kmsg in journald, systemd as /sbin/init.
RUN chmod 0755 /kind /kind/bin \
    && DEBIAN_FRONTEND=noninteractive clean-install \
       systemd \
       conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
       libseccomp2 pigz \
       e2fsprogs \
       bash ca-certificates curl jq procps \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -s /usr/lib/systemd/systemd /sbin/init

RUN systemctl enable kubelet.service \
    && systemctl enable containerd.service \
    && systemctl enable undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests

# containerd, runc, crictl, CNI plugins
COPY parts/ /
# containerd's default OCI spec, with kind's product-files hook and without rlimits
RUN ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' \
        > /etc/containerd/cri-base.json \
    && containerd --version && runc --version && crictl --version

# systemd: tell it that it runs in a container; it stops on SIGRTMIN+3
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
