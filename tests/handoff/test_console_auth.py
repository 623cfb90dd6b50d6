"""Issue #15 point 4: no default console passwords, throttled logins, no tokens in URLs.

Every test here failed on the code before it: the repository's config.yml carried
``password: kefu-demo`` for a supervisor and that password logged in; wrong passwords
were never throttled; the websocket took ``?token=``. Credentials are generated here.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.handoff.helpers import hash_for, password_for

REPO = Path(__file__).resolve().parents[2]
OLD_DEMO_PASSWORD = "kefu-demo"  # what config.yml shipped before issue #15


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KEFU_AGENT_") or name in ("KEFU_STATE_DIR", "KEFU_HANDOFF_SECRET"):
            monkeypatch.delenv(name)


def demo_project(tmp_path: Path, agents_yaml: str | None = None) -> Path:
    """The repository's config.yml (its handoff section included) in a scratch project folder."""
    project = tmp_path / "project"
    project.mkdir()
    config = (REPO / "config.yml").read_text(encoding="utf-8")
    if agents_yaml is not None:
        config = config[:config.index("  agents:")] + agents_yaml
    (project / "config.yml").write_text(config, encoding="utf-8")
    (project / "endpoints.yml").write_text(
        f"handoff:\n  store_url: sqlite+aiosqlite:///{tmp_path / 'handoff.db'}\n", encoding="utf-8")
    return project


def console_app(project: Path) -> Any:
    """The server's app for ``project`` as ``python -m bot run`` builds it (no model needed for the console)."""
    from bot.server.app import create_app

    return create_app(None, enable_api=False, project_root=project)


def printed_passwords(out: str) -> dict[str, str]:
    block = out.split("shown ONCE", 1)[1] if "shown ONCE" in out else ""
    return dict(re.findall(r"^  (\S+)\s+(\S+)$", block, flags=re.MULTILINE))


# ------------------------------------------------------------------ no default passwords
def test_credentials_repository_config_has_no_plaintext_or_well_known_password(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.handoff import HandoffConfig
    from bot.shared.yaml_io import read_yaml_file, to_plain

    handoff = to_plain(read_yaml_file(REPO / "config.yml"))["handoff"]
    assert handoff["agents"], "the demo has console agents"
    for agent in handoff["agents"]:
        assert "password" not in agent, f"plaintext password for {agent['id']} in config.yml"
    assert "secret" not in handoff
    monkeypatch.setenv("KEFU_STATE_DIR", str(tmp_path / "state"))
    HandoffConfig.from_project(demo_project(tmp_path))  # refuses well-known hashes and checked-in secrets


def test_credentials_plaintext_password_in_config_refuses_start_naming_file_line_agent_and_fix(tmp_path: Path) -> None:
    from bot.shared.exceptions import ConfigError

    project = demo_project(tmp_path, "  agents:\n    - {id: alice, name: Alice}\n"
                                     f"    - {{id: sam, name: Sam, password: {OLD_DEMO_PASSWORD}, role: supervisor}}\n")
    with pytest.raises(ConfigError) as refused:
        console_app(project)
    message = str(refused.value)
    line = (project / "config.yml").read_text(encoding="utf-8").splitlines().index(
        f"    - {{id: sam, name: Sam, password: {OLD_DEMO_PASSWORD}, role: supervisor}}") + 1
    assert f"config.yml:{line}:" in message and "'sam'" in message and "plaintext" in message
    assert "python -m bot agents set-password sam" in message
    assert OLD_DEMO_PASSWORD not in message


@pytest.mark.parametrize("password", [OLD_DEMO_PASSWORD, "admin", "123456", "sam"])
def test_credentials_hash_of_a_well_known_password_refuses_start(tmp_path: Path, password: str) -> None:
    from argon2 import PasswordHasher

    from bot.shared.exceptions import ConfigError

    weak = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(password)
    project = demo_project(tmp_path, f"  agents:\n    - {{id: sam, name: Sam, password_hash: '{weak}'}}\n")
    with pytest.raises(ConfigError, match=r"config\.yml:\d+: Agent 'sam'.*well-known.*set-password sam"):
        console_app(project)


def test_credentials_checked_in_signing_secret_refuses_start(tmp_path: Path) -> None:
    from bot.shared.exceptions import ConfigError

    project = demo_project(tmp_path)
    config = project / "config.yml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "handoff:\n", "handoff:\n  secret: 0123456789abcdef0123456789abcdef\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'handoff\.secret' is written into the file.*KEFU_HANDOFF_SECRET"):
        console_app(project)


def test_credentials_first_run_generates_hashes_0600_shows_passwords_once_and_they_log_in(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from bot.handoff.passwords import verify_password

    project = demo_project(tmp_path)
    with caplog.at_level(logging.DEBUG):
        app = console_app(project)
    shown = printed_passwords(capsys.readouterr().out)
    assert set(shown) == {"alice", "sam"}
    state = project / ".kefu"
    for name in ("agents.json", "handoff-secret"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    stored = (state / "agents.json").read_text(encoding="utf-8")
    hashes = {k: v["password_hash"] for k, v in json.loads(stored)["agents"].items()}
    for agent_id, password in shown.items():
        assert password not in stored and password not in caplog.text
        assert hashes[agent_id].startswith("$argon2id$") and verify_password(password, hashes[agent_id])
    assert "generated console credentials for 2 agent(s)" in caplog.text.lower()

    console_app(project)  # a second start (another worker, a restart) shows nothing again
    assert printed_passwords(capsys.readouterr().out) == {}

    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "sam", "password": OLD_DEMO_PASSWORD})
    assert res.status == 401  # the old default no longer works
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "sam", "password": shown["sam"]})
    assert res.status == 200 and res.json["agent"]["role"] == "supervisor"


def test_credentials_environment_password_and_set_password_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    project = demo_project(tmp_path)
    env_password = password_for("env-alice")
    monkeypatch.setenv("KEFU_AGENT_ALICE_PASSWORD", env_password)
    cli_password = password_for("cli-sam")
    monkeypatch.setattr("sys.stdin", io.StringIO(cli_password + "\n"))
    assert main(["agents", "set-password", "sam", "--root", str(project), "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("admin\n"))
    assert main(["agents", "set-password", "sam", "--root", str(project), "--password-stdin"]) == 1  # refused
    assert "well-known" in capsys.readouterr().err
    app = console_app(project)
    assert printed_passwords(capsys.readouterr().out) == {}  # both have credentials: nothing generated
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "alice", "password": env_password})
    assert res.status == 200
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "sam", "password": cli_password})
    assert res.status == 200
    monkeypatch.setenv("KEFU_AGENT_SAM_PASSWORD", "123456")
    from bot.shared.exceptions import ConfigError

    with pytest.raises(ConfigError, match="KEFU_AGENT_SAM_PASSWORD is refused"):
        console_app(project)


# ------------------------------------------------------------------ throttling
def _services(config_factory: Any, redis_url: str | None) -> tuple[Any, Any]:
    from bot.handoff import HandoffService

    overrides: dict[str, Any] = {"auto_assign": False}
    if redis_url:
        overrides["queue"] = {"type": "redis", "url": redis_url, "prefix": f"kefu:test:{os.getpid()}:"}
    config = config_factory(**overrides)
    return HandoffService(config), HandoffService(config)


def _apps(*services: Any) -> list[Any]:
    from bot.handoff.feature import HandoffFeature
    from bot.server.app import create_app

    return [create_app(None, enable_api=False, features=[HandoffFeature(s, owns_service=False)]) for s in services]


async def _login(app: Any, agent_id: str, password: str) -> Any:
    _, res = await app.asgi_client.post("/handoff/api/login", json={"agent_id": agent_id, "password": password})
    return res


async def _lock_out_and_check(worker_a: Any, worker_b: Any, store: Any) -> None:
    for attempt in range(4):
        assert (await _login(worker_a, "alice", f"guess-{attempt}")).status == 401
    locked = await _login(worker_a, "alice", "guess-5")
    assert locked.status == 429 and int(locked.headers["Retry-After"]) >= 59
    assert locked.json["reason"] == "TooManyLogins" and "set-password" in locked.json["message"]
    # even the right password, even on another worker: locked
    again = await _login(worker_b, "alice", password_for("alice"))
    assert again.status == 429 and 0 < int(again.headers["Retry-After"]) <= 60
    assert (await _login(worker_b, "bob", password_for("bob"))).status == 200  # other agents unaffected
    actions = [(a["actor"], a["action"]) for a in await store.audit_log()]
    assert actions.count(("alice", "login_failed")) == 5 and ("alice", "login_lockout") in actions
    assert ("alice", "login_refused_locked") in actions and ("bob", "login") in actions


def test_login_five_wrong_passwords_lock_the_agent_out_429_retry_after(config_factory: Any) -> None:
    async def scenario() -> None:
        a, _ = _services(config_factory, None)
        [worker] = _apps(a)
        try:
            await _lock_out_and_check(worker, worker, a.store)
            # unknown ids are counted like real ones (a lockout reveals nothing) and cost a real hash check
            for attempt in range(4):
                assert (await _login(worker, "nobody", f"x{attempt}")).status == 401
            assert (await _login(worker, "nobody", "x5")).status == 429
        finally:
            await a.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_login_lockout_is_shared_by_workers_on_redis(config_factory: Any, redis_url: str) -> None:
    async def scenario() -> None:
        a, b = _services(config_factory, redis_url)
        worker_a, worker_b = _apps(a, b)
        try:
            await _lock_out_and_check(worker_a, worker_b, a.store)
        finally:
            await a.queue.client.flushdb()
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_login_success_resets_the_failure_count(config_factory: Any) -> None:
    async def scenario() -> None:
        a, _ = _services(config_factory, None)
        [worker] = _apps(a)
        try:
            for _ in range(3):
                for attempt in range(4):
                    assert (await _login(worker, "sue", f"bad-{attempt}")).status == 401
                assert (await _login(worker, "sue", password_for("sue"))).status == 200
        finally:
            await a.close()

    asyncio.run(scenario())


def test_login_lockouts_grow_up_to_the_cap() -> None:
    from bot.handoff.throttle import InMemoryLoginThrottle, ThrottlePolicy

    now = [1000.0]
    throttle = InMemoryLoginThrottle(ThrottlePolicy(max_failures=2, lockout_s=60, max_lockout_s=900), lambda: now[0])
    keys = throttle.policy.keys("alice", "10.0.0.1")
    seen = []
    for _ in range(6):
        assert asyncio.run(throttle.failure(keys)) == 0
        seen.append(asyncio.run(throttle.failure(keys)))
        assert asyncio.run(throttle.locked_for(keys)) == seen[-1]
        now[0] += seen[-1]
    assert seen == [60, 120, 240, 480, 900, 900]


def test_login_password_check_runs_off_the_event_loop(config_factory: Any) -> None:
    """While a login's argon2 check runs, the loop keeps answering (a ticker keeps ticking)."""
    from bot.handoff.passwords import averify, hash_password

    async def scenario() -> None:
        stored = await asyncio.to_thread(hash_password, "x" * 20)  # default costs: ~0.1-0.3 s of CPU
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        assert await averify("x" * 20, stored) and not await averify("wrong", stored)
        task.cancel()
        assert ticks >= 5

    asyncio.run(scenario())


# ------------------------------------------------------------------ no tokens in URLs
def test_console_websocket_refuses_token_in_url_and_accepts_first_message_auth(config_factory: Any) -> None:
    import websockets

    from bot.handoff import HandoffService
    from bot.handoff.auth import issue_token

    async def scenario() -> None:
        service = HandoffService(config_factory(auto_assign=False))
        [app] = _apps(service)
        app.config.TOUCHUP = False
        server = await app.create_server(host="127.0.0.1", port=0, return_asyncio_server=True, access_log=False)
        await server.startup()
        port = server.server.sockets[0].getsockname()[1]
        serving = asyncio.create_task(server.serve_forever())
        token, _ = issue_token(service.config, service.config.agent("alice"))
        url = f"ws://127.0.0.1:{port}/handoff/ws"
        try:
            async with websockets.connect(f"{url}?token={token}") as ws:  # the old way
                error = json.loads(await ws.recv())
                assert error["error"] == "token_in_url" and "first message" in error["message"]
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 4400
            async with websockets.connect(url) as ws:  # anything but auth first: closed
                await ws.send(json.dumps({"type": "hello"}))
                assert json.loads(await ws.recv())["error"] == "unauthorized"
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 4401
            async with websockets.connect(url) as ws:  # a forged token: closed
                await ws.send(json.dumps({"type": "auth", "token": token[:-2] + "xx"}))
                assert json.loads(await ws.recv())["error"] == "unauthorized"
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                hello = json.loads(await ws.recv())
                assert hello["type"] == "hello" and hello["agent"]["id"] == "alice"
            _, res = await app.asgi_client.get(f"/handoff/api/me?token={token}")
            assert res.status == 400 and "not accepted in URLs" in res.json["message"]
            _, res = await app.asgi_client.get("/handoff/api/me", headers={"Authorization": f"Bearer {token}"})
            assert res.status == 200
        finally:
            server.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await service.close()

    asyncio.run(scenario())


def test_console_js_never_puts_the_token_in_a_url() -> None:
    js = (REPO / "connectors" / "static" / "console" / "console.js").read_text(encoding="utf-8")
    assert "?token=" not in js and "token=" not in js.replace("state.token =", "")
    assert '"auth"' in js


def test_hash_for_is_a_real_argon2id_hash() -> None:
    from bot.handoff.passwords import is_argon2id_hash, verify_password

    assert is_argon2id_hash(hash_for("alice")) and verify_password(password_for("alice"), hash_for("alice"))


def _provision_in_process(project: str) -> tuple[dict[str, str], str]:
    import contextlib

    from bot.handoff import HandoffConfig
    from bot.handoff.credentials import provision

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        config = provision(HandoffConfig.from_project(project), project)
    return {a.id: a.password_hash for a in config.agents}, out.getvalue()


def test_credentials_workers_starting_together_generate_once(tmp_path: Path) -> None:
    """Sanic's main process and workers build the app at once: one generates, all load the same hashes."""
    import multiprocessing

    project = demo_project(tmp_path)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_provision_in_process, [str(project)] * 3)
    assert len({json.dumps(hashes, sort_keys=True) for hashes, _ in results}) == 1
    assert sum(bool(printed_passwords(out)) for _, out in results) == 1
