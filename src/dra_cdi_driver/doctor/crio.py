"""Does CRI-O read our CDI root? From its TOML config and drop-ins.

CRI-O has CDI on, always, from 1.23. It reads `[crio.runtime] cdi_spec_dirs` (default
["/etc/cdi", "/var/run/cdi"]) from /etc/crio/crio.conf, then from every file of
/etc/crio/crio.conf.d in lexical order, the last one that sets it winning (crio.conf.d(5)).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dra_cdi_driver.doctor.containerd import DEFAULT_SPEC_DIRS, same_dir
from dra_cdi_driver.doctor.hostfiles import HostFileError, read_text
from dra_cdi_driver.doctor.report import Result

CHECK = "cri-o"
CONFIG = Path("/etc/crio/crio.conf")
DROP_IN_DIR = Path("/etc/crio/crio.conf.d")
MAX_DROP_INS = 64
FIX_FILE = DROP_IN_DIR / "99-cdi.conf"


def config_files(config: Path = CONFIG, drop_in_dir: Path = DROP_IN_DIR) -> list[Path]:
    """The files CRI-O reads, in the order it applies them; [] when it has none here."""
    files = [config] if config.exists() else []
    try:
        names = sorted(e.name for e in os.scandir(drop_in_dir) if e.is_file())
    except OSError:
        names = []
    return files + [drop_in_dir / n for n in names[:MAX_DROP_INS]]


def spec_dirs(texts: Sequence[tuple[Path, str]]) -> tuple[tuple[str, ...], Path | None]:
    """The effective cdi_spec_dirs of the files (path, text), and the file that set them
    (None: the default). Raises ValueError naming a file that is not valid TOML."""
    dirs: tuple[str, ...] = DEFAULT_SPEC_DIRS
    source = None
    for path, text in texts:
        try:
            data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
        runtime = (data.get("crio") or {}).get("runtime") or {}
        value = runtime.get("cdi_spec_dirs") if isinstance(runtime, dict) else None
        if isinstance(value, list) and value:  # an empty list keeps the default
            dirs, source = tuple(str(d) for d in value), path
    return dirs, source


def check(cdi_root: Path, runtime_version: tuple[int, int] | None, files: Sequence[Path]) -> Result:
    if runtime_version is not None and runtime_version < (1, 23):
        return Result.fail(
            CHECK,
            f"CRI-O {runtime_version[0]}.{runtime_version[1]} has no CDI support",
            "upgrade CRI-O to 1.23 or later",
        )
    try:
        texts = [(path, read_text(path)) for path in files]
        dirs, source = spec_dirs(texts)
    except (HostFileError, ValueError) as err:
        return Result.warn(CHECK, f"cannot read its config: {err}; not checked")
    where = f"set in {source}" if source else "the default"
    read = any(same_dir(str(cdi_root), d) for d in dirs)
    wanted = ", ".join(f'"{d}"' for d in (*dirs, str(cdi_root)))
    fix = (
        f"write [crio.runtime] cdi_spec_dirs = [{wanted}] into {FIX_FILE} and restart crio, "
        "or point --cdi-root at one of those dirs"
    )
    if not files:  # CRI-O may run on its defaults, or its config is not visible here
        said = "is" if read else "is not"
        return Result.warn(
            CHECK,
            f"no config in {CONFIG.parent} here; with CRI-O's defaults {cdi_root} {said} read",
            "run doctor on the node, where its config is seen (the driver's pod does not)"
            + ("" if read else f"; {fix}"),
        )
    if not read:
        return Result.fail(
            CHECK,
            f"the CDI root {cdi_root} is not in cdi_spec_dirs [{', '.join(dirs)}] ({where})",
            fix,
        )
    return Result.ok(CHECK, f"CDI on, {cdi_root} in cdi_spec_dirs ({where})")
