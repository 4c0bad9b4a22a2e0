"""The durable record of prepared claims, so that a restarted driver still knows them.

One file per claim under `<plugin-dir>/checkpoint/<claim uid>.json`, written
atomically and carrying a checksum. Per-claim files let many claims be
prepared at once without rewriting a shared file. Records from an earlier
boot are dropped at load: a reboot empties the CDI root and the kubelet
prepares every claim again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dra_cdi_driver import fsutil
from dra_cdi_driver.logs import kv
from dra_cdi_driver.model import PreparedClaim

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id(path: Path = BOOT_ID_FILE) -> str:
    return path.read_text().strip()


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


class CheckpointError(Exception):
    """A record could not be written or removed (the plugin dir is not usable)."""


class Checkpoint:
    def __init__(self, directory: Path, boot_id: str) -> None:
        self.directory = directory
        self.boot_id = boot_id
        self._claims: dict[str, PreparedClaim] = {}
        self._lock = threading.Lock()

    def path_for(self, claim_uid: str) -> Path:
        return self.directory / f"{claim_uid}.json"

    def load(self) -> list[PreparedClaim]:
        """Read every record; drop (and delete) the ones from another boot or damaged.

        Returns the dropped claims so that the caller can clean up after them.
        """
        fsutil.ensure_private_dir(self.directory)
        dropped: list[PreparedClaim] = []
        for path in sorted(self.directory.glob("*.json")):
            record = self._read(path)
            if record is None:
                fsutil.remove(path)
                continue
            claim = PreparedClaim.from_json(record["claim"])
            if record["bootId"] != self.boot_id:
                log.info(
                    "dropping checkpoint record from an earlier boot",
                    extra=kv(claim=str(claim.claim), boot_id=record["bootId"]),
                )
                fsutil.remove(path)
                dropped.append(claim)
                continue
            self._claims[claim.claim.uid] = claim
        return dropped

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_bytes())
            body = {k: record[k] for k in ("version", "bootId", "claim")}
            if record["version"] != FORMAT_VERSION:
                raise ValueError(f"unknown format version {record['version']}")
            if record["checksum"] != _checksum(body):
                raise ValueError("checksum mismatch")
            PreparedClaim.from_json(record["claim"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error(
                "discarding unreadable checkpoint record; the kubelet will prepare the claim again",
                extra=kv(path=str(path), error=str(err)),
            )
            return None
        return record  # type: ignore[no-any-return]

    def get(self, claim_uid: str) -> PreparedClaim | None:
        with self._lock:
            return self._claims.get(claim_uid)

    def claims(self) -> Iterator[PreparedClaim]:
        with self._lock:
            yield from list(self._claims.values())

    def add(self, claim: PreparedClaim) -> None:
        body = {"version": FORMAT_VERSION, "bootId": self.boot_id, "claim": claim.to_json()}
        data = json.dumps({**body, "checksum": _checksum(body)}, sort_keys=True).encode()
        try:
            fsutil.atomic_write(self.path_for(claim.claim.uid), data, mode=0o600, fsync=True)
        except OSError as err:
            raise CheckpointError(
                f"cannot record the claim in the checkpoint {self.directory}: {err.strerror}"
            ) from err
        with self._lock:
            self._claims[claim.claim.uid] = claim

    def remove(self, claim_uid: str) -> None:
        try:
            fsutil.remove(self.path_for(claim_uid))
        except OSError as err:
            raise CheckpointError(
                f"cannot remove the claim from the checkpoint {self.directory}: {err.strerror}"
            ) from err
        with self._lock:
            self._claims.pop(claim_uid, None)
