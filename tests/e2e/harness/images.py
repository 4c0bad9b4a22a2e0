"""Build the two container images the local provider needs, without any image tooling.

Both are made from Debian's statically linked busybox (package busybox-static):

* ``registry.local/pause:e2e``   the pod sandbox image (a shell that sleeps until SIGTERM)
* ``registry.local/busybox:e2e`` the image test pods run

Each is written as an OCI image layout in a tar (``oci-layout``, ``index.json``, blobs) with a
Docker-style ``manifest.json`` next to it, which is what ``ctr images import`` reads. Layers are
uncompressed and every tar entry has a fixed owner and mtime, so the output is reproducible
and its digests only change when busybox does.

Run as a script to build into a directory:  python3 images.py OUTDIR [--busybox PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

PAUSE_REF = "registry.local/pause:e2e"
BUSYBOX_REF = "registry.local/busybox:e2e"
ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Sandbox process: exit cleanly on SIGTERM/SIGINT, otherwise sleep forever.
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


_BASE_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "var": 0o755,
}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _info(name: str, kind: bytes, mode: int, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def busybox_layer(busybox: Path, extra: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """A root filesystem: /bin/busybox, a symlink per applet, /etc/passwd and friends, and
    `extra` files (path -> (data, mode)), with the dirs they need."""
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    binary = busybox.read_bytes()
    files: dict[str, bytes] = {
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
        "etc/hostname": b"e2e\n",
    }
    extra = extra or {}
    extra_dirs = sorted(
        {str(parent) for name in extra for parent in Path(name).parents if str(parent) != "."}
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {**{d: 0o755 for d in extra_dirs}, **_BASE_DIRS}
        for d, mode in sorted(dirs.items()):
            tar.addfile(_info(d, tarfile.DIRTYPE, mode))
        tar.addfile(
            _info("bin/busybox", tarfile.REGTYPE, 0o755, size=len(binary)), io.BytesIO(binary)
        )
        for name in sorted(set(applets) - {"busybox"}):
            tar.addfile(_info(f"bin/{name}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        for name, data in sorted(files.items()):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
        for name, (data, mode) in sorted(extra.items()):
            tar.addfile(_info(name, tarfile.REGTYPE, mode, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def image_tar(ref: str, layer: bytes, entrypoint: list[str] | None, cmd: list[str]) -> bytes:
    diff_id = _sha(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": [ENV_PATH], "Entrypoint": entrypoint, "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {
                "created": "1970-01-01T00:00:00Z",
                "created_by": "dra-cdi-driver tests/e2e/harness/images.py",
            }
        ],
    }
    config_b = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": _sha(config_b), "size": len(config_b)},
        "layers": [{"mediaType": MT_LAYER, "digest": diff_id, "size": len(layer)}],
    }
    manifest_b = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": _sha(manifest_b),
                "size": len(manifest_b),
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }

    def blob(b: bytes) -> str:
        return "blobs/sha256/" + _sha(b).split(":", 1)[1]

    docker_manifest = [
        {
            "Config": blob(config_b),
            "RepoTags": [ref],
            "Layers": [blob(layer)],
        }
    ]
    entries: list[tuple[str, bytes]] = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
        ("manifest.json", json.dumps(docker_manifest).encode()),
        (blob(config_b), config_b),
        (blob(manifest_b), manifest_b),
        (blob(layer), layer),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o755))
        for name, data in entries:
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def build(outdir: Path, busybox: Path = Path("/bin/busybox")) -> dict[str, Path]:
    """Write pause.tar and busybox.tar into outdir (atomically); return ref -> path."""
    if not busybox.exists():
        raise FileNotFoundError(f"{busybox} missing: apt-get install busybox-static")
    outdir.mkdir(parents=True, exist_ok=True)
    layer = busybox_layer(busybox)
    out = {
        PAUSE_REF: (
            outdir / "pause.tar",
            image_tar(PAUSE_REF, layer, ["/bin/sh", "-c", PAUSE_SCRIPT], []),
        ),
        BUSYBOX_REF: (outdir / "busybox.tar", image_tar(BUSYBOX_REF, layer, None, ["sh"])),
    }
    for path, data in out.values():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return {ref: path for ref, (path, _) in out.items()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--busybox", type=Path, default=Path("/bin/busybox"))
    args = ap.parse_args(argv)
    for ref, path in build(args.outdir, args.busybox).items():
        print(f"{ref}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
