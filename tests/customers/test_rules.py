"""customers.yml and health.yml: bad input names the file, the line and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.customers.rules import load_rules
from bot.shared.exceptions import ConfigError
from tests.customers.conftest import CUSTOMERS_YML, HEALTH_YML


def write(tmp_path: Path, customers: str = CUSTOMERS_YML, health: str = HEALTH_YML) -> Path:
    (tmp_path / "customers.yml").write_text(customers, encoding="utf-8")
    (tmp_path / "health.yml").write_text(health, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("customers,health,where,words", [
    (CUSTOMERS_YML.replace("lifetime_value", "lifetime_valu"), HEALTH_YML, "customers.yml:3:", "unknown profile field"),
    (CUSTOMERS_YML.replace("gte: 0.5", "between: 0.5"), HEALTH_YML, "customers.yml:5:", "unknown operator"),
    (CUSTOMERS_YML, HEALTH_YML.replace("signal: csat_avg", "signal: csat"), "health.yml:7:", "unknown signal"),
    (CUSTOMERS_YML, HEALTH_YML.replace("{low: 1, high: 5}", "{low: 1, high: 1}"), "health.yml:8:", "must differ"),
    (CUSTOMERS_YML, HEALTH_YML.replace("at_risk: 0", "at_risk: 10"), "health.yml:13:", "lowest band"),
    (CUSTOMERS_YML, HEALTH_YML.replace("when: {band: at_risk}", "when: {band: doomed}"), "health.yml:16:",
     "unknown band"),
])
def test_bad_rules_name_file_line_and_fix(tmp_path: Path, customers: str, health: str, where: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_rules(write(tmp_path, customers, health))
    assert where in str(e.value) and words in str(e.value)


def test_without_project_files_kefu_defaults_apply(tmp_path: Path) -> None:
    rules = load_rules(tmp_path)
    assert {s.name for s in rules.segments} == {"高价值", "新客", "价格敏感型", "流失风险"}
    assert {"satisfaction", "repurchase", "recommendation_clicks", "complaints_returns"} <= set(rules.health.weights())
