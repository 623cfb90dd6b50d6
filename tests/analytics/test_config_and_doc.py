"""The ``analytics:`` section's checks, the range split, the doc's definitions, the WeChat rendering of a prompt."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.analytics.config import AnalyticsConfig
from bot.analytics.metrics import DEFINITIONS, TABLE_DEFINITIONS
from bot.analytics.store import split_range
from bot.analytics.survey import SurveyService
from bot.shared.exceptions import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


def test_doc_defines_every_figure_and_table_with_the_pages_words() -> None:
    text = DOC.read_text(encoding="utf-8")
    for key, en, zh, definition, _, _ in DEFINITIONS:
        assert f"| `{key}` | {en} / {zh} | {definition} |" in text, key
    for key, en, zh, definition, _ in TABLE_DEFINITIONS:
        assert f"| `{key}` ({en} / {zh}) | {definition} |" in text, key


def test_project_section_is_read_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("language: zh\n\nanalytics:\n  survey:\n    sample_rate: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        AnalyticsConfig.from_project(tmp_path)
    assert "sample_rate" in str(error.value) and "config.yml:3" in str(error.value)
    (tmp_path / "config.yml").write_text("analytics:\n  survey:\n    ask_on: [goodbye, lunch]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="lunch.*goodbye, inactivity, session_end"):
        AnalyticsConfig.from_project(tmp_path)
    (tmp_path / "config.yml").write_text("analytics:\n  timeout: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="Unknown key.*timeout"):
        AnalyticsConfig.from_project(tmp_path)
    (tmp_path / "config.yml").write_text("analytics:\n  conversation_timeout_minutes: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="conversation_timeout_minutes.*positive"):
        AnalyticsConfig.from_project(tmp_path)
    (tmp_path / "config.yml").write_text("analytics:\n  survey: {nps: true, sample_rate: 0.25}\n", encoding="utf-8")
    (tmp_path / "endpoints.yml").write_text("analytics:\n  database: sqlite:///stats.db\n", encoding="utf-8")
    config = AnalyticsConfig.from_project(tmp_path)
    assert config.survey.nps and config.survey.sample_rate == 0.25
    assert config.database_url(tmp_path) == f"sqlite:///{tmp_path / 'stats.db'}"


def test_the_repositorys_own_section_is_valid() -> None:
    config = AnalyticsConfig.from_project(DOC.parents[1])
    assert config.survey.enabled and "goodbye" in config.survey.ask_on


@pytest.mark.parametrize(("start", "end", "months", "days"), [
    ("2026-11-02", "2026-11-04", [], [("2026-11-02", "2026-11-04")]),
    ("2026-10-15", "2026-12-06", ["2026-11"], [("2026-10-15", "2026-10-31"), ("2026-12-01", "2026-12-06")]),
    ("2026-01-01", "2026-12-31", [f"2026-{m:02d}" for m in range(1, 13)], []),
    ("2024-02-01", "2024-02-29", ["2024-02"], []),
    ("2024-02-01", "2024-02-28", [], [("2024-02-01", "2024-02-28")]),
])
def test_ranges_split_into_whole_months_and_days(start, end, months, days) -> None:
    assert split_range(start, end) == (months, days)


def test_prompt_renders_as_text_on_wechat() -> None:
    from connectors.wechat.render import render_bot_messages

    service = SurveyService(AnalyticsConfig().survey, None, None)  # type: ignore[arg-type]
    rendered = render_bot_messages([service.prompt("csat", "zh", "s1")], "zh")
    assert [o.kind for o in rendered.messages] == ["text"]
    assert "1-5" in rendered.messages[0].text
    comment = render_bot_messages([service.prompt("comment", "en", "s1")], "en")
    assert "skip" in comment.messages[0].text
