"""One real driver process in a fence (fence.py), played by a kubelet over gRPC, with the
fake API server it reads claims from."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Sequence
from typing import Any

import grpc

from tests.fakeapi import FakeApi, serve, write_kubeconfig
from tests.fuzz.fence import Fence
from tests.fuzz.oracle import Ref, is_valid
from tests.integration.conftest import DRIVER, NODE, DraClient, DriverProcess

KIND = f"{DRIVER}/gpu"
DEVICES = tuple(f"gpu-{i}" for i in range(8))  # the driver's 8 mock GPUs
VERSIONS = ("v1", "v1beta1")


class FuzzDriver:
    def __init__(
        self, fence: Fence, api: FakeApi, proc: DriverProcess, stack: contextlib.ExitStack
    ) -> None:
        self.fence = fence
        self.api = api
        self.proc = proc
        self._stack = stack
        self.clients: dict[str, DraClient] = {}
        self.touched: set[str] = set()  # uids maybe prepared since the last reset

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"FuzzDriver({self.fence.path})"

    @classmethod
    def create(cls) -> FuzzDriver:
        stack = contextlib.ExitStack()
        try:
            fence = Fence.create()
            stack.callback(fence.remove)
            api = FakeApi()
            url = stack.enter_context(serve(api))
            proc = DriverProcess(
                root=fence.root,
                kubeconfig=write_kubeconfig(fence.path / "kubeconfig", url),
                extra_args=["--log-level", "info"],
            )
            driver = cls(fence, api, proc, stack)
            stack.callback(driver._kill)
            driver.start()
            fence.take_baseline()
        except BaseException:
            stack.close()
            raise
        return driver

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self._stack.close()

    def _kill(self) -> None:
        if self.proc.proc is not None:
            self.proc.stop(signal.SIGKILL)

    def start(self) -> None:
        self.proc.start()  # returns once the registration socket answers
        for client in self.clients.values():
            client.close()
        self.clients = {v: self.proc.dra(v) for v in VERSIONS}

    def stop(self, sig: int) -> None:
        self.proc.stop(sig)

    # --- calls ---------------------------------------------------------------------------

    def call(self, version: str, op: str, refs: Sequence[Ref]) -> Any:
        """One NodePrepareResources/NodeUnprepareResources call, as the kubelet makes it.

        Checks the first invariants: a response (never a gRPC-level error), an entry for
        every claim uid of the request, and a driver still alive after it."""
        if op == "prepare":  # only a valid reference may prepare; the checks on disk see
            self.touched.update(r[2] for r in refs if is_valid(r))  # any other that did
        client = self.clients[version]
        try:
            response = client.prepare(*refs) if op == "prepare" else client.unprepare(*refs)
        except grpc.RpcError as err:
            raise AssertionError(
                f"{op} ({version}, {len(refs)} claims) got a gRPC-level error: {err}\n"
                f"{self.log_tail()}"
            ) from None
        self.assert_alive()
        assert set(response.claims) == {uid for _, _, uid in refs}, "a claim got no answer"
        if op == "unprepare":
            self.touched -= {uid for uid, answer in response.claims.items() if not answer.error}
        return response

    def assert_alive(self) -> None:
        alive = self.proc.proc is not None and self.proc.proc.poll() is None
        assert alive, f"the driver died\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.proc.log().splitlines()[-lines:])

    # --- between examples ----------------------------------------------------------------

    def reset(self) -> None:
        """Back to no prepared claim, whatever the last example left (a failed one too)."""
        if self.proc.proc is None or self.proc.proc.poll() is not None:
            self.proc.proc = None
            self.start()
        self.api.claims.clear()
        self.api.raw_claims.clear()
        self.api.requests.clear()
        self._unprepare_all()
        if self.fence.wipe_roots():
            self._unprepare_all()  # what planted files kept from going the first time
        self.fence.assert_state(())

    def _unprepare_all(self) -> None:
        uids = sorted(self.touched | self.fence.spec_uids() | self.fence.record_uids())
        for start in range(0, len(uids), 500):
            batch = [("default", "reset", uid) for uid in uids[start : start + 500]]
            self.call("v1", "unprepare", batch)


__all__ = ["DEVICES", "DRIVER", "KIND", "NODE", "VERSIONS", "FuzzDriver", "Ref"]
