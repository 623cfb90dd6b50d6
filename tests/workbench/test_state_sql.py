"""The workbench's state in SQL, shared by workers on several hosts (two project folders, one database).

Two "hosts" here are two WorkbenchService instances with their own project folders (no
shared files) on one real PostgreSQL server (and on one SQLite file): an activation,
a dismissed message and a training job on one are what the other sees; a job whose worker
stops renewing its lease reads as failed on the other; a registry an older kefu kept in
``.kefu/workbench/models.json`` is imported once.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.stores import migrate
from bot.web.principals import Principal, Role
from bot.workbench.annotate import text_key
from bot.workbench.config import WorkbenchConfig
from bot.workbench.feature import WorkbenchService
from bot.workbench.registry import ModelRegistry
from bot.workbench.registry_sql import WorkbenchState, default_state_url
from tests.workbench.conftest import copy_shop

ADMIN = Principal("root", Role.ADMIN)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'shared' / 'kefu.db'}"


class FakeJobs:
    """The agent's heavy-jobs queue, standing in for a training run that takes ``seconds``."""

    def __init__(self, seconds: float, model: str) -> None:
        self.seconds, self.model = seconds, model

    async def run(self, kind: str, fn: Any, *args: Any) -> dict[str, Any]:
        await asyncio.sleep(self.seconds)
        return {"name": self.model, "gate_passed": True}


class FakeAgent:
    def __init__(self, jobs: FakeJobs | None = None) -> None:
        self.heavy_jobs = jobs
        self.model_id: str | None = None
        self.model_path: str | None = None
        self.loaded: list[str] = []

    async def load_model(self, path: str) -> None:
        self.model_path, self.model_id = path, Path(path).name.removesuffix(".tar.gz")
        self.loaded.append(self.model_id)


def host(tmp_path: Path, name: str, state_url: str, agent: Any = None, lease_s: float = 120.0) -> WorkbenchService:
    root = copy_shop(tmp_path / name)
    config = WorkbenchConfig(state_url=state_url, job_lease_s=lease_s)
    return WorkbenchService(root, config, agent)


def model_file(service: WorkbenchService, name: str) -> str:
    path = service.root / "models" / f"{name}.tar.gz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"model")
    return str(path)


@pytest.mark.asyncio
async def test_two_hosts_share_the_registry_and_the_inbox(tmp_path: Path, state_url: str) -> None:
    agent_a, agent_b = FakeAgent(), FakeAgent()
    a, b = host(tmp_path, "host-a", state_url, agent_a), host(tmp_path, "host-b", state_url, agent_b)
    try:
        for name in ("m1", "m2"):
            a.registry.add(model_file(a, name), "tina", "v1", {"passed": True})
        assert [m["name"] for m in b.registry.read()["models"]] == ["m1", "m2"]
        await a.activate(ADMIN, "m1", override=False)
        assert await b.follow_once() is True and agent_b.loaded == ["m1"]
        await a.activate(ADMIN, "m2", override=False)
        assert await b.follow_once() is True and agent_b.loaded == ["m1", "m2"]
        assert await b.follow_once() is False
        record = await b.activate(ADMIN, "", override=False, rollback=True)  # the roll-back from the other host
        assert (record["model"], record["previous"]) == ("m1", "m2")
        assert await a.follow_once() is True and agent_a.model_id == "m1"
        history = a.registry.read()["history"]
        assert [(h["action"], h["model"]) for h in history] == [("activate", "m1"), ("activate", "m2"),
                                                                 ("rollback", "m1")]

        await a.dismiss(ADMIN, ["退货 怎么 办", "hello bot"], "noise")
        handled = await asyncio.to_thread(b.annotator.handled)
        assert handled[text_key("退货 怎么 办")]["status"] == "dismissed"
        assert handled[text_key("HELLO   bot")]["reason"] == "noise"
        assert not (a.root / ".kefu" / "workbench" / "state.json").exists()  # nothing left in the project folder
        assert not (a.root / ".kefu" / "workbench" / "models.json").exists()
    finally:
        a.state.close()
        b.state.close()


@pytest.mark.asyncio
async def test_a_training_job_is_seen_from_the_other_host_and_its_lease_renewed(tmp_path: Path, state_url: str) -> None:
    a = host(tmp_path, "host-a", state_url, FakeAgent(FakeJobs(1.5, "m-trained")), lease_s=0.4)
    b = host(tmp_path, "host-b", state_url, FakeAgent(), lease_s=0.4)
    try:
        started = await a.start_training(ADMIN)
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job = await asyncio.to_thread(b.job, started["job"])
            seen.append(job["status"])
            if job["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert seen.count("running") >= 8  # ran for ~1.5 s, well past its 0.4 s lease: renewed
        assert job["status"] == "done" and job["model"] == "m-trained" and job["gate_passed"] is True
        assert job["worker"] == a.worker and job["by"] == "root"
    finally:
        a.state.close()
        b.state.close()


@pytest.mark.asyncio
async def test_a_job_whose_worker_died_reads_failed_after_its_lease(tmp_path: Path, state_url: str) -> None:
    b = host(tmp_path, "host-b", state_url, FakeAgent())
    dead = WorkbenchState(state_url)  # a worker that started a job, then was killed (it never renews)
    try:
        dead.start_job("deadjob1", "tina", "host-a:4242:abc", lease_s=0.3)
        assert (await asyncio.to_thread(b.job, "deadjob1"))["status"] == "running"
        await asyncio.sleep(0.5)
        job = await asyncio.to_thread(b.job, "deadjob1")
        assert job["status"] == "failed" and "lease" in job["error"] and job["finished_at"] >= job["started_at"]
        assert dead.renew_job("deadjob1", 60) is False  # a worker that comes back cannot revive it
        assert b.job("nope") is None and b.job("../etc") is None
    finally:
        dead.close()
        b.state.close()


def test_the_tracker_store_database_is_the_default(tmp_path: Path) -> None:
    from bot.stores.tracker_store import InMemoryTrackerStore, SQLTrackerStore

    sql = SQLTrackerStore(url=f"sqlite:///{tmp_path / 'tracker.db'}")
    assert default_state_url(tmp_path, sql) == sql.url
    assert default_state_url(tmp_path, sql, "postgresql://wb@db/wb") == "postgresql://wb@db/wb"
    fallback = default_state_url(tmp_path, InMemoryTrackerStore(None))
    assert fallback.startswith("sqlite:///") and fallback.endswith(".kefu/workbench/workbench.db")
    assert default_state_url(tmp_path, SQLTrackerStore(url="sqlite://")) == fallback  # in memory: not shared


def test_a_json_registry_of_an_older_kefu_is_imported_once(tmp_path: Path, state_url: str) -> None:
    root = tmp_path / "project"
    legacy = root / ".kefu" / "workbench" / "models.json"
    legacy.parent.mkdir(parents=True)
    (root / "models").mkdir()
    (root / "models" / "old.tar.gz").write_bytes(b"model")
    legacy.write_text(json.dumps({
        "models": [{"name": "old", "path": str(root / "models" / "old.tar.gz"), "trained_at": 1.0,
                    "trained_by": "tina", "data_version": "abc", "holdout": 0.2, "comparison": {"passed": True},
                    "gate_passed": True, "detail": {}, "activations": []}],
        "active": "old",
        "history": [{"action": "activate", "model": "old", "previous": None, "by": "root", "at": 2.0,
                     "override": False}]}), encoding="utf-8")
    state = WorkbenchState(state_url)
    try:
        registry = ModelRegistry(root, state)
        assert registry.active()["name"] == "old"
        assert ModelRegistry(root, state).read()["history"][0]["by"] == "root"
        assert len(state.history()) == 1  # imported once, not per registry
    finally:
        state.close()
    assert {s.store: s.up_to_date for s in migrate.current(state_url, ["workbench"])} == {"workbench": True}


def test_without_an_agent_the_tracker_store_of_endpoints_yml_is_the_default(tmp_path: Path) -> None:
    """`python -m bot workbench models` (no agent) reads the registry the servers use."""
    (tmp_path / "endpoints.yml").write_text(
        f"tracker_store:\n  type: SQL\n  url: sqlite:///{tmp_path / 'trackers.db'}\n", encoding="utf-8")
    url = default_state_url(tmp_path, None)
    assert url.endswith(f"{tmp_path / 'trackers.db'}") and "workbench.db" not in url
    (tmp_path / "endpoints.yml").write_text("action_endpoint:\n  url: http://localhost:5055/webhook\n",
                                            encoding="utf-8")
    assert default_state_url(tmp_path, None).endswith(".kefu/workbench/workbench.db")
