"""CDI spec files of our kind that the driver did not write.

The driver owns the kind `<driver-name>/gpu`: its per-claim files are
`<vendor>_<class>-<claim uid>.json` in the CDI root. Another file defining that kind (a
leftover of a device-plugin set-up, say) is trouble: a runtime that finds one device defined
in two files drops both, and pods could name its devices without any claim.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dra_cdi_driver.doctor.hostfiles import HostFileError, read_text
from dra_cdi_driver.doctor.report import Result
from dra_cdi_driver.limits import MAX_SPEC_BYTES
from dra_cdi_driver.validation import is_uid

CHECK = "cdi specs"
STATIC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
MAX_FILES = 4096  # per directory: far beyond a node's claims; bounds the time spent
_SPEC_SUFFIXES = (".json", ".yaml")  # what the CDI library reads


def is_ours(name: str, kind: str) -> bool:
    """A per-claim spec file of the driver: `<vendor>_<class>-<claim uid>.json`."""
    prefix = kind.replace("/", "_") + "-"
    return name.startswith(prefix) and name.endswith(".json") and is_uid(name[len(prefix) : -5])


def spec_kind(path: Path) -> str | None:
    """The `kind` a spec file declares; None when it declares none. Raises HostFileError,
    ValueError."""
    text = read_text(path, follow_symlink=False, limit=MAX_SPEC_BYTES)
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {err}") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to read") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def _spec_files(directory: Path) -> list[Path]:
    try:
        names = sorted(
            e.name
            for e in os.scandir(directory)
            if e.name.endswith(_SPEC_SUFFIXES) and not e.is_dir(follow_symlinks=False)
        )
    except OSError:
        return []  # no such dir: nothing defined there
    return [directory / n for n in names[:MAX_FILES]]


def _unique_dirs(dirs: Iterable[Path]) -> list[Path]:
    seen: set[str] = set()
    out = []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen:
            seen.add(real)
            out.append(d)
    return out


def check(kind: str, cdi_root: Path, static_dirs: Iterable[Path] = STATIC_DIRS) -> list[Result]:
    dirs = _unique_dirs([*static_dirs, cdi_root])
    results: list[Result] = []
    ours = 0
    for directory in dirs:
        for path in _spec_files(directory):
            if is_ours(path.name, kind):
                ours += 1
                continue
            try:
                found = spec_kind(path)
            except (HostFileError, ValueError) as err:
                results.append(
                    Result.warn(
                        CHECK,
                        f"skipped {path}: {err}",
                        "a runtime skips a spec it cannot read too; fix or remove it",
                    )
                )
                continue
            if found == kind:
                results.append(
                    Result.fail(
                        CHECK,
                        f"{path} defines devices of kind {kind}, which the driver owns: a "
                        "runtime drops a device defined in two files, and pods could name "
                        "its devices without a claim",
                        f"remove {path} (a leftover of a device-plugin set-up?)",
                    )
                )
    if not any(r.status == "fail" for r in results):
        scanned = ", ".join(str(d) for d in dirs)
        results.insert(
            0,
            Result.ok(
                CHECK,
                f"no other spec defines kind {kind} in {scanned} "
                f"({ours} per-claim spec{'' if ours == 1 else 's'} of the driver)",
            ),
        )
    return results
