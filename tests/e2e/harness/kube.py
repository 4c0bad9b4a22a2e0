"""Talking to a cluster the way a person would: kubectl, YAML manifests, polling.

kubectl keeps the tests independent of which resource.k8s.io versions a Python client
knows; objects come back as plain dicts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from . import config

Obj = dict[str, Any]


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], rc: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({rc}): {stderr.strip()}")
        self.stderr = stderr
        self.rc = rc


class Kube:
    def __init__(self, kubeconfig: Path | str | None, kubectl: str | None = None) -> None:
        self.kubeconfig = str(kubeconfig) if kubeconfig else None
        self.kubectl = kubectl or config.kubectl_path()

    # ------------------------------------------------------------------ raw
    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> str:
        argv = [self.kubectl]
        if self.kubeconfig:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        argv += list(args)
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise KubectlError(list(args), r.returncode, r.stderr)
        return r.stdout

    def get(self, kind: str, name: str | None = None, ns: str | None = None, *extra: str) -> Obj:
        args = ["get", kind] + ([name] if name else []) + (["-n", ns] if ns else [])
        return json.loads(self.run(*args, *extra, "-o", "json"))  # type: ignore[no-any-return]

    def get_or_none(self, kind: str, name: str, ns: str | None = None) -> Obj | None:
        try:
            return self.get(kind, name, ns)
        except KubectlError as e:
            if "NotFound" in e.stderr or "not found" in e.stderr:
                return None
            raise

    def items(self, kind: str, ns: str | None = None, *extra: str) -> list[Obj]:
        return self.get(kind, None, ns, *extra).get("items", [])  # type: ignore[no-any-return]

    def apply(self, objs: Obj | Iterable[Obj] | str, ns: str | None = None) -> str:
        if isinstance(objs, str):
            text = objs
        else:
            docs = [objs] if isinstance(objs, dict) else list(objs)
            text = yaml.safe_dump_all(docs)
        return self.run("apply", "-f", "-", *(["-n", ns] if ns else []), input=text)

    def create(self, objs: Obj | Iterable[Obj], ns: str | None = None) -> str:
        docs = [objs] if isinstance(objs, dict) else list(objs)
        return self.run(
            "create", "-f", "-", *(["-n", ns] if ns else []), input=yaml.safe_dump_all(docs)
        )

    def delete(
        self,
        kind: str,
        name: str,
        ns: str | None = None,
        *,
        wait: bool = True,
        timeout: float = 120,
    ) -> None:
        self.run(
            "delete",
            kind,
            name,
            *(["-n", ns] if ns else []),
            "--ignore-not-found",
            f"--wait={'true' if wait else 'false'}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )

    def logs(self, ns: str, pod: str, container: str | None = None) -> str:
        return self.run("logs", "-n", ns, pod, *(["-c", container] if container else []))

    def container_env(
        self, ns: str, pod: str, container: str | None = None, timeout: float = 30
    ) -> dict[str, str]:
        """The environment an env_dump_pod container printed at start."""
        log = self.wait(
            f"environment of {ns}/{pod} {container or ''}".rstrip(),
            lambda: (out := self.logs(ns, pod, container)) and "ENV-DONE" in out and out,
            timeout,
        )
        return parse_env(log)

    def exec(self, ns: str, pod: str, cmd: list[str], container: str | None = None) -> str:
        return self.run(
            "exec", "-n", ns, pod, *(["-c", container] if container else []), "--", *cmd
        )

    def api_resources(self, group: str) -> list[str]:
        out = self.run("api-resources", f"--api-group={group}", "-o", "name")
        return out.split()

    def served_versions(self, group: str) -> list[str]:
        data = json.loads(self.run("get", "--raw", f"/apis/{group}"))
        return [v["version"] for v in data.get("versions", [])]

    # ------------------------------------------------------------------ waiting
    def wait(
        self, what: str, probe: Callable[[], Any], timeout: float = 120, interval: float = 1.0
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = probe()
                if last:
                    return last
            except KubectlError as e:
                last = e
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out after {timeout:.0f}s waiting for {what}; last: {_short(last)}"
                )
            time.sleep(interval)

    def wait_pod_running(self, ns: str, name: str, timeout: float = 120) -> Obj:
        def probe() -> Obj | None:
            pod = self.get("pod", name, ns)
            phase = pod.get("status", {}).get("phase")
            if phase in ("Failed", "Succeeded"):
                raise AssertionError(f"pod {ns}/{name} ended ({phase}): {describe_pod(pod)}")
            if phase == "Running" and all(
                c.get("ready") for c in pod["status"].get("containerStatuses", [])
            ):
                return pod
            return None

        try:
            return self.wait(f"pod {ns}/{name} Running", probe, timeout)  # type: ignore[no-any-return]
        except TimeoutError as e:
            pod = self.get_or_none("pod", name, ns)
            raise TimeoutError(
                f"{e}\n{describe_pod(pod)}\nevents:\n{self.events_text(ns, name)}"
            ) from None

    def wait_gone(self, kind: str, name: str, ns: str | None = None, timeout: float = 120) -> None:
        self.wait(f"{kind} {name} gone", lambda: self.get_or_none(kind, name, ns) is None, timeout)

    def events(self, ns: str, name: str | None = None) -> list[Obj]:
        extra = [f"--field-selector=involvedObject.name={name}"] if name else []
        return self.items("events", ns, *extra)

    def events_text(self, ns: str, name: str | None = None) -> str:
        return (
            "\n".join(
                f"  {e.get('type')} {e.get('reason')} {e['involvedObject'].get('kind')}/"
                f"{e['involvedObject'].get('name')}: {e.get('message', '').strip()}"
                for e in self.events(ns, name)
            )
            or "  <none>"
        )


def describe_pod(pod: Obj | None) -> str:
    if pod is None:
        return "pod not found"
    st = pod.get("status", {})
    lines = [f"phase={st.get('phase')} node={pod.get('spec', {}).get('nodeName')}"]
    for c in st.get("conditions", []):
        lines.append(
            f"  condition {c['type']}={c['status']} {c.get('reason', '')} "
            f"{c.get('message', '')}".rstrip()
        )
    for cs in st.get("initContainerStatuses", []) + st.get("containerStatuses", []):
        lines.append(f"  container {cs['name']}: {json.dumps(cs.get('state'))}")
    return "\n".join(lines)


def _short(x: Any, n: int = 600) -> str:
    s = str(x)
    return s if len(s) <= n else s[:n] + "..."


# ---------------------------------------------------------------------- manifests
def env_dump_pod(
    name: str,
    *,
    claims: list[tuple[str, Obj]] | None = None,
    containers: list[tuple[str, list[str]]] | None = None,
    node_name: str | None = None,
) -> Obj:
    """A hostNetwork busybox pod whose containers print their environment, then sleep.

    claims: [(podClaimName, source)] where source is {"resourceClaimTemplateName": ..} or
    {"resourceClaimName": ..}. containers: [(containerName, [podClaimNames it uses])];
    default: one container "ctr" using every claim.
    """
    claims = claims or []
    if containers is None:
        containers = [("ctr", [c for c, _ in claims])]
    script = (
        "env | grep -E '^(GPU_|E2E_|CDI_)' | sort; echo ENV-DONE; "
        "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"
    )
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "dra-e2e"}},
        "spec": {
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": cname,
                    "image": config.TEST_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    **({"resources": {"claims": [{"name": c} for c in uses]}} if uses else {}),
                }
                for cname, uses in containers
            ],
        },
    }
    if claims:
        pod["spec"]["resourceClaims"] = [{"name": n, **src} for n, src in claims]
    if node_name:
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node_name}
    return pod


def claim_spec(
    count: int = 1,
    *,
    device_class: str = config.DRIVER_NAME,
    config_params: Obj | None = None,
    request: str = "gpu",
) -> Obj:
    """spec of a ResourceClaim (resource.k8s.io/v1) asking for exactly `count` devices."""
    spec: Obj = {
        "devices": {
            "requests": [
                {
                    "name": request,
                    "exactly": {
                        "deviceClassName": device_class,
                        "allocationMode": "ExactCount",
                        "count": count,
                    },
                }
            ]
        }
    }
    if config_params is not None:
        spec["devices"]["config"] = [
            {
                "requests": [request],
                "opaque": {"driver": config.DRIVER_NAME, "parameters": config_params},
            }
        ]
    return spec


def claim_template(name: str, count: int = 1, **kw: Any) -> Obj:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {"spec": claim_spec(count, **kw)},
    }


def claim(name: str, count: int = 1, **kw: Any) -> Obj:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": claim_spec(count, **kw),
    }


def device_class(
    name: str = config.DRIVER_NAME,
    driver: str = config.DRIVER_NAME,
    extended_resource: str | None = None,
) -> Obj:
    """A DeviceClass selecting every device of `driver`; with `extended_resource`, pods that
    ask for it in resources.limits get its devices (what the chart installs for mock)."""
    spec: Obj = {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]}
    if extended_resource:
        spec["extendedResourceName"] = extended_resource
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": spec,
    }


def parse_env(log: str) -> dict[str, str]:
    """KEY=value lines printed by env_dump_pod, up to the ENV-DONE marker."""
    env: dict[str, str] = {}
    for line in log.splitlines():
        if line.strip() == "ENV-DONE":
            break
        k, sep, v = line.partition("=")
        if sep:
            env[k] = v
    return env


def gpu_devices(env: dict[str, str]) -> list[str]:
    """Device names a container was given: values of GPU_DEVICE_<i> (not _UUID etc.)."""
    return sorted(
        v
        for key, v in env.items()
        if key.startswith("GPU_DEVICE_") and key[len("GPU_DEVICE_") :].isdigit()
    )
