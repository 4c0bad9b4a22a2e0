"""Prepare and unprepare: the one place that orders the steps for a claim.

Prepare:  checkpoint hit? -> answer from it (rewrite a missing CDI spec)
          else read claim -> check UID, allocation, pools, devices -> resolve config
               -> build CDI spec -> record in checkpoint -> write spec -> answer
Unprepare: remove spec -> remove checkpoint record (local state only)

The checkpoint is written before the spec, so a crash in between leaves a
record that the next Prepare or Unprepare completes, never an untracked spec.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from dra_cdi_driver import cdi
from dra_cdi_driver.checkpoint import Checkpoint, CheckpointError
from dra_cdi_driver.claims import Allocation, AllocationResult, ClaimReader, parse_allocation
from dra_cdi_driver.config import ConfigError, GpuConfig, resolve
from dra_cdi_driver.devices import Device, Inventory
from dra_cdi_driver.faults import crash_point
from dra_cdi_driver.fsutil import UnsafePathError
from dra_cdi_driver.limits import DEFAULT_CALL_BUDGET_S, MAX_CLAIMS_PER_CALL
from dra_cdi_driver.logs import kv
from dra_cdi_driver.model import ClaimError, ClaimRef, PreparedClaim, PreparedDevice
from dra_cdi_driver.validation import check_claim_ref

log = logging.getLogger(__name__)

PrepareOutcome = PreparedClaim | ClaimError
_Outcome = TypeVar("_Outcome")


class _KeyedLocks:
    """One lock per claim UID, so that the same claim is never prepared twice at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class Driver:
    def __init__(
        self,
        *,
        driver_name: str,
        node_name: str,
        inventory: Inventory,
        claims: ClaimReader,
        specs: cdi.SpecStore,
        checkpoint: Checkpoint,
        workers: int = 16,
    ) -> None:
        self.driver_name = driver_name
        self.node_name = node_name
        self.inventory = inventory
        self.claims = claims
        self.specs = specs
        self.checkpoint = checkpoint
        self._locks = _KeyedLocks()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="prepare")

    def recover(self) -> None:
        """Load the checkpoint and make the CDI root agree with it: the specs of claims that
        are not prepared (an earlier boot, a crash mid-unprepare) go, and a prepared claim
        whose spec is missing (a crash between record and spec) gets it back."""
        self.specs.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.specs.dir.remove_temporaries()
        for stale in self.checkpoint.load():
            self._remove_spec(stale.claim.uid)
        for uid in list(self.specs.claim_uids()):
            if self.checkpoint.get(uid) is None:
                log.info("removing CDI spec of a claim that is not prepared", extra=kv(uid=uid))
                self._remove_spec(uid)
        prepared = list(self.checkpoint.claims())
        for claim in prepared:
            try:
                self._restore_spec(claim)
            except ClaimError as err:  # the kubelet's next Prepare of it reports the same
                log.error(
                    "cannot rewrite a CDI spec", extra=kv(claim=str(claim.claim), error=err.problem)
                )
        log.info("checkpoint loaded", extra=kv(prepared_claims=len(prepared)))

    def _remove_spec(self, uid: str) -> None:
        try:
            self.specs.remove(uid)
        except OSError as err:  # refused by the gate, or not removable: say so, keep going
            log.error("cannot remove a CDI spec", extra=kv(uid=uid, error=str(err)))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    # --- prepare -------------------------------------------------------------------

    def prepare(
        self, claims: Sequence[ClaimRef], deadline: float | None = None
    ) -> dict[str, PrepareOutcome]:
        """Prepare each claim concurrently; one claim's failure never affects another.

        Answers by `deadline` (time.monotonic(); default: DEFAULT_CALL_BUDGET_S from now):
        a claim not prepared by then gets a timeout error, so that the kubelet still gets
        the answer for every other claim of the call.
        """
        return self._each(claims, deadline, self._prepare_safely, _prepare_timed_out)

    def _each(
        self,
        claims: Sequence[ClaimRef],
        deadline: float | None,
        work: Callable[[ClaimRef, float], _Outcome],
        timed_out: Callable[[ClaimRef], ClaimError],
    ) -> dict[str, _Outcome | ClaimError]:
        if len(claims) > MAX_CLAIMS_PER_CALL:
            problem = (
                f"malformed request: the call names {len(claims)} claims, more than the "
                f"{MAX_CLAIMS_PER_CALL} this driver takes in one call"
            )
            return {c.uid: ClaimError(c, problem) for c in claims}
        if deadline is None:
            deadline = time.monotonic() + DEFAULT_CALL_BUDGET_S
        if len(claims) == 1:  # no thread hop: every step of one claim is bounded by itself
            return {claims[0].uid: work(claims[0], deadline)}
        futures = [self._executor.submit(work, c, deadline) for c in claims]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        outcomes: dict[str, _Outcome | ClaimError] = {}
        for claim, future in zip(claims, futures, strict=True):
            if future.done():
                outcomes[claim.uid] = future.result()
            else:
                future.cancel()  # not started yet: it never will; running: it finishes alone
                outcomes[claim.uid] = timed_out(claim)
        late = sum(1 for o in outcomes.values() if isinstance(o, ClaimError) and o.timed_out)
        if late:
            log.warning("call deadline reached", extra=kv(claims=len(claims), timed_out=late))
        return outcomes

    def _prepare_safely(self, claim: ClaimRef, deadline: float) -> PrepareOutcome:
        started = time.perf_counter()
        try:
            if time.monotonic() >= deadline:
                raise _prepare_timed_out(claim)
            prepared = self._prepare(claim, deadline)
        except ClaimError as err:
            log.warning("prepare failed", extra=kv(claim=str(claim), error=err.problem))
            return err
        except Exception as err:  # a bug: report it on this claim, keep serving the rest
            log.exception("prepare failed unexpectedly", extra=kv(claim=str(claim)))
            return ClaimError(claim, f"internal error in the driver: {err!r}")
        log.info(
            "claim prepared",
            extra=kv(
                claim=str(claim),
                devices=[d.device for d in prepared.devices],
                ms=round((time.perf_counter() - started) * 1000, 2),
            ),
        )
        return prepared

    def _prepare(self, claim: ClaimRef, deadline: float) -> PreparedClaim:
        check_claim_ref(claim)
        with self._locks.hold(claim.uid):
            done = self.checkpoint.get(claim.uid)
            if done is not None:
                self._restore_spec(done)
                return done
            obj = self.claims.read(claim, timeout=deadline - time.monotonic())
            crash_point("prepare:after-api-read")
            allocation = parse_allocation(obj, claim, self.driver_name)
            prepared = self._build(claim, allocation)
            self._commit(prepared)
            return prepared

    def _restore_spec(self, prepared: PreparedClaim) -> None:
        """A prepared claim whose spec is gone (a cleaned CDI root) gets it back."""
        uid = prepared.claim.uid
        if prepared.cdi_spec is None or self.specs.exists(uid):
            return
        try:
            self.specs.write(uid, prepared.cdi_spec)
        except OSError as err:
            raise ClaimError(prepared.claim, self._cdi_write_problem(uid, err)) from None
        log.info("rewrote missing CDI spec", extra=kv(claim=str(prepared.claim)))

    def _build(self, claim: ClaimRef, allocation: Allocation) -> PreparedClaim:
        devices = {r.device: self._our_device(claim, r) for r in allocation.results}
        try:
            configs = resolve(allocation.config, [r.request for r in allocation.results])
        except ConfigError as err:
            raise ClaimError(claim, f"invalid opaque configuration: {err}") from None

        source = self.inventory.source
        cdi_names = {name: f"{name}-{claim.uid}" for name in devices}
        spec: cdi.Spec | None = None
        if devices:
            try:
                spec = self._spec(claim, allocation, devices, configs, cdi_names)
                spec.validate()
            except ConfigError as err:
                raise ClaimError(claim, f"invalid opaque configuration: {err}") from None
            except ValueError as err:
                raise ClaimError(claim, f"cannot build a valid CDI spec: {err}") from None

        prepared_devices: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for r in allocation.results:
            request = r.request.split("/", 1)[0]  # the kubelet wants "req", not "req/subreq"
            names = prepared_devices[(r.device, r.share_id)]
            if request not in names:
                names.append(request)
        return PreparedClaim(
            claim=claim,
            devices=tuple(
                PreparedDevice(
                    request_names=tuple(requests),
                    pool=self.node_name,
                    device=device,
                    cdi_device_ids=(
                        f"{self.specs.kind}={cdi_names[device]}",
                        *source.extra_cdi_ids(devices[device]),
                    ),
                    share_id=share_id,
                )
                for (device, share_id), requests in prepared_devices.items()
            ),
            cdi_spec=spec.to_json() if spec else None,
        )

    def _spec(
        self,
        claim: ClaimRef,
        allocation: Allocation,
        devices: dict[str, Device],
        configs: dict[str, GpuConfig],
        cdi_names: dict[str, str],
    ) -> cdi.Spec:
        source = self.inventory.source
        return cdi.Spec(
            kind=self.specs.kind,
            devices=tuple(
                cdi.CdiDevice(
                    name=cdi_names[r.device],
                    edits=devices[r.device].edits
                    + source.config_edits(devices[r.device], configs[r.request]),
                )
                for r in _first_result_per_device(allocation.results)
            ),
            edits=self._claim_edits(claim) + source.claim_edits(list(devices.values())),
        )

    def _our_device(self, claim: ClaimRef, result: AllocationResult) -> Device:
        if result.pool != self.node_name:
            raise ClaimError(
                claim,
                f"device {result.device} (request {result.request}) was allocated from pool "
                f"{result.pool}, but this is node {self.node_name}: the claim is allocated "
                "for another node",
            )
        device = self.inventory.get(result.device)
        if device is None:
            known = ", ".join(sorted(d.name for d in self.inventory.devices())) or "none"
            raise ClaimError(
                claim,
                f"device {result.device} (request {result.request}) does not exist on node "
                f"{self.node_name} (its devices: {known})",
            )
        return device

    def _claim_edits(self, claim: ClaimRef) -> cdi.ContainerEdits:
        return cdi.ContainerEdits(
            env=(
                cdi.env("DRA_DRIVER_NAME", self.driver_name),
                cdi.env("DRA_NODE_NAME", self.node_name),
                cdi.env("DRA_CLAIM", f"{claim.namespace}/{claim.name}"),
            )
        )

    def _commit(self, prepared: PreparedClaim) -> None:
        if prepared.cdi_spec is None:
            return  # nothing of ours in this claim: nothing to record or write
        uid = prepared.claim.uid
        try:
            self.checkpoint.add(prepared)
        except CheckpointError as err:
            raise ClaimError(prepared.claim, str(err)) from None
        crash_point("prepare:after-checkpoint-write")
        try:
            self.specs.write(uid, prepared.cdi_spec)
        except OSError as err:
            self.checkpoint.remove(uid)
            raise ClaimError(prepared.claim, self._cdi_write_problem(uid, err)) from None
        crash_point("prepare:after-spec-write")

    def _cdi_write_problem(self, uid: str, err: OSError) -> str:
        if isinstance(err, UnsafePathError):
            return f"cannot write the CDI spec: {err}"
        return (
            f"cannot write CDI spec {self.specs.path_for(uid)}: {err.strerror}; "
            f"the driver needs write access to its CDI root {self.specs.root}"
        )

    # --- unprepare -----------------------------------------------------------------

    def unprepare(
        self, claims: Sequence[ClaimRef], deadline: float | None = None
    ) -> dict[str, ClaimError | None]:
        """Undo Prepare from local state alone; a claim never prepared is a success."""
        return self._each(claims, deadline, self._unprepare_safely, _unprepare_timed_out)

    def _unprepare_safely(self, claim: ClaimRef, deadline: float) -> ClaimError | None:
        try:
            check_claim_ref(claim)
        except ClaimError as err:
            log.warning("unprepare failed", extra=kv(claim=str(claim), error=err.problem))
            return err
        try:
            with self._locks.hold(claim.uid):
                removed = self.specs.remove(claim.uid)
                crash_point("unprepare:after-spec-remove")
                known = self.checkpoint.get(claim.uid) is not None
                self.checkpoint.remove(claim.uid)
        except (OSError, CheckpointError) as err:
            log.warning("unprepare failed", extra=kv(claim=str(claim), error=str(err)))
            return ClaimError(claim, f"unprepare failed: {err}")
        if removed or known:
            log.info("claim unprepared", extra=kv(claim=str(claim)))
        return None


def _prepare_timed_out(claim: ClaimRef) -> ClaimError:
    return ClaimError(
        claim,
        "timed out reading the claim from the API server before the kubelet's deadline; "
        "the kubelet will retry",
        timed_out=True,
    )


def _unprepare_timed_out(claim: ClaimRef) -> ClaimError:
    return ClaimError(
        claim,
        "timed out: the driver did not get to this claim before the kubelet's deadline; "
        "the kubelet will retry",
        timed_out=True,
    )


def _first_result_per_device(results: Sequence[AllocationResult]) -> list[AllocationResult]:
    seen: dict[str, AllocationResult] = {}
    for r in results:
        seen.setdefault(r.device, r)
    return list(seen.values())
