"""Make the dynamic loader of any image find the driver libraries we mount.

The libraries go to /usr/local/nvidia/lib64 (files.py). NVIDIA's CUDA images put that
dir on LD_LIBRARY_PATH; every other image (python:3.12 with a pip-installed torch, say)
dlopens libcuda.so.1 through /etc/ld.so.cache and would not find it. So, as the NVIDIA
Container Toolkit does with its update-ldcache hook, each container that gets a GPU runs
the host's ldconfig against its root file system once, before its process starts:

- an OCI createContainer hook, which runc runs in the container's mount namespace after
  the mounts are made and before pivot_root, so that both the host's ldconfig and the
  container's root, with our mounts in it, are visible;
- `ldconfig -r <rootfs> -X <lib dir>` chroots into that root, adds the dir to the image's
  own cache and creates no links (the sonames are mounted already, read-only);
- an ld.so.conf.d entry for the same dir, mounted read-only, so that a later ldconfig run
  inside the container (a package install) keeps it.

The hook is a POSIX shell script the driver writes into its plugin dir at start: the path
must exist on the host, and a shell and ldconfig are all it needs there (no helper
binary to install on every node). /bin/sh runs it, so a noexec mount does not matter.

Not covered: musl images (Alpine), whose loader does not read ld.so.cache; they set
LD_LIBRARY_PATH=/usr/local/nvidia/lib64 themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dra_cdi_driver.cdi import ContainerEdits, Hook, Mount
from dra_cdi_driver.devices.inventory import InventoryError
from dra_cdi_driver.fsutil import RootDir

HOOK_NAME = "update-ldcache.sh"
CONF_NAME = "ld.so.conf"
# "000-" sorts first, as the toolkit's entry does: ours wins over an image's stale copy.
CONTAINER_CONF = "/etc/ld.so.conf.d/000-dra-cdi-driver-nvidia.conf"
# The hook's whole environment (OCI hooks inherit nothing, and must not: a container's
# LD_PRELOAD reaching a root process on the host is how hooks get exploited).
HOOK_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)

# stdin: the OCI state, one JSON object with "bundle"; $@: dirs inside the container.
# config.json's root.path is relative to the bundle unless absolute (runtime-spec).
# `field` reads a JSON document cut at its commas and takes the first match: runtimes write
# "bundle" and "root" before "annotations", so a pod annotation of the same name (keys are
# not escaped) cannot redirect the hook, and inside string values quotes are escaped.
HOOK_SCRIPT = r"""#!/bin/sh
# Written by dra-cdi-driver; rewritten at each start. An OCI createContainer hook: adds the
# dirs given as arguments (inside the container) to the container's /etc/ld.so.cache.
set -eu
me="dra-cdi-driver update-ldcache"
field() { tr -d '\n' | tr ',' '\n' | sed -n "s/^[ {]*$1/\\1/p" | head -n 1; }
bundle=$(field '"bundle" *: *"\([^"]*\)".*')
if [ -z "$bundle" ] || [ ! -f "$bundle/config.json" ]; then
  echo "$me: no bundle with a config.json in the OCI state on stdin" >&2
  exit 1
fi
root=$(field '"root" *: *{ *"path" *: *"\([^"]*\)".*' <"$bundle/config.json")
case "$root" in
  "") echo "$me: no root.path in $bundle/config.json" >&2; exit 1 ;;
  /*) ;;
  *) root="$bundle/$root" ;;
esac
ldconfig=""
for candidate in /sbin/ldconfig.real /sbin/ldconfig /usr/sbin/ldconfig /usr/bin/ldconfig; do
  if [ -x "$candidate" ]; then ldconfig=$candidate; break; fi
done
if [ -z "$ldconfig" ]; then
  echo "$me: no ldconfig on this host (looked in /sbin, /usr/sbin, /usr/bin)" >&2
  exit 1
fi
mkdir -p "$root/etc"
exec "$ldconfig" -r "$root" -X "$@"
"""


@dataclass(frozen=True)
class LdcacheHook:
    """The hook script and ld.so.conf entry in `directory`, a host path (the plugin dir's
    nvidia/ subdir), for libraries mounted at `lib_dir` in the container."""

    directory: Path
    lib_dir: Path

    @property
    def script(self) -> Path:
        return self.directory / HOOK_NAME

    @property
    def conf(self) -> Path:
        return self.directory / CONF_NAME

    def install(self) -> None:
        """Write both files (at start), leaving alone those already as they should be."""
        wanted = {HOOK_NAME: (HOOK_SCRIPT, 0o755), CONF_NAME: (f"{self.lib_dir}\n", 0o644)}
        files = RootDir(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for name, (text, mode) in wanted.items():
                path = files.file(name)
                if not path.is_file() or path.read_text() != text:
                    files.write(name, text.encode(), mode)
        except OSError as err:
            raise InventoryError(
                f"cannot write the ldcache hook into {self.directory}: {err.strerror or err} "
                "(it lives in --plugin-dir; or turn it off with --nvidia-ldcache-hook=false)"
            ) from None

    def edits(self) -> ContainerEdits:
        return ContainerEdits(
            mounts=(Mount(str(self.conf), CONTAINER_CONF),),
            hooks=(
                Hook(
                    hook_name="createContainer",
                    path="/bin/sh",
                    args=("/bin/sh", str(self.script), str(self.lib_dir)),
                    env=HOOK_ENV,
                ),
            ),
        )
