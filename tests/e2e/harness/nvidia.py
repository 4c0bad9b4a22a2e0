"""A fake NVIDIA node for the e2e suite: what the nvidia device source sees, made real enough
that containerd and runc apply its CDI spec as on a GPU node.

- NVML: tests/fakes/fake_nvml.py, imported by the driver in place of pynvml, reading a JSON
  data file (so a test can take a GPU away);
- the driver root: tests/fakes/nvidia_host.py's tree, with three things made real:
  * the device nodes are character devices (/dev/null's numbers: runc stats the host
    node for its type and numbers, and creates it in the container);
  * libcuda and libnvidia-ml are ELF shared libraries with their real sonames, built here;
  * nvidia-smi is a dynamically linked program that needs libnvidia-ml.so.1 and dlopens
    libcuda.so.1, as the real one does; `nvidia-smi -L` lists the /dev/nvidia<N> nodes the
    container can see, in the real tool's format.
- an image with glibc and no NVIDIA anything (no LD_LIBRARY_PATH): only the driver's
  ldcache hook can make its loader find the mounted libraries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes import nvidia_host

from . import images

GLIBC_IMAGE = "registry.local/glibc:e2e"
# The loader and libc of this machine, copied into the image (x86_64 Debian layout).
_GLIBC_FILES = {
    "lib64/ld-linux-x86-64.so.2": Path("/lib64/ld-linux-x86-64.so.2"),
    "lib/x86_64-linux-gnu/libc.so.6": Path("/lib/x86_64-linux-gnu/libc.so.6"),
}

_LIBCUDA_C = r"""
int cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
"""

_LIBNVML_C = r"""
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_number(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The GPUs this container has: its /dev/nvidia<N> nodes, in order of N. */
int fakeNvmlListGpus(void) {
    int minors[256], n = 0;
    DIR *dev = opendir("/dev");
    struct dirent *e;
    if (!dev) return -1;
    while ((e = readdir(dev)) != NULL && n < 256) {
        const char *rest = e->d_name + 6;
        if (strncmp(e->d_name, "nvidia", 6) != 0 || *rest == '\0') continue;
        if (strspn(rest, "0123456789") != strlen(rest)) continue;
        minors[n++] = atoi(rest);
    }
    closedir(dev);
    qsort(minors, n, sizeof minors[0], by_number);
    for (int i = 0; i < n; i++)
        printf("GPU %d: Fake GPU (UUID: GPU-fake-%d) /dev/nvidia%d\n", i, minors[i], minors[i]);
    return n;
}
"""

_SMI_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int fakeNvmlListGpus(void);

int main(int argc, char **argv) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW);
    int (*cu_init)(unsigned int) = cuda ? (int (*)(unsigned int))dlsym(cuda, "cuInit") : NULL;
    if (!cu_init) {
        fprintf(stderr, "libcuda.so.1: %s\n", dlerror());
        return 2;
    }
    printf("libcuda.so.1: cuInit returned %d\n", cu_init(0));
    if (argc > 1 && strcmp(argv[1], "-L") == 0)
        return fakeNvmlListGpus() < 0 ? 3 : 0;
    return 0;
}
"""


def missing_tools() -> str | None:
    """Why this machine cannot build the fake node, or None."""
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build the fake driver libraries"
    for path in _GLIBC_FILES.values():
        if not path.exists():
            return f"{path} not found (the fake node is built for x86_64 glibc hosts)"
    return None


@dataclass
class FakeNode:
    host: nvidia_host.FakeHost
    data_file: Path

    @property
    def driver_root(self) -> Path:
        return self.host.driver_root

    def set_data(self, data: dict[str, Any]) -> None:
        """What NVML reports from the next discovery on (written atomically)."""
        tmp = self.data_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.data_file)

    def driver_env(self, repo: Path) -> dict[str, str]:
        return {
            "DRA_CDI_DRIVER_NVML_MODULE": "tests.fakes.fake_nvml",
            "FAKE_NVML_DATA": str(self.data_file),
            "PYTHONPATH": str(repo),
        }


def build_node(base: Path, data: dict[str, Any]) -> FakeNode:
    version = str(data["driverVersion"])
    libraries: dict[str, tuple[str, ...]] = {
        "libcuda.so": ("libcuda.so.1",),
        "libnvidia-ml.so": ("libnvidia-ml.so.1",),
    }
    host = nvidia_host.build(base / "host", data, libraries=libraries)
    lib_dir = host.driver_root / nvidia_host.LIB_DIR
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        shared = ("-shared", "-fPIC")
        _cc(src, _LIBCUDA_C, lib_dir / f"libcuda.so.{version}", *shared, "-Wl,-soname,libcuda.so.1")
        _cc(
            src,
            _LIBNVML_C,
            lib_dir / f"libnvidia-ml.so.{version}",
            *shared,
            "-Wl,-soname,libnvidia-ml.so.1",
        )
        smi = host.driver_root / "usr/bin/nvidia-smi"
        _cc(src, _SMI_C, smi, f"-L{lib_dir}", "-l:libnvidia-ml.so.1")
    null = os.stat("/dev/null").st_rdev
    for node in (host.driver_root / "dev").iterdir():
        if node.is_file():  # nvidia_host's placeholders
            node.unlink()
            os.mknod(node, 0o666 | 0o020000, null)
    fake = FakeNode(host, base / "nvml.json")
    fake.set_data(data)
    return fake


def _cc(src_dir: Path, source: str, out: Path, *flags: str) -> None:
    src = src_dir / f"{out.name}.c"
    src.write_text(source)
    subprocess.run(["cc", "-O1", "-o", str(out), str(src), *flags], check=True, timeout=120)


def glibc_image_tar(out: Path, busybox: Path = Path("/bin/busybox")) -> Path:
    """busybox plus this machine's glibc loader and libc, and the ld.so.conf of a Debian
    image (which includes ld.so.conf.d); no NVIDIA paths, no LD_LIBRARY_PATH."""
    extra = {name: (path.resolve().read_bytes(), 0o755) for name, path in _GLIBC_FILES.items()}
    extra["etc/ld.so.conf"] = (b"include /etc/ld.so.conf.d/*.conf\n", 0o644)
    extra["etc/ld.so.conf.d/x86_64-linux-gnu.conf"] = (b"/lib/x86_64-linux-gnu\n", 0o644)
    layer = images.busybox_layer(busybox, extra)
    out.write_bytes(images.image_tar(GLIBC_IMAGE, layer, None, ["sh"]))
    return out
