from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.customers.rules import load_rules
from bot.customers.service import CustomerService
from bot.customers.store import CustomerStore

DAY = 86400.0
T0 = 1_760_000_000.0

HEALTH_YML = """\
components:
  repurchase:
    signal: days_since_last_order
    normalise: {low: 100, high: 0}
    weight: 3
  satisfaction:
    signal: csat_avg
    normalise: {low: 1, high: 5}
    weight: 2
bands:
  healthy: 70
  watch: 40
  at_risk: 0
actions:
  - name: winback
    when: {band: at_risk}
    notify_agents: "at risk"
    routing: {priority: 2, skill_group: senior}
    journey: win_back
"""

CUSTOMERS_YML = """\
segments:
  高价值:
    when: {lifetime_value: {gte: 30000}}
  价格敏感型:
    when: {discount_rate: {gte: 0.5}}
  流失风险:
    when: {health_band: at_risk}
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "health.yml").write_text(HEALTH_YML, encoding="utf-8")
    (tmp_path / "customers.yml").write_text(CUSTOMERS_YML, encoding="utf-8")
    return tmp_path


@pytest_asyncio.fixture
async def service(project: Path) -> Any:
    published: list[dict[str, Any]] = []

    async def publish(body: dict[str, Any]) -> None:
        published.append(body)

    store = CustomerStore(f"sqlite:///{project / 'customers.db'}")
    svc = CustomerService(store, load_rules(project), clock=Clock(T0), publish=publish)
    svc.published = published  # type: ignore[attr-defined]
    yield svc
    await svc.close()
