from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from dra_cdi_driver.cli import build_parser, main, settings_from_args
from dra_cdi_driver.settings import SettingsError


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
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], message: str) -> None:
    settings = settings_from_args(build_parser().parse_args(["--node-name", "n", *argv]))
    with pytest.raises(SettingsError, match=message):
        settings.validate()


def test_start_up_errors_are_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))  # short: socket paths must fit 107 bytes
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
