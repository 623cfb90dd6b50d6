"""``alerts.yml``: a valid file becomes rules with defaults; each mistake names its file, line and fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.alerts.config import load_alerts
from bot.shared.exceptions import ConfigError

VALID = """\
evaluate_every_s: 30
rules:
  - name: complaints_up
    kind: complaint_spike
    window_minutes: 30
  - name: csat_low
    kind: csat_drop
    threshold: 3.5
    severity: critical
  - {name: queue_slow, kind: queue_wait, max_wait_minutes: 5, queue: after_sales}
  - {name: escalations_high, kind: escalation_rate, threshold: 0.3}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_file_with_defaults(tmp_path):
    config = load_alerts(write(tmp_path, VALID))
    assert config.evaluate_every_s == 30.0
    assert [r.name for r in config.rules] == ["complaints_up", "csat_low", "queue_slow", "escalations_high"]
    spike = config.rules[0]
    assert spike.params == {"window_minutes": 30, "baseline_minutes": 1440, "factor": 2.0, "min_count": 5,
                            "intents": ["complaint"], "negative_sentiment": True}
    assert config.rules[1].severity == "critical" and config.rules[1]["min_ratings"] == 5
    assert config.rules[2]["queue"] == "after_sales"
    assert config.rules[3]["min_conversations"] == 20
    assert config.store == {"type": "memory"} and config.rating_sources == ("handoff", "survey")


@pytest.mark.parametrize(("text", "line", "words"), [
    ("rules:\n  - name: a\n    kind: complaint_spik\n", 3, ["unknown kind", "complaint_spike"]),
    ("rules:\n  - name: a\n    kind: csat_drop\n", 2, ["needs 'threshold'"]),
    ("rules:\n  - name: a\n    kind: queue_wait\n    max_wait_minutes: soon\n", 4, ["must be a number"]),
    ("rules:\n  - name: a\n    kind: queue_wait\n    max_wait_minutes: 5\n    colour: red\n", 5, ["unknown key 'colour'"]),
    ("rules:\n  - {name: a, kind: queue_wait, max_wait_minutes: 5}\n  - {name: a, kind: queue_wait, "
     "max_wait_minutes: 9}\n", 3, ["Two rules are named 'a'"]),
    ("rules:\n  - name: a\n    kind: escalation_rate\n    threshold: 30\n", 4, ["share of conversations"]),
    ("rules:\n  - name: a\n    kind: csat_drop\n    threshold: 4\n    min_ratings: 0\n", 5, ["at least 1"]),
    ("rules: []\nevaluate_every_s: 0.1\n", 2, ["evaluate_every_s", "at least 1"]),
    ("rules: []\nstore: {type: redis}\n", 2, ["store"]),
    ("rules: []\nrating_sources: [surveys]\n", 2, ["rating_sources", "handoff"]),
    ("rulez: []\n", 1, ["Unknown key 'rulez'"]),
    ("rules:\n  - just text\n", 2, ["must be a mapping"]),
    ("rules:\n  - name: a\n    kind: csat_drop\n    threshold: 4\n    severity: loud\n", 5, ["severity"]),
])
def test_mistakes_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_alerts(path)
    error = caught.value
    assert error.filename == str(path) and error.line == line, str(error)
    for word in words:
        assert word in str(error)
    assert str(error).startswith(f"{path}:{line}")


def test_the_projects_alerts_yml_is_valid():
    config = load_alerts(Path(__file__).resolve().parents[2] / "alerts.yml")
    assert {r.kind for r in config.rules} == {"complaint_spike", "csat_drop", "queue_wait", "escalation_rate"}
