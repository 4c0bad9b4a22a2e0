"""Is CDI on in containerd, and does it read our CDI root? From its TOML config.

Two shapes of the CRI settings, by the config's `version`:

- version 2 (containerd 1.7, and read by 2.x too): `[plugins."io.containerd.grpc.v1.cri"]`;
- version 3 (containerd 2.x): `[plugins."io.containerd.cri.v1.runtime"]`.

containerd 1.7 defaults `enable_cdi` to false, 2.x to true; both default `cdi_spec_dirs` to
["/etc/cdi", "/var/run/cdi"]. containerd 2.x migrates an older file as it loads it: each key
of its `io.containerd.grpc.v1.cri` table that the file does not also set in
`io.containerd.cri.v1.runtime` is copied there (plugins/cri/runtime/plugin.go,
`configMigration`). So `enable_cdi = false` in a version 2 file turns CDI off on 2.x as well,
and a version 2 file that does not set it means off on 1.7 but on on 2.x: the running
containerd decides, which the Node object tells (status.nodeInfo.containerRuntimeVersion).

`imports` are read where they stay in the config's own directory (containerd's drop-ins);
later files win, key by key, as containerd merges them. Paths elsewhere are not followed.
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dra_cdi_driver.doctor.hostfiles import HostFileError, read_text
from dra_cdi_driver.doctor.report import Result

CHECK = "containerd"
DEFAULT_CONFIG = Path("/etc/containerd/config.toml")
DEFAULT_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
CRI_V2 = "io.containerd.grpc.v1.cri"  # the CRI table of version 1 and 2 configs
CRI_V3 = "io.containerd.cri.v1.runtime"  # the CRI runtime table of version 3 configs
MAX_IMPORTS = 32
_CDI_KEYS = ("enable_cdi", "cdi_spec_dirs")


class ConfigError(ValueError):
    """The config cannot be read or parsed; the message names the file."""


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    version: int  # 1 when the file says nothing (containerd's reading)
    plugins: dict[str, Any]
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    files: tuple[ConfigFile, ...]  # the main file first, then its imports in merge order
    not_followed: tuple[str, ...] = ()  # imports outside the config's directory, or too many

    @property
    def main(self) -> ConfigFile:
        return self.files[0]


@dataclass(frozen=True)
class CdiSettings:
    enabled: bool
    enabled_set: bool  # False: containerd's default applies
    spec_dirs: tuple[str, ...]
    table: str  # the TOML table a fix goes in, e.g. [plugins."io.containerd.grpc.v1.cri"]


def parse(text: str, path: Path) -> ConfigFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"{path}: version {version!r} is not a number")
    plugins = data.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise ConfigError(f"{path}: plugins is not a table")
    if version <= 1:  # version 1 names plugins by their short id
        plugins = {CRI_V2 if k == "cri" else k: v for k, v in plugins.items()}
    imports = data.get("imports") or []
    return ConfigFile(
        path,
        max(version, 1),
        plugins,
        tuple(i for i in imports if isinstance(i, str)) if isinstance(imports, list) else (),
    )


def load(path: Path) -> Config:
    """The config at `path` and its imports. Raises ConfigError, HostFileError."""
    home = Path(os.path.realpath(path.parent))
    files: list[ConfigFile] = []
    not_followed: list[str] = []
    pending, seen = [path], set()
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        if len(files) > MAX_IMPORTS:
            not_followed.append(f"{current} (more than {MAX_IMPORTS} imports)")
            continue
        seen.add(current)
        config = parse(read_text(current), current)
        files.append(config)
        for wanted in _resolve(current, config.imports):
            if Path(os.path.realpath(wanted)).is_relative_to(home):
                pending.append(wanted)
            else:
                not_followed.append(str(wanted))
    return Config(tuple(files), tuple(not_followed))


def _resolve(parent: Path, imports: tuple[str, ...]) -> list[Path]:
    """The files `imports` names, as containerd resolves them: relative to the importing
    file's dir, globs expanded."""
    found: list[Path] = []
    for entry in imports:
        target = os.path.normpath(os.path.join(parent.parent, entry))
        if "*" in target:
            found += [Path(p) for p in sorted(glob.glob(target))]
        else:
            found.append(Path(target))
    return found


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """containerd's merge of plugin tables: key by key, the later file winning."""
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _table(plugins: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = plugins.get(name)
    return dict(table) if isinstance(table, Mapping) else {}


def cdi_settings(config: Config, major: int) -> CdiSettings:
    """What containerd `major` (1: 1.7, 2: 2.x) makes of the config's CDI keys."""
    merged: dict[str, Any] = {}
    for file in config.files:
        if major == 1:
            section = _table(file.plugins, CRI_V2)
        else:
            section = _table(file.plugins, CRI_V3)
            if file.version < 3:  # 2.x's migration of an older file
                old = _table(file.plugins, CRI_V2)
                for key in _CDI_KEYS:
                    if key in old and key not in section:
                        section[key] = old[key]
        _merge(merged, {k: section[k] for k in _CDI_KEYS if k in section})
    enabled = merged.get("enable_cdi")
    dirs = merged.get("cdi_spec_dirs")
    table = CRI_V3 if config.main.version >= 3 else CRI_V2
    return CdiSettings(
        enabled=bool(enabled) if enabled is not None else major >= 2,
        enabled_set=enabled is not None,
        spec_dirs=tuple(str(d) for d in dirs) if isinstance(dirs, list) else DEFAULT_SPEC_DIRS,
        table=f'[plugins."{table}"]',
    )


def same_dir(a: str, b: str) -> bool:
    """Whether two paths name one directory (/var/run is a link to /run on most hosts)."""
    return os.path.normpath(a) == os.path.normpath(b) or os.path.realpath(a) == os.path.realpath(b)


def check(path: Path, cdi_root: Path, runtime_version: tuple[int, int] | None) -> Result:
    """`runtime_version`: the running containerd's (major, minor), None when unknown."""
    if not os.path.lexists(path):
        return Result.warn(
            CHECK,
            f"no config at {path}, not checked (a containerd without one runs on its "
            "defaults: CDI on in 2.x, off in 1.7)",
            "pass the node's containerd config with --containerd-config (CONTAINERD_CONFIG); "
            "in the driver's pod the host's /etc/containerd is not mounted",
        )
    try:
        config = load(path)
    except (ConfigError, HostFileError) as err:
        return Result.warn(CHECK, f"cannot read its config: {err}; not checked")
    version = config.main.version
    where = f"{path}, version {version}"
    if runtime_version is not None:
        major, minor = runtime_version
        where += f", containerd {major}.{minor}"
        if runtime_version < (1, 7):
            return Result.fail(
                CHECK,
                f"containerd {major}.{minor} has no CDI support",
                "upgrade containerd to 1.7 or later (2.x has CDI on by default)",
            )
        if major == 1 and version >= 3:
            return Result.fail(
                CHECK,
                f"containerd {major}.{minor} cannot read {path} (version {version})",
                "write a version 2 config for containerd 1.7, or upgrade containerd to 2.x",
            )
        result = _verdict(cdi_settings(config, major), cdi_root, where)
    else:
        # Unknown version: a version 3 file is read by 2.x alone; 2.x's reading of an
        # older file fails whenever 1.7's does, but may pass where 1.7's fails.
        result = _verdict(cdi_settings(config, 2), cdi_root, where)
        older = cdi_settings(config, 1)
        if version < 3 and result.status == "ok" and not older.enabled:
            return Result.warn(
                CHECK,
                f"enable_cdi is not set: CDI is on with containerd 2.x but off with 1.7, "
                f"and which one runs is not known here ({where})",
                f"set enable_cdi = true under {older.table} and restart containerd",
            )
    if result.status == "ok" and config.not_followed:
        return Result.warn(
            CHECK,
            f"{result.message}; imports not read: {', '.join(config.not_followed)}",
            "check those files for enable_cdi and cdi_spec_dirs",
        )
    return result


def _verdict(settings: CdiSettings, cdi_root: Path, where: str) -> Result:
    if not settings.enabled:
        said = "off" if settings.enabled_set else "off (the default of containerd 1.7)"
        return Result.fail(
            CHECK,
            f"enable_cdi is {said} ({where})",
            f"set enable_cdi = true under {settings.table} and restart containerd",
        )
    if not any(same_dir(str(cdi_root), d) for d in settings.spec_dirs):
        wanted = ", ".join(f'"{d}"' for d in (*settings.spec_dirs, str(cdi_root)))
        return Result.fail(
            CHECK,
            f"CDI on, but the CDI root {cdi_root} is not in cdi_spec_dirs "
            f"[{', '.join(settings.spec_dirs)}] ({where})",
            f"set cdi_spec_dirs = [{wanted}] under {settings.table} and restart containerd, "
            "or point --cdi-root at one of those dirs",
        )
    return Result.ok(CHECK, f"CDI on, {cdi_root} in cdi_spec_dirs ({where})")
