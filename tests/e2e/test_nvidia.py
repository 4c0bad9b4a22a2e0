"""The nvidia device source on the real kubelet, containerd and runc, with a fake GPU node.

No GPU here, so NVML is the fake one and the driver root a built tree (harness/nvidia.py);
everything after discovery is real: the slices the API server validates, the scheduler's
CEL selection on NVIDIA attributes, the CDI spec containerd applies, runc running our
createContainer hook, and a dynamically linked `nvidia-smi` in an image that knows nothing
of NVIDIA finding libnvidia-ml.so.1 and libcuda.so.1 through its ld.so.cache.

A second driver (nvidia.cdi.example.com) runs next to the mock one for this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.fake_nvml import H100_MEMORY, H100_NAME, gpu_uuid, h100_node

from .harness import config, kube, nvidia
from .harness.driver import LocalDriver, driver_command
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

DRIVER = "nvidia.cdi.example.com"
GPUS = 2


@dataclass
class NvidiaDriver:
    cluster: E2ECluster
    node: nvidia.FakeNode
    driver: LocalDriver

    def pool(self, k: kube.Kube, devices: int) -> list[kube.Obj]:
        """The driver's slices once they list `devices` devices."""

        def probe() -> list[kube.Obj] | None:
            slices = [
                s
                for s in k.items("resourceslices")
                if s["spec"]["driver"] == DRIVER and s["spec"].get("nodeName")
            ]
            listed = [d for s in slices for d in s["spec"].get("devices", [])]
            return slices if len(listed) == devices else None

        return k.wait(f"{DRIVER} publishing {devices} devices", probe, 90)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def nv(cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NvidiaDriver]:
    from .harness.local import LocalCluster

    local = cluster.local
    if not isinstance(local, LocalCluster):
        pytest.skip("needs the local provider: a fake GPU node is built on the test host")
    why = nvidia.missing_tools()
    if why:
        if config.e2e_required():
            pytest.fail(f"E2E_REQUIRE is set but {why}", pytrace=False)
        pytest.skip(why)
    base = tmp_path_factory.mktemp("nvidia")
    node = nvidia.build_node(base, h100_node(mig_minor=None, count=GPUS))
    local.import_image(nvidia.glibc_image_tar(base / "glibc.tar"))
    command = driver_command()
    assert command is not None
    driver = LocalDriver(
        local,
        command,
        driver_name=DRIVER,
        device_args=[
            "--device-source",
            "nvidia",
            "--nvidia-driver-root",
            str(node.driver_root),
            "--rediscover-interval",
            "1",
        ],
        env=node.driver_env(config.REPO_ROOT),
    )
    cluster.log_files[driver.name] = driver.proc.log
    k = cluster.kube
    k.apply(kube.device_class(DRIVER, DRIVER))
    driver.start()
    driver.wait_sockets()
    try:
        yield NvidiaDriver(cluster, node, driver)
    finally:
        driver.stop()
        k.run("delete", "resourceslices", f"--field-selector=spec.driver={DRIVER}", check=False)
        k.run("delete", "deviceclass", DRIVER, "--ignore-not-found", check=False)


def test_every_gpu_is_published_with_the_attributes_users_select_on(
    nv: NvidiaDriver, k: kube.Kube
) -> None:
    slices = nv.pool(k, GPUS)
    devices = {d["name"]: d for s in slices for d in s["spec"]["devices"]}
    assert sorted(devices) == ["gpu-0", "gpu-1"]
    gpu1 = devices["gpu-1"]
    attrs = {name: next(iter(v.values())) for name, v in gpu1["attributes"].items()}
    assert attrs["uuid"] == gpu_uuid(1)
    assert attrs["productName"] == H100_NAME
    assert attrs["driverVersion"] == "550.54.15"  # typed as a version: CEL can compare it
    assert "version" in gpu1["attributes"]["cudaComputeCapability"]
    assert int(gpu1["capacity"]["memory"]["value"]) == H100_MEMORY


def _gpu_pod(name: str, claim: str) -> kube.Obj:
    # The real tool's path in the container; the loader gets no help from the environment.
    script = (
        "echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES LD_LIBRARY_PATH=$LD_LIBRARY_PATH; "
        "/usr/local/nvidia/bin/nvidia-smi -L; echo smi-exit=$?; "
        "/lib64/ld-linux-x86-64.so.2 --inhibit-cache /usr/local/nvidia/bin/nvidia-smi -L "
        ">/dev/null 2>&1; echo without-cache-exit=$?; "
        "ls /dev | grep nvidia | tr '\\n' ' '; echo; "
        "grep ' /usr/local/nvidia/lib64/libcuda.so.1 ' /proc/mounts; "
        "echo x 2>/dev/null >/usr/local/nvidia/lib64/libcuda.so.1; echo write-exit=$?; "
        "echo DONE; trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"
    )
    pod = kube.env_dump_pod(
        name,
        claims=[("gpu", {"resourceClaimName": claim})],
        containers=[("ctr", ["gpu"]), ("readonly", ["gpu"])],
    )
    for container in pod["spec"]["containers"]:
        container.update(image=nvidia.GLIBC_IMAGE, command=["sh", "-c", script])
    # runc makes the root read-only after the hooks ran: the cache is written all the same.
    pod["spec"]["containers"][1]["securityContext"] = {"readOnlyRootFilesystem": True}
    return pod


def _claim_by_uuid(name: str, uuid: str) -> kube.Obj:
    claim = kube.claim(name, 1, device_class=DRIVER)
    claim["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [
        {"cel": {"expression": f'device.attributes["{DRIVER}"].uuid == "{uuid}"'}}
    ]
    return claim


def test_a_pod_runs_nvidia_smi_on_exactly_its_gpu_without_nvidia_tooling(
    nv: NvidiaDriver, k: kube.Kube, ns: str
) -> None:
    nv.pool(k, GPUS)
    k.apply(_claim_by_uuid("second-gpu", gpu_uuid(1)), ns=ns)
    k.create(_gpu_pod("smi", "second-gpu"), ns=ns)
    k.wait_pod_running(ns, "smi")
    for container in ("ctr", "readonly"):
        _check_gpu_container(k, ns, container)

    uid = k.get("resourceclaim", "second-gpu", ns)["metadata"]["uid"]
    assert nv.cluster.cdi_root is not None
    spec = nv.cluster.cdi_root / f"{DRIVER}_gpu-{uid}.json"
    assert spec.exists()
    k.delete("pod", "smi", ns)
    k.wait("the claim's CDI spec removed", lambda: not spec.exists(), 60)


def _check_gpu_container(k: kube.Kube, ns: str, container: str) -> None:
    log = k.wait(
        f"the checks of container {container}",
        lambda: (out := k.logs(ns, "smi", container)) and "DONE" in out and out,
    )
    lines = log.splitlines()

    assert "NVIDIA_VISIBLE_DEVICES=void LD_LIBRARY_PATH=" in lines, log
    # The ld.so.cache the hook wrote is what finds both libraries...
    assert "libcuda.so.1: cuInit returned 0" in lines, log
    assert [x for x in lines if x.startswith("GPU ")] == [
        "GPU 0: Fake GPU (UUID: GPU-fake-1) /dev/nvidia1"  # exactly the claimed GPU
    ], log
    assert "smi-exit=0" in lines, log
    assert "without-cache-exit=127" in lines, f"found without the cache?\n{log}"
    # ...next to the control nodes, with the libraries read-only, nosuid, nodev.
    listed = next(x for x in lines if "nvidiactl" in x).split()
    assert sorted(listed) == ["nvidia-uvm", "nvidia-uvm-tools", "nvidia1", "nvidiactl"], log
    mount = next(x for x in lines if " /usr/local/nvidia/lib64/libcuda.so.1 " in x).split()
    assert {"ro", "nosuid", "nodev"} <= set(mount[3].split(",")), mount
    assert "write-exit=1" in lines, log


def test_a_gpu_that_falls_off_the_bus_leaves_the_slice(nv: NvidiaDriver, k: kube.Kube) -> None:
    nv.pool(k, GPUS)
    data = h100_node(mig_minor=None, count=GPUS)
    try:
        data["gpus"] = data["gpus"][1:]  # gpu-0 is gone from NVML
        nv.node.set_data(data)
        slices = nv.pool(k, GPUS - 1)
        assert [d["name"] for s in slices for d in s["spec"]["devices"]] == ["gpu-1"]
        log = Path(nv.driver.proc.log).read_text()
        changes = [x for x in log.splitlines() if "device inventory changed" in x]
        assert changes and "gpu-0" in changes[-1].partition("removed=")[2], log[-2000:]
    finally:
        nv.node.set_data(h100_node(mig_minor=None, count=GPUS))
    nv.pool(k, GPUS)  # whole again: a GPU that comes back is published again
