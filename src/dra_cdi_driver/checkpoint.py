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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dra_cdi_driver import fsutil
from dra_cdi_driver.logs import kv
from dra_cdi_driver.model import ClaimError, PreparedClaim
from dra_cdi_driver.validation import check_claim_ref

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# A record holds one claim's answer and CDI spec: tens of KiB for the largest claim this
# driver prepares. Anything far bigger was not written by us; never read it whole.
MAX_RECORD_BYTES = 4 * 1024 * 1024
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
        self.dir = fsutil.RootDir(directory)
        self.boot_id = boot_id
        self._claims: dict[str, PreparedClaim] = {}
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self.dir.path

    def load(self) -> list[PreparedClaim]:
        """Read every record; drop (and delete) the ones from another boot or damaged.

        Returns the dropped claims so that the caller can clean up after them.
        """
        self.dir.ensure()
        self.dir.remove_temporaries()
        dropped: list[PreparedClaim] = []
        for name in self.dir.names(suffix=".json"):
            claim = self._read(name)
            if claim is None:
                self._discard(name)
            elif claim.boot_id != self.boot_id:
                log.info(
                    "dropping checkpoint record from an earlier boot",
                    extra=kv(claim=str(claim.prepared.claim), boot_id=claim.boot_id),
                )
                self._discard(name)
                dropped.append(claim.prepared)
            else:
                self._claims[claim.prepared.claim.uid] = claim.prepared
        return dropped

    def _read(self, name: str) -> _Record | None:
        """The record in file `name`, or None (logged) when it is not one we wrote."""
        try:
            record = json.loads(self.dir.read(name, MAX_RECORD_BYTES))
            body = {k: record[k] for k in ("version", "bootId", "claim")}
            if record["version"] != FORMAT_VERSION:
                raise ValueError(f"unknown format version {record['version']!r}")
            if record["checksum"] != _checksum(body):
                raise ValueError("checksum mismatch")
            if not isinstance(record["bootId"], str):
                raise ValueError("bootId is not a string")
            prepared = PreparedClaim.from_json(record["claim"])
            check_claim_ref(prepared.claim)
            if name != _file_name(prepared.claim.uid):
                raise ValueError(f"the record is for claim uid {prepared.claim.uid}")
        except ClaimError as err:
            problem: str = err.problem
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            problem = str(err)
        else:
            return _Record(record["bootId"], prepared)
        log.error(
            "discarding unreadable checkpoint record; the kubelet will prepare the claim again",
            extra=kv(path=str(self.directory / name), error=problem),
        )
        return None

    def _discard(self, name: str) -> None:
        try:
            self.dir.remove(name)
        except OSError as err:  # refused by the gate, or not removable: leave it, say so
            log.warning("cannot remove checkpoint file", extra=kv(error=str(err)))

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
            self.dir.write(_file_name(claim.claim.uid), data, mode=0o600, fsync=True)
        except OSError as err:
            raise CheckpointError(
                f"cannot record the claim in the checkpoint {self.directory}: {err.strerror}"
            ) from err
        with self._lock:
            self._claims[claim.claim.uid] = claim

    def remove(self, claim_uid: str) -> None:
        try:
            self.dir.remove(_file_name(claim_uid))
        except OSError as err:
            raise CheckpointError(
                f"cannot remove the claim from the checkpoint {self.directory}: {err.strerror}"
            ) from err
        with self._lock:
            self._claims.pop(claim_uid, None)


@dataclass(frozen=True)
class _Record:
    boot_id: str
    prepared: PreparedClaim


def _file_name(claim_uid: str) -> str:
    return f"{claim_uid}.json"
