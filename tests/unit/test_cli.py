from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from dra_cdi_driver.cli import build_parser, main, settings_from_args
from dra_cdi_driver.settings import MAX_SOCKET_PATH, SettingsError


def test_defaults_suit_a_kind_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "kind-worker")
    settings = settings_from_args(build_parser().parse_args([]))
    assert settings.node_name == "kind-worker"
    assert settings.dra_socket == Path("/var/lib/kubelet/plugins/gpu.cdi.example.com/dra.sock")
    assert settings.registration_socket == Path(
        "/var/lib/kubelet/plugins_registry/gpu.cdi.example.com-reg.sock"
    )
    assert settings.cdi_root == Path("/var/run/cdi")
    assert settings.mock_devices == 8
    settings.validate()


POD_UID = "5c1e3c3e-5d2b-4b8e-9a41-0f6f0b7f4b1e"


def test_a_pod_uid_names_both_sockets_as_the_go_helper_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_UID", POD_UID)  # the chart sets it from the downward API
    settings = settings_from_args(build_parser().parse_args(["--node-name", "n"]))
    assert settings.dra_socket == Path(
        f"/var/lib/kubelet/plugins/gpu.cdi.example.com/dra-{POD_UID}.sock"
    )
    assert settings.registration_socket == Path(
        f"/var/lib/kubelet/plugins_registry/gpu.cdi.example.com-{POD_UID}-reg.sock"
    )
    assert settings.lock_dir == Path("/var/lib/kubelet/plugins/gpu.cdi.example.com/locks")
    settings.validate()
    monkeypatch.setenv("POD_UID", "")
    assert settings_from_args(build_parser().parse_args([])).dra_socket.name == "dra.sock"


def test_the_pod_uid_is_cut_where_the_kubelet_dir_is_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """MicroK8s' kubelet dir leaves 17 bytes for the UID in the registration socket's name;
    both sockets carry the same start of it."""
    monkeypatch.setenv("POD_UID", POD_UID)
    kubelet = "/var/snap/microk8s/common/var/lib/kubelet"
    settings = settings_from_args(build_parser().parse_args(["--kubelet-dir", kubelet]))
    settings.validate()
    assert settings.socket_uid == POD_UID[:17] == "5c1e3c3e-5d2b-4b8"
    assert len(str(settings.registration_socket)) == MAX_SOCKET_PATH
    assert settings.registration_socket.name == f"gpu.cdi.example.com-{POD_UID[:17]}-reg.sock"
    assert settings.dra_socket.name == f"dra-{POD_UID[:17]}.sock"


def test_a_uid_cut_that_ends_in_a_dash_loses_the_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_UID", POD_UID)
    # A 39-byte dir leaves 19 bytes: the cut would be "5c1e3c3e-5d2b-4b8e-".
    kubelet = "/k" + "x" * 37
    settings = settings_from_args(build_parser().parse_args(["--kubelet-dir", kubelet]))
    assert settings.socket_uid == POD_UID[:18] == "5c1e3c3e-5d2b-4b8e"


def test_every_flag_has_an_env_mirror_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_DEVICES", "3")
    monkeypatch.setenv("KUBELET_DIR", "/k")
    monkeypatch.setenv("LOG_FORMAT", "json")
    args = build_parser().parse_args(["--mock-devices", "5"])
    settings = settings_from_args(args)
    assert settings.mock_devices == 5
    assert settings.plugin_dir == Path("/k/plugins/gpu.cdi.example.com")
    assert settings.log_format == "json"
    for action in build_parser()._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            assert "[env " in (action.help or ""), action.option_strings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--driver-name", "Bad_Name"], "--driver-name 'Bad_Name'"),
        (["--cdi-root", "relative"], "--cdi-root relative: must be an absolute path"),
        (["--mock-devices", "-1"], "--mock-devices -1"),
        (["--pod-uid", "../../x"], "--pod-uid '../../x': must be the pod's UID"),
        (["--pod-uid", POD_UID + "0"], "at most 36 lowercase letters"),
        (
            ["--registrar-dir", "/" + "r" * 80, "--pod-uid", POD_UID],
            r"--registrar-dir: socket path /r+/gpu\.cdi\.example\.com-5c1e3c3e-reg\.sock is "
            r"119 bytes with the pod UID \(--pod-uid\) cut to 8 characters, more than the 105",
        ),
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], message: str) -> None:
    settings = settings_from_args(build_parser().parse_args(["--node-name", "n", *argv]))
    with pytest.raises(SettingsError, match=message):
        settings.validate()


def test_start_up_errors_are_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))  # short: socket paths must fit 105 bytes
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    try:
        code = main(
            ["--node-name", "n", "--kubelet-dir", str(not_a_dir), "--cdi-root", str(tmp_path)]
        )
    finally:
        shutil.rmtree(tmp_path)
    assert code == 1
    err = capsys.readouterr().err
    assert "dra-cdi-driver run: error:" in err
    assert "File exists" in err or "Not a directory" in err
    assert "Traceback" not in err


def test_a_broken_kubeconfig_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [")
    assert main(["--node-name", "n", "--kubeconfig", str(kubeconfig), "cleanup"]) == 1
    err = capsys.readouterr().err
    assert f"cannot use --kubeconfig {kubeconfig}" in err
    assert "Traceback" not in err


def test_a_bad_environment_value_is_refused_like_a_bad_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SystemExit) as exited:
        main(["devices"])
    assert exited.value.code == 2
    assert "LOG_FORMAT='xml': choose from text, json" in capsys.readouterr().err
