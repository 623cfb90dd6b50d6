"""The command line: Rasa's flags parse with Rasa's meaning; an open API is refused before anything loads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import _resolve_aliases, build_parser, main
from bot.server.run import check_api_access, is_loopback
from bot.shared.exceptions import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET_ENV = ("KEFU_AUTH_TOKEN", "KEFU_JWT_SECRET", "KEFU_SSL_PASSWORD")


def _run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    clean.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=clean, capture_output=True,
                          text=True, timeout=120)


def test_run_enable_api_without_token_exits_naming_both_fixes(tmp_path: Path) -> None:
    result = _run_cli(["run", "--enable-api"], tmp_path)
    assert result.returncode == 1
    assert "--auth-token" in result.stderr and "--jwt-secret" in result.stderr
    assert "KEFU_AUTH_TOKEN" in result.stderr and "--dev-open-api" in result.stderr
    assert "Goin' Fast" not in result.stdout + result.stderr


def test_run_dev_open_api_on_all_interfaces_is_refused(tmp_path: Path) -> None:
    result = _run_cli(["run", "--enable-api", "--dev-open-api", "--host", "0.0.0.0"], tmp_path)
    assert result.returncode == 1
    assert "not a loopback address" in result.stderr and "--host 127.0.0.1" in result.stderr


def test_run_enable_api_takes_the_token_from_the_environment(tmp_path: Path) -> None:
    """With KEFU_AUTH_TOKEN set the check passes; this empty folder then has no model to serve."""
    result = _run_cli(["run", "--enable-api"], tmp_path, KEFU_AUTH_TOKEN="t" * 32)
    assert result.returncode == 1
    assert "--enable-api without" not in result.stderr
    assert "model" in result.stderr.lower()


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("10.0.0.1", False), ("example.com", False),
    ("localhost.example.com", False), ("", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_api_access_rules() -> None:
    check_api_access(enable_api=False, auth_token=None, jwt_secret=None, dev_open_api=False, host="0.0.0.0")
    check_api_access(enable_api=True, auth_token="x" * 32, jwt_secret=None, dev_open_api=False, host="0.0.0.0")
    check_api_access(enable_api=True, auth_token=None, jwt_secret="s" * 32, dev_open_api=False, host="0.0.0.0")
    check_api_access(enable_api=True, auth_token=None, jwt_secret=None, dev_open_api=True, host="::1")
    with pytest.raises(ConfigError, match="--auth-token or --jwt-secret"):
        check_api_access(enable_api=True, auth_token=None, jwt_secret=None, dev_open_api=False, host="127.0.0.1")
    with pytest.raises(ConfigError, match="not a loopback"):
        check_api_access(enable_api=True, auth_token=None, jwt_secret=None, dev_open_api=True, host="192.168.1.5")
    with pytest.raises(ConfigError):  # an empty token is no token
        check_api_access(enable_api=True, auth_token="", jwt_secret="", dev_open_api=False, host="127.0.0.1")


def test_run_parses_rasas_flags() -> None:
    args = build_parser().parse_args([
        "run", "-m", "models", "--enable-api", "-t", "tok", "--cors", "https://shop.example", "https://m.example",
        "--connector", "socketio", "--credentials", "creds.yml", "--endpoints", "ep.yml",
        "--response-timeout", "120", "--request-timeout", "30", "--log-file", "out.log", "-i", "0.0.0.0",
        "-p", "5006", "--ssl-certificate", "c.pem", "--ssl-keyfile", "k.pem", "--ssl-password", "pw",
        "--jwt-secret", "sec", "--jwt-method", "HS512", "--allow-token-in-url", "--debug",
    ])
    assert args.enable_api and args.auth_token == "tok" and args.allow_token_in_url
    assert args.cors == ["https://shop.example", "https://m.example"]
    assert (args.connector, args.credentials, args.endpoints) == ("socketio", "creds.yml", "ep.yml")
    assert (args.response_timeout, args.request_timeout, args.log_file) == (120, 30, "out.log")
    assert (args.host, args.port) == ("0.0.0.0", 5006)
    assert (args.ssl_certificate, args.ssl_keyfile, args.ssl_password) == ("c.pem", "k.pem", "pw")
    assert (args.jwt_secret, args.jwt_method, args.log_level) == ("sec", "HS512", "DEBUG")


def test_run_defaults_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["run"])
    assert not args.enable_api and not args.dev_open_api and not args.allow_token_in_url
    assert args.cors is None and args.host == "127.0.0.1" and args.auth_token is None


def test_train_num_threads_and_shell_debug_parse() -> None:
    parser = build_parser()
    assert parser.parse_args(["train", "--num-threads", "2"]).num_threads == 2
    shell = parser.parse_args(["shell", "--debug", "--conversation-id", "c1"])
    assert shell.log_level == "DEBUG" and shell.sender == "c1"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--num-threads", "0"])


@pytest.mark.parametrize("argv,expected", [
    (["run", "actions", "-p", "5056"], ["actions", "-p", "5056"]),
    (["--log-level", "DEBUG", "run", "actions"], ["--log-level", "DEBUG", "actions"]),
    (["run", "--port", "5005"], ["run", "--port", "5005"]),
    (["actions", "--actions", "run"], ["actions", "--actions", "run"]),
])
def test_run_actions_is_the_actions_command(argv: list[str], expected: list[str]) -> None:
    assert _resolve_aliases(argv) == expected


def test_run_actions_help_lists_the_action_server_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "actions", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m bot actions" in out and "--actions" in out


@pytest.mark.parametrize("command,flag,hint", [
    ("run", ["--remote-storage", "aws"], "--model PATH"),
    ("run", ["--use-syslog"], "--log-file"),
    ("run", ["--ssl-ca-file", "ca.pem"], "reverse proxy"),
    ("run", ["--jwt-private-key", "k"], "--jwt-secret"),
    ("train", ["--dry-run"], "data validate"),
])
def test_rasa_only_flags_name_the_kefu_equivalent(command: str, flag: list[str], hint: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, *flag])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} is a Rasa option that kefu does not implement" in err and hint in err


def test_connector_serves_only_that_channel_of_credentials(tmp_path: Path) -> None:
    from bot.cli import _input_channels

    credentials = tmp_path / "credentials.yml"
    credentials.write_text("rest:\nsocketio:\n  user_message_evt: user_uttered\n", encoding="utf-8")
    assert [c.name() for c in _input_channels(str(credentials), "socketio")] == ["socketio"]
    assert sorted(c.name() for c in _input_channels(str(credentials), None)) == ["rest", "socketio"]
    assert [c.name() for c in _input_channels(None, None)] == ["rest"]  # REST is always there by default
    with pytest.raises(ConfigError, match="nope"):
        _input_channels(str(credentials), "nope")
