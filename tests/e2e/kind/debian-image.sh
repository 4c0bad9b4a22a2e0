#!/usr/bin/env bash
# Stand in for the Docker Hub image debian:<suite>-slim, which cannot be pulled here: a
# `debootstrap --variant=minbase` root filesystem (what the official image is made from),
# with Debian's deb822 sources for the suite, its updates and its security archive, imported
# into the engine under that very tag. deploy/Dockerfile is then built unchanged.
# A no-op when the engine already has the tag.
# The host's own extra CA certificates (/usr/local/share/ca-certificates) go in too: where the
# host reaches the package mirrors through a TLS-intercepting proxy, builds in the engine do
# the same, and an image that installs ca-certificates then trusts what the host trusts.
#
#   tests/e2e/kind/debian-image.sh [SUITE]     (env: DOCKER_HOST, DOCKER, DEB_MIRROR)
set -euo pipefail
suite="${1:-trixie}"
tag="debian:$suite-slim"
docker="${DOCKER:-/usr/bin/docker}"
mirror="${DEB_MIRROR:-http://deb.debian.org/debian}"

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag: present"
    exit 0
fi
command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
rootfs="$(mktemp -d /tmp/dra-e2e-debootstrap.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
t0=$SECONDS
echo "$tag: debootstrap --variant=minbase $suite"
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log"; exit 1; }
rm -f "$rootfs.log" "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi
# As the official slim images are configured: apt keeps no caches, downloads no translations,
# and dpkg installs no documentation, manual pages or translations.
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/*
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" --numeric-owner -c . |
    "$docker" import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >/dev/null
echo "$tag: imported in $((SECONDS - t0))s ($("$docker" image inspect --format '{{.Size}}' "$tag") bytes)"
