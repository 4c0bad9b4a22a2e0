"""The Helm chart: it lints, renders, and renders what the driver needs and nothing more."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import yaml

from dra_cdi_driver.cli import build_parser

from .conftest import CHART, KUBE_VERSION, REPO_ROOT, Obj, one, run_helm, template

DRIVER = "gpu.cdi.example.com"
SA_USER = "system:serviceaccount:dra-cdi-driver:dra-cdi-driver"

EXPECTED_RULES = {
    ("resource.k8s.io", "resourceclaims"): {"get"},
    ("resource.k8s.io", "resourceclaims/status"): {"patch", "update"},  # claimDeviceStatus
    # 1.36 asks a status.devices writer for this, named after the driver; node-bound verbs only
    ("resource.k8s.io", "resourceclaims/driver"): {
        "associated-node:patch",
        "associated-node:update",
    },
    ("resource.k8s.io", "resourceslices"): {"get", "list", "watch", "create", "update", "delete"},
    ("", "nodes"): {"get"},
    ("resource.k8s.io", "deviceclasses"): {"get"},  # `dra-cdi-driver doctor` reads its class
}


def daemonset_container(objs: list[Obj]) -> Obj:
    containers = one(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def env_of(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def host_mounts(objs: list[Obj]) -> dict[str, tuple[str, str]]:
    """hostPath volumes: mount path in the container -> (host path, hostPath type)."""
    pod = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    out = {}
    for m in pod["containers"][0]["volumeMounts"]:
        v = volumes[m["name"]]
        if "hostPath" in v:
            out[m["mountPath"]] = (v["hostPath"]["path"], v["hostPath"].get("type", ""))
    return out


def test_helm_lint_passes(helm: str) -> None:
    r = run_helm(helm, "lint", "--strict", *KUBE_VERSION, str(CHART))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout


def test_renders_every_object_of_the_install(rendered: list[Obj]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "DeviceClass",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",  # claims' status: claimDeviceStatus
            "ValidatingAdmissionPolicyBinding",
        ]
    )
    for o in rendered:
        if o["kind"] in ("ServiceAccount", "DaemonSet"):
            assert o["metadata"]["namespace"] == "dra-cdi-driver"


def test_rbac_grants_exactly_what_the_driver_uses(rendered: list[Obj]) -> None:
    role = one(rendered, "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        if "resourceNames" in rule:  # only the driver's own name
            assert rule["resourceNames"] == ["gpu.cdi.example.com"], rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RULES
    # No subresource but claims' status (and 1.36's driver check), patch only there.
    assert sorted(r for _, r in granted if "/" in r) == [
        "resourceclaims/driver",
        "resourceclaims/status",
    ]
    assert [r for (_, r), verbs in granted.items() if "patch" in verbs] == ["resourceclaims/status"]

    binding = one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(rendered, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "dra-cdi-driver"}
    ]
    pod = one(rendered, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


def test_daemonset_mounts_the_kubelet_dirs_and_the_cdi_root_at_their_host_paths(
    rendered: list[Obj],
) -> None:
    # The same path inside as outside: the driver reports its DRA socket's path to the
    # kubelet, which dials it on the host.
    assert host_mounts(rendered) == {
        "/var/lib/kubelet/plugins_registry": ("/var/lib/kubelet/plugins_registry", "Directory"),
        f"/var/lib/kubelet/plugins/{DRIVER}": (
            f"/var/lib/kubelet/plugins/{DRIVER}",
            "DirectoryOrCreate",
        ),
        "/var/run/cdi": ("/var/run/cdi", "DirectoryOrCreate"),
        # The classic mock layout (hack/mock-layout.sh), read-only; empty where missing.
        "/dev/mock": ("/dev/mock", "DirectoryOrCreate"),
        "/mock/so": ("/mock/so", "DirectoryOrCreate"),
        "/mock/bin": ("/mock/bin", "DirectoryOrCreate"),
    }
    container = daemonset_container(rendered)
    read_only = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
    assert read_only == {"/dev/mock", "/mock/so", "/mock/bin"}


def test_daemonset_env_gives_the_driver_its_node_and_settings(rendered: list[Obj]) -> None:
    env = env_of(daemonset_container(rendered))
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert env["DRIVER_NAME"] == DRIVER
    assert env["DEVICE_SOURCE"] == "mock"
    assert env["MOCK_DEVICES"] == "8"
    assert (env["MOCK_DEV_DIR"], env["MOCK_LIB_DIR"], env["MOCK_BIN_DIR"]) == (
        "/dev/mock",
        "/mock/so",
        "/mock/bin",
    )
    assert env["KUBELET_DIR"] == "/var/lib/kubelet"
    assert env["CDI_ROOT"] == "/var/run/cdi"
    assert env["LOG_LEVEL"] == "info"
    assert env["LOG_FORMAT"] == "text"
    assert env["HEALTHZ_PORT"] == "51515"


# Variables the chart sets that are not flags of the driver (POD_UID is one now: --pod-uid).
NOT_FLAGS: set[str] = set()


@pytest.mark.parametrize("source", ["mock", "nvidia"])
def test_every_variable_the_chart_sets_is_a_driver_flag(helm: str, source: str) -> None:
    """A renamed flag must not leave the chart setting a variable nobody reads."""
    mirrors = {
        opt.lstrip("-").upper().replace("-", "_")
        for action in build_parser()._actions
        for opt in action.option_strings
        if opt.startswith("--")
    }
    objs = template(helm, {"deviceSource": source, "nvidia.cdiMode": "toolkit"})
    env = set(env_of(daemonset_container(objs))) - NOT_FLAGS
    assert env - mirrors == set(), "the chart sets variables that are no flag of the driver"


def test_values_schema_choices_are_the_driver_choices() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    choices = {a.dest: a.choices for a in build_parser()._actions if a.choices}
    assert sorted(schema["logLevel"]["enum"]) == sorted(choices["log_level"])
    assert sorted(schema["logFormat"]["enum"]) == sorted(choices["log_format"])
    assert sorted(schema["deviceSource"]["enum"]) == sorted(choices["device_source"])
    assert sorted(schema["nvidia"]["properties"]["cdiMode"]["enum"]) == sorted(
        choices["nvidia_cdi_mode"]
    )


def test_liveness_probe_asks_the_healthz_port(rendered: list[Obj]) -> None:
    c = daemonset_container(rendered)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"healthz": 51515}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert not one(rendered, "DaemonSet")["spec"]["template"]["spec"].get("hostNetwork")


def test_healthz_port_zero_turns_the_probes_off(helm: str) -> None:
    objs = template(helm, {"healthzPort": 0, "podAnnotations.team": "gpu"})
    c = daemonset_container(objs)
    assert "ports" not in c and "livenessProbe" not in c and "readinessProbe" not in c
    assert env_of(c)["HEALTHZ_PORT"] == "0"
    # No /metrics either: nothing tells Prometheus to scrape it.
    annotations = one(objs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"team": "gpu"}


def _pod_annotations(objs: list[Obj]) -> dict[str, str]:
    meta = one(objs, "DaemonSet")["spec"]["template"]["metadata"]
    return meta.get("annotations") or {}


def test_the_pod_asks_prometheus_to_scrape_metrics_on_the_healthz_port(helm: str) -> None:
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "51515",
        "prometheus.io/path": "/metrics",
    }
    assert _pod_annotations(template(helm)) == scrape
    # Next to the user's own annotations (kind-install.sh adds the image's ID).
    mine = template(helm, {"podAnnotations.dra-cdi-driver/image-id": "abc", "healthzPort": 9100})
    assert _pod_annotations(mine) == {
        **scrape,
        "prometheus.io/port": "9100",
        "dra-cdi-driver/image-id": "abc",
    }
    assert _pod_annotations(template(helm, {"metrics.scrapeAnnotations": False})) == {}


MONITORING = ("--api-versions", "monitoring.coreos.com/v1")


def test_a_service_monitor_only_when_asked_for_and_the_operator_is_there(helm: str) -> None:
    def kinds(values: dict[str, object], extra: tuple[str, ...] = ()) -> list[str]:
        return sorted(
            o["kind"]
            for o in template(helm, values, extra=extra)
            if o["kind"] in ("Service", "ServiceMonitor")
        )

    on: dict[str, object] = {"metrics.serviceMonitor.enabled": True}
    assert kinds({}, MONITORING) == []  # off by default
    assert kinds(on) == []  # no monitoring.coreos.com/v1 on this cluster: nothing to apply
    assert kinds({**on, "healthzPort": 0}, MONITORING) == []  # nothing to scrape
    objs = template(
        helm,
        {**on, "metrics.serviceMonitor.labels.release": "prometheus"},
        extra=MONITORING,
    )
    service, monitor = one(objs, "Service"), one(objs, "ServiceMonitor")
    assert service["spec"]["clusterIP"] == "None"  # each driver pod is scraped by itself
    pod = one(objs, "DaemonSet")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 51515, "targetPort": "healthz", "protocol": "TCP"}
    ]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["dra-cdi-driver"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]


def test_a_roll_starts_the_new_pod_before_the_old_one_stops(rendered: list[Obj]) -> None:
    """Seamless upgrades: a second pod per node (hostPath pods may surge), none taken away
    before its successor serves; the pods' sockets carry their UID, so both can serve."""
    ds = one(rendered, "DaemonSet")
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = env_of(daemonset_container(rendered))
    assert env["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert not ds["spec"]["template"]["spec"].get("hostNetwork")  # no port clash when 2 run


def test_the_update_strategy_can_stop_the_old_pod_first(helm: str) -> None:
    """For kubelets before 1.33, which take one registration per driver, and kubelet dirs
    too long for a socket name with a pod UID: one pod at a time, plain socket names."""
    objs = template(
        helm,
        {
            "updateStrategy.rollingUpdate.maxSurge": 0,
            "updateStrategy.rollingUpdate.maxUnavailable": 1,
        },
    )
    assert one(objs, "DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"] == {
        "maxSurge": 0,
        "maxUnavailable": 1,
    }
    assert "POD_UID" not in env_of(daemonset_container(objs))


def test_container_runs_as_root_with_nothing_else(rendered: list[Obj]) -> None:
    sc = daemonset_container(rendered)["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["runAsUser"] == 0
    pod = one(rendered, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root gets a writable /tmp, and nothing else of the host is writable
    # but the three dirs.
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"tmp"}


def test_kubelet_dir_moves_both_kubelet_mounts(helm: str) -> None:
    objs = template(helm, {"kubeletDir": "/var/lib/k0s/kubelet/"})
    mounts = {path: m for path, m in host_mounts(objs).items() if "mock" not in path}
    assert mounts == {
        "/var/lib/k0s/kubelet/plugins_registry": (
            "/var/lib/k0s/kubelet/plugins_registry",
            "Directory",
        ),
        f"/var/lib/k0s/kubelet/plugins/{DRIVER}": (
            f"/var/lib/k0s/kubelet/plugins/{DRIVER}",
            "DirectoryOrCreate",
        ),
        "/var/run/cdi": ("/var/run/cdi", "DirectoryOrCreate"),
    }
    assert env_of(daemonset_container(objs))["KUBELET_DIR"] == "/var/lib/k0s/kubelet"
    assert "/var/lib/kubelet" not in yaml.safe_dump_all(objs)


def test_values_reach_the_objects(helm: str) -> None:
    objs = template(
        helm,
        {
            "driverName": "npu.example.org",
            "mockDevices": 3,
            "cdiRoot": "/etc/cdi",
            "logLevel": "debug",
            "logFormat": "json",
            "image.repository": "registry.example.org/dra-cdi-driver",
            "image.tag": "1.2.3",
            "image.pullPolicy": "Always",
            "nodeSelector.gpu": "present",
            "tolerations[0].key": "gpu",
            "tolerations[0].operator": "Exists",
            "tolerations[0].effect": "NoSchedule",
            "resources.limits.memory": "1Gi",
        },
    )
    c = daemonset_container(objs)
    env = env_of(c)
    assert (env["DRIVER_NAME"], env["MOCK_DEVICES"], env["CDI_ROOT"]) == (
        "npu.example.org",
        "3",
        "/etc/cdi",
    )
    assert (env["LOG_LEVEL"], env["LOG_FORMAT"]) == ("debug", "json")
    assert c["image"] == "registry.example.org/dra-cdi-driver:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"]["limits"]["memory"] == "1Gi"
    pod = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "present"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "/var/lib/kubelet/plugins/npu.example.org" in host_mounts(objs)
    assert "/etc/cdi" in host_mounts(objs)
    dc = one(objs, "DeviceClass")
    assert dc["metadata"]["name"] == "npu.example.org"
    assert dc["spec"]["selectors"] == [
        {"cel": {"expression": 'device.driver == "npu.example.org"'}}
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"driverName": "GPU_Example"}, "/driverName"),
        ({"kubeletDir": "var/lib/kubelet"}, "/kubeletDir"),
        ({"cdiRoot": "cdi"}, "/cdiRoot"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"mockDevices": -1}, "/mockDevices"),
        ({"kubeletdir": "/x"}, "additional properties 'kubeletdir' not allowed"),
        ({"mock.libDir": "so"}, "/mock/libDir"),
        ({"mock.extendedResourceName": "gpu"}, "/mock/extendedResourceName"),
        ({"nvidia.extendedResourceName": "a b/c"}, "/nvidia/extendedResourceName"),
        ({"metrics.serviceMonitor.interval": "soon"}, "/metrics/serviceMonitor/interval"),
        ({"metrics.scrape": True}, "additional properties 'scrape' not allowed"),
        ({"updateStrategy.type": "Recreate"}, "/updateStrategy/type"),
    ],
)
def test_bad_values_are_refused_with_the_value_named(
    helm: str, values: dict[str, object], message: str
) -> None:
    args = ["template", "x", str(CHART), *KUBE_VERSION]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    r = run_helm(helm, *args)
    assert r.returncode != 0
    assert message in r.stderr


def test_deviceclass_is_the_one_of_deploy_deviceclass_yaml(rendered: list[Obj]) -> None:
    path = REPO_ROOT / "deploy" / "deviceclass.yaml"
    if not path.exists():
        pytest.skip("deploy/deviceclass.yaml is not there")
    plain = yaml.safe_load(path.read_text())
    chart = one(rendered, "DeviceClass")
    assert chart["apiVersion"] == plain["apiVersion"]
    assert chart["metadata"]["name"] == plain["metadata"]["name"]
    assert chart["spec"] == plain["spec"]


def test_extended_resource_name_is_mock_com_gpu_for_mock_and_off_for_nvidia(helm: str) -> None:
    def extended(values: dict[str, object]) -> object:
        return one(template(helm, values), "DeviceClass")["spec"].get("extendedResourceName")

    assert extended({}) == "mock.com/gpu"
    assert extended({"mock.extendedResourceName": "example.com/gpu"}) == "example.com/gpu"
    assert extended({"mock.extendedResourceName": ""}) is None
    # nvidia.com/gpu would collide with NVIDIA's device plugin: only when asked for.
    assert extended({"deviceSource": "nvidia"}) is None
    assert extended(
        {"deviceSource": "nvidia", "nvidia.extendedResourceName": "nvidia.com/gpu"}
    ) == ("nvidia.com/gpu")


def _policy(objs: list[Obj], suffix: str) -> Obj:
    (found,) = [
        o
        for o in objs
        if o["kind"] == "ValidatingAdmissionPolicy" and o["metadata"]["name"].endswith(suffix)
    ]
    return found


def test_admission_policy_is_scoped_to_the_driver_and_compares_node_names(
    rendered: list[Obj],
) -> None:
    policy = _policy(rendered, "-resourceslices")
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["resource.k8s.io"]
    assert rule["resources"] == ["resourceslices"]
    assert sorted(rule["operations"]) == ["CREATE", "DELETE", "UPDATE"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == f'request.userInfo.username == "{SA_USER}"'
    text = json.dumps(spec)
    assert "authentication.kubernetes.io/node-name" in text
    assert "oldObject.spec" in text and "object.spec" in text
    bindings = [o for o in rendered if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]} in [
        b["spec"] for b in bindings
    ]


def test_claim_status_policy_limits_writes_to_the_nodes_own_devices(rendered: list[Obj]) -> None:
    spec = _policy(rendered, "-resourceclaim-status")["spec"]
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["resourceclaims/status"] and rule["operations"] == ["UPDATE"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == f'request.userInfo.username == "{SA_USER}"'
    text = json.dumps(spec)
    assert "authentication.kubernetes.io/node-name" in text
    assert "d.pool == variables.userNodeName" in text and "oldObject.status" in text
    assert "allocation" in text and "reservedFor" in text


def test_status_writes_off_take_the_rights_and_the_policy_away(helm: str) -> None:
    objs = template(helm, {"claimDeviceStatus": False, "health.taintEffect": "NoExecute"})
    rules = one(objs, "ClusterRole")["rules"]
    assert not any("resourceclaims/status" in r["resources"] for r in rules)
    assert len([o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"]) == 1
    env = env_of(daemonset_container(objs))
    assert env["CLAIM_DEVICE_STATUS"] == "false" and env["UNHEALTHY_TAINT_EFFECT"] == "NoExecute"


def test_optional_parts_can_be_left_out(helm: str) -> None:
    objs = template(
        helm,
        {
            "rbac.create": False,
            "validatingAdmissionPolicy.enabled": False,
            "deviceClass.create": False,
            "serviceAccount.create": False,
            "serviceAccount.name": "existing",
        },
    )
    assert [o["kind"] for o in objs] == ["DaemonSet"]
    assert one(objs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_service_account_user_follows_release_namespace(helm: str) -> None:
    objs = template(helm, release="gpu", namespace="kube-system")
    (condition,) = _policy(objs, "-resourceslices")["spec"]["matchConditions"]
    sa = one(objs, "ServiceAccount")["metadata"]["name"]
    assert sa == "gpu-dra-cdi-driver"
    assert condition["expression"].endswith(f'"system:serviceaccount:kube-system:{sa}"')


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


def test_nvidia_source_runs_privileged_with_the_driver_root_read_only(helm: str) -> None:
    objs = template(helm, {"deviceSource": "nvidia", "nvidia.driverRoot": "/run/nvidia/driver"})
    c = daemonset_container(objs)
    # NVML opens the GPUs' device nodes: privileged, and so no allowPrivilegeEscalation
    # (the API refuses privileged with allowPrivilegeEscalation: false).
    assert c["securityContext"] == {
        "runAsUser": 0,
        "privileged": True,
        "readOnlyRootFilesystem": True,
    }
    env = env_of(c)
    assert env["DEVICE_SOURCE"] == "nvidia"
    assert env["NVIDIA_DRIVER_ROOT"] == "/run/nvidia/driver"
    assert env["NVIDIA_DRIVER_ROOT_MOUNT"] == "/driver-root"
    assert env["NVIDIA_CDI_MODE"] == "driver"
    assert env["NVIDIA_ALLOW_NO_GPUS"] == "false"
    assert env["NVIDIA_LDCACHE_HOOK"] == "true"
    assert "MOCK_DEVICES" not in env
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    # The ldcache hook is written into the plugin dir and run by the node's runc from there:
    # the pod must see that dir at its host path, writable.
    plugin_dir = "/var/lib/kubelet/plugins/gpu.cdi.example.com"
    assert host_mounts(objs)[plugin_dir][0] == plugin_dir
    assert not mounts[plugin_dir].get("readOnly", False)
    root = mounts["/driver-root"]
    assert root["readOnly"] is True and root["mountPropagation"] == "HostToContainer"
    assert host_mounts(objs)["/driver-root"] == ("/run/nvidia/driver", "Directory")
    assert "/etc/cdi" not in mounts


def test_nvidia_toolkit_mode_reads_the_toolkit_spec_dir(helm: str) -> None:
    objs = template(helm, {"deviceSource": "nvidia", "nvidia.cdiMode": "toolkit"})
    c = daemonset_container(objs)
    assert env_of(c)["NVIDIA_CDI_MODE"] == "toolkit"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/cdi"]["readOnly"] is True
    assert host_mounts(objs)["/etc/cdi"] == ("/etc/cdi", "DirectoryOrCreate")
