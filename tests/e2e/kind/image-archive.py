#!/usr/bin/env python3
"""Write a `docker save` archive of local images under other names, in the form that
`kind build node-image` reads.

    image-archive.py OUT.tar SRC=DEST [SRC=DEST ...]      (env: DOCKER, DOCKER_HOST)

SRC is an image the engine has; DEST is the name it gets in the archive, and so in the node's
containerd (e.g. registry.k8s.io/etcd:3.6.8-0). Why not `docker tag` and `docker save`:

- kind (pkg/build/nodeimage/internal/container/docker/archive.go) learns an archive's images
  from whichever of `manifest.json` and `repositories` comes first in the tar, and from
  `manifest.json` it takes only the first image's tags. An image it does not find in an archive
  it fetches from the network, which fails here. So `repositories`, which names every image,
  is written first.
- Docker writes Docker Hub names short (kindest/kindnetd), while kind compares full ones
  (docker.io/kindest/kindnetd); containerd normalizes either on import. DEST is written as given.
- The engine keeps only names of our own; nothing in it claims to be an upstream image.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile


def split_ref(ref: str) -> tuple[str, str]:
    """'registry.k8s.io/etcd:3.6.8-0' -> ('registry.k8s.io/etcd', '3.6.8-0')."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon <= slash:
        raise SystemExit(f"image-archive: {ref!r} has no tag")
    return ref[:colon], ref[colon + 1 :]


def json_member(name: str, doc: object) -> tuple[tarfile.TarInfo, io.BytesIO]:
    data = json.dumps(doc).encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, io.BytesIO(data)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = argv[1]
    renames = dict(a.split("=", 1) for a in argv[2:])
    docker = os.environ.get("DOCKER", "/usr/bin/docker")
    raw = out + ".raw"
    try:
        subprocess.run([docker, "save", "-o", raw, *renames], check=True)
        with tarfile.open(raw) as src:
            manifest = json.load(src.extractfile("manifest.json"))  # type: ignore[arg-type]
            old_repos = json.load(src.extractfile("repositories"))  # type: ignore[arg-type]
            repositories: dict[str, dict[str, str]] = {}
            for entry in manifest:
                new_tags = []
                for old in entry.get("RepoTags") or []:
                    if old not in renames:
                        raise SystemExit(
                            f"image-archive: docker saved {old!r}, which was not asked for"
                        )
                    new = renames[old]
                    new_tags.append(new)
                    old_repo, old_tag = split_ref(old)
                    repo, tag = split_ref(new)
                    repositories.setdefault(repo, {})[tag] = old_repos[old_repo][old_tag]
                entry["RepoTags"] = new_tags
            missing = set(renames.values()) - {t for e in manifest for t in e["RepoTags"]}
            if missing:
                raise SystemExit(f"image-archive: not in docker's archive: {sorted(missing)}")
            with tarfile.open(out + ".tmp", "w", format=tarfile.PAX_FORMAT) as dst:
                dst.addfile(*json_member("repositories", repositories))
                dst.addfile(*json_member("manifest.json", manifest))
                for member in src:
                    if member.name in ("repositories", "manifest.json"):
                        continue
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        os.replace(out + ".tmp", out)
    finally:
        for leftover in (raw, out + ".tmp"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
