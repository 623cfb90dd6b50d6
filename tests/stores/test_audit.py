"""The audit log's SQL store on a real SQLite file and a real PostgreSQL server, and where the server puts it."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.stores.audit import AuditLog, SQLAuditLog, audit_url, create_audit_log
from bot.web.principals import Principal, Role, scopes_for

TRAINER = Principal("tina", Role.TRAINER, scopes_for(Role.TRAINER), via="jwt")
ADMIN = Principal("api-token", Role.ADMIN, scopes_for(Role.ADMIN), via="token")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.mark.asyncio
async def test_sql_audit_log_records_and_filters(database_url: str):
    log = SQLAuditLog(database_url)
    assert isinstance(log, AuditLog)
    first = await log.record(TRAINER, "tracker.read", "alice", address="203.0.113.5", detail={"route": "GET /x"})
    assert first.id is not None and first.actor == "tina" and first.role == "trainer" and first.via == "jwt"
    await log.record(ADMIN, "tracker.returned", "bob")
    await log.record(TRAINER, "tracker.read", "bob")
    await log.close()

    reopened = SQLAuditLog(database_url)  # survives a restart
    everything = await reopened.list()
    assert [(r.actor, r.target) for r in everything] == [("tina", "bob"), ("api-token", "bob"), ("tina", "alice")]
    assert [r.target for r in await reopened.list(actor="tina")] == ["bob", "alice"]
    assert [r.actor for r in await reopened.list(target="bob")] == ["tina", "api-token"]
    assert await reopened.list(since=everything[0].at + 1) == []
    assert len(await reopened.list(limit=1)) == 1
    alice = (await reopened.list(target="alice"))[0]
    assert alice.address == "203.0.113.5" and alice.detail == {"route": "GET /x"}
    await reopened.close()


@pytest.mark.asyncio
async def test_unwritable_audit_log_does_not_raise(tmp_path: Path, caplog):
    log = SQLAuditLog(f"sqlite:///{tmp_path / 'missing-dir' / 'audit.db'}")
    entry = await log.record(ADMIN, "tracker.read", "alice")
    assert entry.id is None and "Could not write the audit record" in caplog.text
    await log.close()


def test_audit_url_defaults_to_the_project_root(tmp_path: Path):
    assert audit_url(None, tmp_path) == f"sqlite:///{(tmp_path / 'audit.db').resolve()}"
    assert audit_url({"url": "postgresql://db/audit"}, tmp_path) == "postgresql://db/audit"
    assert audit_url(None, None) == "sqlite://"
    assert create_audit_log(None, None).in_memory
