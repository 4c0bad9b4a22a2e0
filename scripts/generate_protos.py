"""Regenerate the Python gRPC stubs from protos/dra/ into the package.

    python scripts/generate_protos.py            # rewrite the stubs
    python scripts/generate_protos.py --check    # exit 1 when they are stale

The stubs are generated code: never edit them by hand. grpcio-tools is pinned
in the `dev` extra so that everyone generates byte-identical files.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "protos" / "dra"
OUTPUT_DIR = REPO / "src" / "dra_cdi_driver" / "kubelet" / "pb"

# protoc writes `import foo_pb2 as foo__pb2`; inside a package that must be relative.
_ABSOLUTE_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every .proto file and return the files it wrote."""
    from grpc_tools import protoc  # dev dependency only

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted(p for p in out_dir.iterdir() if p.suffix in (".py", ".pyi"))
    for path in written:
        text = _ABSOLUTE_IMPORT.sub(r"from . import \1 as \2", path.read_text())
        path.write_text(text)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_text() for p in generate(Path(tmp))}
    current = {
        p.name: p.read_text()
        for p in OUTPUT_DIR.iterdir()
        if p.suffix in (".py", ".pyi") and p.name != "__init__.py"
    }
    if args.check:
        stale = sorted(n for n in fresh.keys() | current.keys() if fresh.get(n) != current.get(n))
        for name in stale:
            print(f"stale: {OUTPUT_DIR / name}", file=sys.stderr)
        if stale:
            print("run: python scripts/generate_protos.py", file=sys.stderr)
        return 1 if stale else 0
    for name in current.keys() - fresh.keys():
        (OUTPUT_DIR / name).unlink()
    for name, text in fresh.items():
        (OUTPUT_DIR / name).write_text(text)
    print(f"wrote {len(fresh)} files to {OUTPUT_DIR.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
