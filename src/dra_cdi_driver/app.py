"""Wiring: builds the driver's parts from the settings and runs them until a signal."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from dra_cdi_driver import __version__
from dra_cdi_driver.cdi import SpecStore
from dra_cdi_driver.checkpoint import Checkpoint, ClaimLocks, current_boot_id
from dra_cdi_driver.devices import Inventory, create_source
from dra_cdi_driver.devices.health import HEALTH_INTERVAL_S, health_loop
from dra_cdi_driver.devices.inventory import refresh_loop
from dra_cdi_driver.driver import Driver
from dra_cdi_driver.kubeapi import client as kube
from dra_cdi_driver.kubeapi.claim_status import ClaimStatusWriter
from dra_cdi_driver.kubeapi.claims import ApiClaimReader
from dra_cdi_driver.kubeapi.publisher import Publisher
from dra_cdi_driver.kubelet import sockets
from dra_cdi_driver.kubelet.healthz import HealthServer
from dra_cdi_driver.kubelet.plugin import KubeletPlugin
from dra_cdi_driver.logs import kv
from dra_cdi_driver.metrics import Metrics, count_api_errors
from dra_cdi_driver.settings import Settings

log = logging.getLogger(__name__)


def build_inventory(settings: Settings) -> Inventory:
    inventory = Inventory(create_source(settings))
    inventory.refresh()
    return inventory


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    """Serve the kubelet until SIGTERM/SIGINT (or `stop` is set)."""
    stop = stop or _stop_on_signals()
    log.info(
        "starting dra-cdi-driver",
        extra=kv(
            version=__version__,
            driver=settings.driver_name,
            node=settings.node_name,
            device_source=settings.device_source,
            pod_uid=settings.pod_uid,
        ),
    )
    metrics = Metrics()
    inventory = build_inventory(settings)
    metrics.watch_inventory(inventory)
    inventory.source.install_host_files()
    if settings.rediscover_interval > 0:
        threading.Thread(
            target=refresh_loop,
            args=(inventory, settings.rediscover_interval, stop),
            name="rediscover",
            daemon=True,
        ).start()
    inventory.source.watch_health(stop)
    threading.Thread(
        target=health_loop,
        args=(inventory, HEALTH_INTERVAL_S, stop),
        name="device-health",
        daemon=True,
    ).start()
    # One more connection than prepare workers: the ResourceSlice watch holds one.
    api = kube.api_client(settings.kubeconfig, pool_size=settings.prepare_workers + 2)
    if api is None:
        log.warning(
            "no Kubernetes API configured (no --kubeconfig and not in a pod): claims cannot "
            "be read and no ResourceSlices are published"
        )
    else:
        count_api_errors(api, metrics)
    checkpoint = Checkpoint(settings.checkpoint_dir, current_boot_id())
    metrics.watch_checkpoint(checkpoint)
    status = None
    if api is not None and settings.claim_device_status:
        status = ClaimStatusWriter(
            api,
            driver_name=settings.driver_name,
            node_name=settings.node_name,
            inventory=inventory,
            checkpoint=checkpoint,
        )
    driver = Driver(
        driver_name=settings.driver_name,
        node_name=settings.node_name,
        inventory=inventory,
        claims=ApiClaimReader(api),
        specs=SpecStore(settings.cdi_root, f"{settings.driver_name}/{inventory.source.cdi_class}"),
        checkpoint=checkpoint,
        workers=settings.prepare_workers,
        locks=ClaimLocks(settings.lock_dir, keep=checkpoint.has),
        metrics=metrics,
        status=status,
    )
    # Another instance still serving is the old (or new) pod of a rolling update.
    peers = sockets.sweep(settings.registrar_dir, settings.plugin_dir, settings.driver_name)
    driver.recover(peers=bool(peers))
    plugin = KubeletPlugin(
        driver_name=settings.driver_name,
        dra_socket=settings.dra_socket,
        registration_socket=settings.registration_socket,
        driver=driver,
        workers=settings.prepare_workers,
    )
    # Listening before the sockets exist: the probe reports 503 until they answer.
    health = None
    if settings.healthz_port:
        health = HealthServer(
            settings.healthz_port, settings.dra_socket, settings.registration_socket, metrics
        )
        health.start()
    plugin.start()
    if status is not None:
        status.start()
    publisher = None
    if api is not None:
        publisher = Publisher.from_client(
            api,
            settings.driver_name,
            settings.node_name,
            inventory,
            metrics=metrics,
            taint_effect=settings.unhealthy_taint_effect,
        )
        publisher.start()
    try:
        stop.wait()
    finally:
        log.info("shutting down")
        if health is not None:
            health.stop()
        if publisher is not None:
            publisher.stop()  # the slices stay: a restart must not make the scheduler forget us
        if status is not None:
            status.stop()
        plugin.stop()
        driver.close()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal", extra=kv(signal=signal.Signals(signum).name))
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
