"""The WAL is checkpointed by a background thread, not by the writer whose commit fills it."""
from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.customers import tables as t
from bot.customers.store import CustomerStore
from bot.stores.sqlite_checkpoint import SAFETY_PAGES, WalCheckpointer


def _insert_events(store: CustomerStore, n: int) -> None:
    with store.transaction() as conn:
        store.create_customer(conn, "cu_1", 0.0)
    for i in range(n):  # one transaction each, as events arrive
        with store.transaction() as conn:
            store.add_event(conn, event_id=f"e{i}", customer_id="cu_1", identity=("shop_customer", "1"),
                            kind="product_viewed", ts=float(i), data={"category": "x" * 200})


def test_a_background_checkpoint_copies_the_log_into_the_database_file(tmp_path: Path) -> None:
    store = CustomerStore(f"sqlite:///{tmp_path / 'c.db'}", checkpoint_interval=0.05)
    try:
        store.open()
        assert store.checkpointer is not None and store.checkpointer.running
        with store.transaction() as conn:  # the writers' own checkpoint is only a backstop now
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SAFETY_PAGES
        _insert_events(store, 200)
        deadline = time.monotonic() + 10
        while store.checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.checkpointer.checkpoints >= 1
        time.sleep(0.2)  # one more round after the last commit
        # the database file alone (no -wal beside it) holds every event: the log was copied into it
        shutil.copyfile(tmp_path / "c.db", tmp_path / "copy.db")
        with sqlite3.connect(tmp_path / "copy.db") as copy:
            assert copy.execute("select count(*) from c360_events").fetchone()[0] == 200
    finally:
        store.close()
    assert not store.checkpointer.running


def test_without_an_interval_sqlite_keeps_its_own_checkpoints(tmp_path: Path) -> None:
    store = CustomerStore(f"sqlite:///{tmp_path / 'c.db'}", checkpoint_interval=None)
    try:
        assert store.checkpointer is None
        with store.transaction() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
            assert conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar() == 0
    finally:
        store.close()


def test_in_memory_stores_have_no_checkpointer() -> None:
    store = CustomerStore("sqlite://")
    try:
        store.open()
        assert store.checkpointer is None
    finally:
        store.close()


def test_the_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        WalCheckpointer(str(tmp_path / "c.db"), interval=0)
