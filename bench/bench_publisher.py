"""ResourceSlice publisher: time to publish 8, 128 and 1,024 devices, and API writes (and
reads) in steady state, in-process with every call counted.

    .venv/bin/python -m bench.bench_publisher [--devices 8,128,1024] [--steady-s 60]

Runs against a real kube-apiserver + etcd from the e2e cache (tests/e2e/local/setup.sh)
when the binaries are there, else against the in-memory fake of the unit tests (and says
so). Every call the publisher makes goes through a counting wrapper of its API interface.
Figures:

* start -> pool published: from `Publisher.start()` (devices already discovered) until the
  server holds every slice of the pool (discovery, Node lookup, list, creates);
* steady state: writes and reads over --steady-s seconds with nothing changing (the watch
  stays open; our own writes' events must not cause more writes);
* repair: from a kubelet-style wipe (DeleteCollection of the node's slices) until the pool
  is complete again.

bench/publisher_scale.py measures the same from outside a real driver process (process start
included), for ours and the reference driver; bench/run_all.py runs it.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from kubernetes import client

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubeapi.publisher import Publisher, delete_node_slices
from dra_cdi_driver.kubeapi.slice_api import KubeSliceApi, SliceApi, WatchEvent
from dra_cdi_driver.kubeapi.slices import MAX_DEVICES_PER_SLICE, Slice
from tests.integration.test_publisher_apiserver import (
    DRIVER,
    NODE,
    ApiServer,
    local_apiserver,
    missing_binaries,
)
from tests.unit.test_publisher import FakeSliceApi

WRITES = ("create_slice", "replace_slice", "delete_slice")


class Counting:
    """Wraps a SliceApi and counts its calls (watch: one per watch request)."""

    def __init__(self, inner: SliceApi) -> None:
        self.inner = inner
        self.driver_name = inner.driver_name
        self.node_name = inner.node_name
        self.calls: Counter[str] = Counter()

    def writes(self) -> int:
        return sum(self.calls[m] for m in WRITES)

    def api_version(self) -> str:
        return self.inner.api_version()  # cached after the first call: not counted

    def node_uid(self) -> str:
        self.calls["node_uid"] += 1
        return self.inner.node_uid()

    def list_slices(self) -> list[Slice]:
        self.calls["list_slices"] += 1
        return self.inner.list_slices()

    def watch_slices(self, resource_version: str | None, timeout_s: int) -> Iterator[WatchEvent]:
        self.calls["watch_slices"] += 1
        return self.inner.watch_slices(resource_version, timeout_s)

    def create_slice(self, body: Slice) -> None:
        self.calls["create_slice"] += 1
        self.inner.create_slice(body)

    def replace_slice(self, body: Slice) -> None:
        self.calls["replace_slice"] += 1
        self.inner.replace_slice(body)

    def delete_slice(self, name: str, resource_version: str | None) -> None:
        self.calls["delete_slice"] += 1
        self.inner.delete_slice(name, resource_version)

    def close(self) -> None:
        self.inner.close()


def wait_until(check: Callable[[], bool], timeout_s: float = 60.0) -> float:
    """Seconds until check() holds (polling every 5 ms)."""
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("condition not met")
        time.sleep(0.005)
    return time.perf_counter() - t0


def complete(slices: list[Slice], devices: int) -> bool:
    """All slices of one generation, as many as resourceSliceCount, with every device."""
    generations = {s["spec"]["pool"]["generation"] for s in slices}
    counts = {s["spec"]["pool"]["resourceSliceCount"] for s in slices}
    return (
        len(generations) == 1
        and counts == {len(slices)}
        and sum(len(s["spec"].get("devices") or []) for s in slices) == devices
    )


def run(
    api: Counting,
    observe: Callable[[], list[Slice]],
    wipe: Callable[[], None],
    devices: int,
    steady_s: float,
) -> None:
    t0 = time.perf_counter()
    inventory = Inventory(
        MockSource(NODE, devices, dev_dir=Path("/nonexistent"), lib_dir=Path("/nonexistent"))
    )
    inventory.refresh()
    discover_s = time.perf_counter() - t0
    slices = -(-devices // MAX_DEVICES_PER_SLICE)
    publisher = Publisher(api, inventory)
    t0 = time.perf_counter()
    publisher.start()
    try:
        published_s = wait_until(lambda: complete(observe(), devices))
        print(f"discover {devices} mock devices:            {discover_s * 1000:8.1f} ms")
        print(
            f"start -> {devices} devices in {slices} slices:    {published_s * 1000:8.1f} ms"
            f"   (target < 2000 ms; {api.writes()} writes)"
        )
        time.sleep(1.0)  # the watch reports our own creates; let that settle first
        before = Counter(api.calls)
        time.sleep(steady_s)
        during = Counter(api.calls)
        during.subtract(before)
        writes = sum(during[m] for m in WRITES)
        reads = {k: v for k, v in during.items() if v and k not in WRITES}
        print(f"steady state, {steady_s:.0f} s:                   {writes:8d} writes   (target 0)")
        print(f"  reads in that time: {reads or 'none'}")
        before_wipe = api.writes()
        wipe()
        repaired_s = wait_until(lambda: complete(observe(), devices))
        print(
            f"kubelet wipe -> pool complete again:       {repaired_s * 1000:8.1f} ms"
            f"   ({api.writes() - before_wipe} writes)"
        )
    finally:
        publisher.stop()


def bench_real(device_counts: list[int], steady_s: float) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="dra-bench-publisher-") as tmp,
        local_apiserver(Path(tmp)) as server,
    ):
        admin = server.client()
        version = client.VersionApi(admin).get_code()
        print(f"kube-apiserver {version.git_version} + etcd, loopback, TLS")
        client.CoreV1Api(admin).create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE)))
        for devices in device_counts:
            print(f"--- {devices} devices")
            api = Counting(KubeSliceApi(admin, DRIVER, NODE))
            observer = KubeSliceApi(admin, DRIVER, NODE)  # uncounted: the bench's own reads
            run(api, observer.list_slices, lambda: wipe_real(server), devices, steady_s)
            delete_node_slices(admin, DRIVER, NODE)  # the next count starts from nothing


def wipe_real(server: ApiServer) -> None:
    server.request(
        "DELETE", f"/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.nodeName={NODE}"
    )


def bench_fake(device_counts: list[int], steady_s: float) -> None:
    missing = missing_binaries()
    print("in-memory fake API" + (f" (not cached: {', '.join(missing)})" if missing else ""))
    for devices in device_counts:
        print(f"--- {devices} devices")
        fake = FakeSliceApi()

        def observe(fake: FakeSliceApi = fake) -> list[Slice]:
            return list(fake.ours().values())

        def wipe(fake: FakeSliceApi = fake) -> None:
            for name in list(fake.ours()):
                fake.remove(name)

        run(Counting(fake), observe, wipe, devices, steady_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", default="8,128,1024", help="device counts, comma-separated")
    parser.add_argument("--steady-s", type=float, default=60.0)
    parser.add_argument("--fake", action="store_true", help="use the in-memory fake API")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counts = [int(n) for n in args.devices.split(",")]
    if args.fake or missing_binaries():
        bench_fake(counts, args.steady_s)
    else:
        bench_real(counts, args.steady_s)


if __name__ == "__main__":
    main()
