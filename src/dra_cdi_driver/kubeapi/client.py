"""Access to the Kubernetes API: the client, and which resource.k8s.io version to speak."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml
from kubernetes import client, config

RESOURCE_GROUP = "resource.k8s.io"
# Newest first: v1 is GA from 1.34; v1beta2 (1.33+) and v1beta1 (1.32+) before it.
RESOURCE_VERSIONS = ("v1", "v1beta2", "v1beta1")
REQUEST_TIMEOUT_S = 10.0


class NoApiError(Exception):
    """No Kubernetes API is configured or reachable."""


class KubeconfigError(ValueError):
    """The kubeconfig or in-cluster config cannot be used; the message says which."""


def api_client(kubeconfig: Path | None, pool_size: int = 16) -> client.ApiClient | None:
    """An API client from `kubeconfig`, else the in-cluster config, else None."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            return None
    except (config.ConfigException, yaml.YAMLError, OSError, ValueError, TypeError) as err:
        source = f"--kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster config"
        raise KubeconfigError(f"cannot use {source}: {err}") from None
    # One connection per concurrent prepare; fail fast instead of urllib3's retries:
    # the kubelet retries a failed claim by itself.
    configuration.connection_pool_maxsize = max(pool_size, 4)
    configuration.retries = 1
    return client.ApiClient(configuration)


class ResourceApiVersion:
    """The resource.k8s.io version the server serves, discovered once on first use."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._version: str | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if self._version is None:
                group = client.ApisApi(self._api).get_api_versions(
                    _request_timeout=REQUEST_TIMEOUT_S
                )
                served = {
                    v.version for g in group.groups if g.name == RESOURCE_GROUP for v in g.versions
                }
                chosen = next((v for v in RESOURCE_VERSIONS if v in served), None)
                if chosen is None:
                    raise NoApiError(
                        f"the API server serves none of {RESOURCE_GROUP} "
                        f"{', '.join(RESOURCE_VERSIONS)}: enable DynamicResourceAllocation "
                        "(Kubernetes 1.32+)"
                    )
                self._version = chosen
            return self._version
