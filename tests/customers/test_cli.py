"""`python -m bot customers show|segment|recompute|check` on a real SQLite file."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.customers.profile import CustomerEvent
from bot.customers.rules import load_rules
from bot.customers.service import CustomerService
from bot.customers.store import CustomerStore
from tests.customers.conftest import DAY, T0


def seed(project: Path) -> None:
    async def run() -> None:
        store = CustomerStore(f"sqlite:///{project / 'customers.db'}")
        service = CustomerService(store, load_rules(project), clock=lambda: T0 + 20 * DAY)
        key = ("shop_customer", "42")
        await service.ingest(CustomerEvent("o1", "order_paid", T0, {"total_cents": 40000, "discount_cents": 5}, key),
                             proof="shop_event")
        await service.ingest(CustomerEvent("c1", "csat_submitted", T0 + DAY, {"rating": 5}, key), proof="shop_event")
        await service.close()
    asyncio.run(run())


def test_show_segment_recompute_check(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(project)
    args = ["--project", str(project)]
    assert main(["customers", "show", "shop_customer:42", *args]) == 0
    out = capsys.readouterr().out
    assert "高价值" in out and "Why this score" in out and "order_paid" in out
    assert main(["customers", "show", "shop_customer:42", "--json", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["customer"]["profile"]["lifetime_value"] == 40000
    assert main(["customers", "segment", "价格敏感型", *args]) == 0
    assert "1 customer(s) in 价格敏感型" in capsys.readouterr().out
    assert main(["customers", "segment", "nobody", *args]) == 1
    assert "No segment 'nobody'" in capsys.readouterr().err
    assert main(["customers", "recompute", *args]) == 0
    assert "Recomputed 1 customer(s)" in capsys.readouterr().out
    assert main(["customers", "show", "shop_customer:99", *args]) == 1
    (project / "health.yml").write_text("components: {}\nbands: {a: 0}\n", encoding="utf-8")
    assert main(["customers", "check", *args]) == 1
    assert "health.yml:1:" in capsys.readouterr().err
