"""The kubelet's plugin registration service: tells the kubelet who we are and where."""

from __future__ import annotations

import logging
import threading
from typing import Any

from dra_cdi_driver.kubelet.pb import pluginregistration_v1_pb2 as pb
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

PLUGIN_TYPE = "DRAPlugin"
# v1 first: kubelet 1.34+ picks the first version it knows; 1.32-1.33 know only v1beta1.
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")


class RegistrationService:
    def __init__(self, driver_name: str, endpoint: str) -> None:
        self.driver_name = driver_name
        self.endpoint = endpoint
        self.registered = threading.Event()  # set while the kubelet has accepted us

    def GetInfo(self, request: pb.InfoRequest, context: Any) -> pb.PluginInfo:
        log.debug("kubelet asked for plugin info", extra=kv(endpoint=self.endpoint))
        return pb.PluginInfo(
            type=PLUGIN_TYPE,
            name=self.driver_name,
            endpoint=self.endpoint,
            supported_versions=list(SUPPORTED_VERSIONS),
        )

    def NotifyRegistrationStatus(
        self, request: pb.RegistrationStatus, context: Any
    ) -> pb.RegistrationStatusResponse:
        if request.plugin_registered:
            self.registered.set()
            log.info("registered with the kubelet", extra=kv(driver=self.driver_name))
        else:
            self.registered.clear()
            log.error(
                "the kubelet rejected the plugin registration",
                extra=kv(driver=self.driver_name, kubelet_error=request.error),
            )
        return pb.RegistrationStatusResponse()
