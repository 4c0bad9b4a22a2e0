"""Prepare and unprepare: the one place that orders the steps for a claim.

Prepare:  checkpoint hit? -> answer from it (rewrite a missing CDI spec)
          else read claim -> check UID, allocation, pools, devices -> resolve config
               -> build CDI spec -> record in checkpoint -> write spec -> answer
Unprepare: remove spec -> remove checkpoint record (local state only)

The checkpoint is written before the spec, so a crash in between leaves a
record that the next Prepare or Unprepare completes, never an untracked spec.

Each claim's steps run under its lock (checkpoint.ClaimLocks), which another
instance of the driver on the node (the other pod of a rolling update) takes
too; both read the claim's record from disk, never from memory.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from typing import Protocol, TypeVar

from dra_cdi_driver import cdi
from dra_cdi_driver.checkpoint import Checkpoint, CheckpointError, ClaimLocks, LockTimeout
from dra_cdi_driver.config import ConfigError, GpuConfig, resolve
from dra_cdi_driver.devices import Device, Inventory
from dra_cdi_driver.faults import crash_point
from dra_cdi_driver.fsutil import UnsafePathError
from dra_cdi_driver.kubeapi.claims import (
    Allocation,
    AllocationResult,
    ClaimReader,
    parse_allocation,
)
from dra_cdi_driver.limits import DEFAULT_CALL_BUDGET_S, MAX_CLAIMS_PER_CALL
from dra_cdi_driver.logs import kv
from dra_cdi_driver.metrics import Metrics
from dra_cdi_driver.model import ClaimError, ClaimRef, PreparedClaim, PreparedDevice
from dra_cdi_driver.validation import check_claim_ref

log = logging.getLogger(__name__)

PrepareOutcome = PreparedClaim | ClaimError
# How long before the call's deadline a claim stops waiting for its lock.
LOCK_MARGIN_S = 0.2
# How long before the call's deadline a claim no longer writes its record and spec: what it
# takes to write them (milliseconds) with room to spare, so a claim answered as timed out
# is never prepared behind the kubelet's back.
COMMIT_MARGIN_S = 0.2
_Outcome = TypeVar("_Outcome")


class StatusSink(Protocol):
    """Told of each prepared and unprepared claim (claim_status.ClaimStatusWriter): it must
    return at once, and nothing it does can fail a prepare."""

    def prepared(self, claim: PreparedClaim) -> None: ...

    def unprepared(self, claim: ClaimRef) -> None: ...


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
        locks: ClaimLocks | None = None,  # default: this process's threads take turns
        metrics: Metrics | None = None,
        status: StatusSink | None = None,
    ) -> None:
        self.driver_name = driver_name
        self.status = status
        self.node_name = node_name
        self.inventory = inventory
        self.claims = claims
        self.specs = specs
        self.checkpoint = checkpoint
        self.locks = locks or ClaimLocks()
        self.metrics = metrics or Metrics()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="prepare")

    def recover(self, *, peers: bool = False) -> None:
        """Make the CDI root agree with the checkpoint: the specs of claims that are not
        prepared (an earlier boot, a crash mid-unprepare) go, and a prepared claim whose
        spec is missing (a crash between record and spec) gets it back.

        Claim by claim, under each claim's lock: another instance may be preparing and
        unpreparing meanwhile. With `peers` (another instance serves on this node: the
        other pod of a rolling update) the temporary files of interrupted writes stay, as
        they may be its writes in progress; a later start without one removes them.
        """
        self.specs.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.checkpoint.open()
        self.locks.open()
        if not peers:
            self.specs.dir.remove_temporaries()
            self.checkpoint.remove_temporaries()
        uids = set(self.checkpoint.uids()) | set(self.specs.claim_uids())
        prepared = sum(self._recover_claim(uid) for uid in sorted(uids))
        log.info("checkpoint loaded", extra=kv(prepared_claims=prepared))

    def _recover_claim(self, uid: str) -> bool:
        """Put one claim's spec right; whether the claim is prepared."""
        try:
            with self.locks.hold(uid, time.monotonic() + DEFAULT_CALL_BUDGET_S):
                claim = self.checkpoint.get(uid)
                if claim is None:
                    if self._remove_spec(uid):
                        log.info(
                            "removed CDI spec of a claim that is not prepared", extra=kv(uid=uid)
                        )
                    return False
                self._restore_spec(claim)
                return True
        except LockTimeout:  # the other instance is at it: it leaves the claim in order
            log.warning("claim busy in another instance; not checked", extra=kv(uid=uid))
        except ClaimError as err:  # the kubelet's next Prepare of it reports the same
            log.error("cannot rewrite a CDI spec", extra=kv(uid=uid, error=err.problem))
            return True
        except OSError as err:
            log.error("cannot check a claim's files", extra=kv(uid=uid, error=str(err)))
        return False

    def _remove_spec(self, uid: str) -> bool:
        try:
            return self.specs.remove(uid)
        except OSError as err:  # refused by the gate, or not removable: say so, keep going
            log.error("cannot remove a CDI spec", extra=kv(uid=uid, error=str(err)))
            return False

    @contextmanager
    def _hold(self, claim: ClaimRef, deadline: float) -> Iterator[None]:
        """The claim's lock, or a ClaimError when it is not to be had by the deadline."""
        with ExitStack() as held:
            try:
                # Given up on a little early, so that the answer says what the claim waited for.
                held.enter_context(self.locks.hold(claim.uid, deadline - LOCK_MARGIN_S))
            except LockTimeout:
                raise _lock_timed_out(claim) from None
            except OSError as err:  # the lock dir is not writable, or a planted symlink
                raise ClaimError(
                    claim,
                    f"cannot take the claim's lock in {self.locks.dir}: {err}; the driver "
                    "needs write access to its plugin dir",
                ) from None
            yield

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
        return self._each("prepare", claims, deadline, self._prepare_safely, _prepare_timed_out)

    def _each(
        self,
        operation: str,
        claims: Sequence[ClaimRef],
        deadline: float | None,
        work: Callable[[ClaimRef, float], _Outcome],
        timed_out: Callable[[ClaimRef], ClaimError],
    ) -> dict[str, _Outcome | ClaimError]:
        started = time.perf_counter()
        outcomes = self._outcomes(claims, deadline, work, timed_out)
        for outcome, seconds in outcomes.values():
            self.metrics.claim_done(operation, _result(outcome), seconds)
        self.metrics.call_done(operation, time.perf_counter() - started)
        return {uid: outcome for uid, (outcome, _) in outcomes.items()}

    def _outcomes(
        self,
        claims: Sequence[ClaimRef],
        deadline: float | None,
        work: Callable[[ClaimRef, float], _Outcome],
        timed_out: Callable[[ClaimRef], ClaimError],
    ) -> dict[str, tuple[_Outcome | ClaimError, float]]:
        """Each claim's outcome and how long it took."""
        if len(claims) > MAX_CLAIMS_PER_CALL:
            problem = (
                f"malformed request: the call names {len(claims)} claims, more than the "
                f"{MAX_CLAIMS_PER_CALL} this driver takes in one call"
            )
            return {c.uid: (ClaimError(c, problem), 0.0) for c in claims}
        if deadline is None:
            deadline = time.monotonic() + DEFAULT_CALL_BUDGET_S
        if len(claims) == 1:  # no thread hop: every step of one claim is bounded by itself
            return {claims[0].uid: _timed(work, claims[0], deadline)}
        started = time.perf_counter()
        futures = [self._executor.submit(_timed, work, c, deadline) for c in claims]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        outcomes: dict[str, tuple[_Outcome | ClaimError, float]] = {}
        for claim, future in zip(claims, futures, strict=True):
            if future.done():
                outcomes[claim.uid] = future.result()
            else:
                future.cancel()  # not started yet: it never will; running: it finishes alone
                outcomes[claim.uid] = (timed_out(claim), time.perf_counter() - started)
        late = sum(1 for o, _ in outcomes.values() if isinstance(o, ClaimError) and o.timed_out)
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
        self._tell_status(lambda sink: sink.prepared(prepared))
        return prepared

    def _tell_status(self, call: Callable[[StatusSink], None]) -> None:
        if self.status is None:
            return
        try:
            call(self.status)
        except Exception:  # a status report is never worth a failed prepare
            log.exception("queueing a claim's device status failed")

    def _prepare(self, claim: ClaimRef, deadline: float) -> PreparedClaim:
        check_claim_ref(claim)
        with self._hold(claim, deadline):
            done = self.checkpoint.get(claim.uid)  # from disk: the other pod may have written it
            if done is not None:
                self._restore_spec(done)
                return done
            obj = self.claims.read(claim, timeout=deadline - time.monotonic())
            crash_point("prepare:after-api-read")
            allocation = parse_allocation(obj, claim, self.driver_name)
            prepared = self._build(claim, allocation)
            if time.monotonic() >= deadline - COMMIT_MARGIN_S:
                # The answer may be on its way with this claim timed out: write nothing the
                # kubelet would not know to unprepare (its retry prepares it afresh).
                raise _prepare_timed_out(claim)
            self._commit(prepared)
            return prepared

    def _restore_spec(self, prepared: PreparedClaim) -> None:
        """A prepared claim whose spec is gone (a cleaned CDI root) gets it back."""
        uid = prepared.claim.uid
        if prepared.cdi_spec is None:
            return
        try:
            if self.specs.exists(uid):
                return
            self.specs.write(uid, prepared.cdi_spec)
        except OSError as err:  # a spec name that leads out of the CDI root, too
            raise ClaimError(prepared.claim, self._cdi_write_problem(uid, err)) from None
        log.info("rewrote missing CDI spec", extra=kv(claim=str(prepared.claim)))

    def _build(self, claim: ClaimRef, allocation: Allocation) -> PreparedClaim:
        devices = {r.device: self._our_device(claim, r) for r in allocation.results}
        try:
            configs = resolve(allocation.config, [r.request for r in allocation.results])
        except ConfigError as err:
            raise ClaimError(claim, f"invalid opaque configuration: {err}") from None

        source = self.inventory.source
        # One CDI device per allocated device, or per share of a shared one: the names carry
        # the claim uid (and the share id), so that no two claims or shares ever collide.
        cdi_names = {
            _allocation(r): "-".join(filter(None, (r.device, r.share_id, claim.uid)))
            for r in allocation.results
        }
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
                        f"{self.specs.kind}={cdi_names[(device, share_id)]}",
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
        cdi_names: dict[tuple[str, str | None], str],
    ) -> cdi.Spec:
        source = self.inventory.source
        return cdi.Spec(
            kind=self.specs.kind,
            devices=tuple(
                cdi.CdiDevice(
                    name=cdi_names[_allocation(r)],
                    edits=devices[r.device].edits
                    + source.config_edits(devices[r.device], configs[r.request])
                    + source.allocation_edits(devices[r.device], r.consumed_capacity, r.share_id),
                )
                for r in _first_result_per_allocation(allocation.results)
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
        return self._each(
            "unprepare", claims, deadline, self._unprepare_safely, _unprepare_timed_out
        )

    def _unprepare_safely(self, claim: ClaimRef, deadline: float) -> ClaimError | None:
        try:
            check_claim_ref(claim)
        except ClaimError as err:
            log.warning("unprepare failed", extra=kv(claim=str(claim), error=err.problem))
            return err
        try:
            with self._hold(claim, deadline):
                removed = self.specs.remove(claim.uid)
                crash_point("unprepare:after-spec-remove")
                known = self.checkpoint.remove(claim.uid)  # whichever pod prepared it
        except ClaimError as err:
            log.warning("unprepare failed", extra=kv(claim=str(claim), error=err.problem))
            return err
        except (OSError, CheckpointError) as err:
            log.warning("unprepare failed", extra=kv(claim=str(claim), error=str(err)))
            return ClaimError(claim, f"unprepare failed: {err}")
        if removed or known:
            log.info("claim unprepared", extra=kv(claim=str(claim)))
            self._tell_status(lambda sink: sink.unprepared(claim))
        return None


def _prepare_timed_out(claim: ClaimRef) -> ClaimError:
    return ClaimError(
        claim,
        "timed out reading the claim from the API server before the kubelet's deadline; "
        "the kubelet will retry",
        timed_out=True,
    )


def _lock_timed_out(claim: ClaimRef) -> ClaimError:
    return ClaimError(
        claim,
        "timed out waiting for another prepare or unprepare of this claim to finish (during "
        "a rolling update, in the other pod of the driver) before the kubelet's deadline; "
        "the kubelet will retry",
        timed_out=True,
    )


def _timed(
    work: Callable[[ClaimRef, float], _Outcome], claim: ClaimRef, deadline: float
) -> tuple[_Outcome, float]:
    started = time.perf_counter()
    outcome = work(claim, deadline)
    return outcome, time.perf_counter() - started


def _result(outcome: object) -> str:
    """The metrics' name for what the kubelet got for a claim."""
    if isinstance(outcome, ClaimError):
        return "timeout" if outcome.timed_out else "error"
    return "success"


def _unprepare_timed_out(claim: ClaimRef) -> ClaimError:
    return ClaimError(
        claim,
        "timed out: the driver did not get to this claim before the kubelet's deadline; "
        "the kubelet will retry",
        timed_out=True,
    )


def _allocation(result: AllocationResult) -> tuple[str, str | None]:
    """What a CDI device stands for: a device, or one share of a shared device."""
    return (result.device, result.share_id)


def _first_result_per_allocation(
    results: Sequence[AllocationResult],
) -> list[AllocationResult]:
    seen: dict[tuple[str, str | None], AllocationResult] = {}
    for r in results:
        seen.setdefault(_allocation(r), r)
    return list(seen.values())
