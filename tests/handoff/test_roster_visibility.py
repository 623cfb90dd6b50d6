"""Which queues an agent sees: a wildcard skill sees every skill's queue in its languages."""
from __future__ import annotations

from bot.handoff.agents import AgentRoster
from bot.handoff.config import AgentSpec


def test_wildcard_skill_sees_every_skill_in_its_languages_only() -> None:
    star = AgentSpec(id="alice", name="Alice", skills=("*",), languages=("zh",))
    sales = AgentSpec(id="li", name="Li", skills=("after_sales",), languages=("zh", "en"))
    roster = AgentRoster([star, sales], presence=None)
    assert roster.can_see(star, "general:zh", None)  # the demo's alice: skills ["*"] (was never shown a queue)
    assert roster.can_see(star, "after_sales:zh", None)
    assert not roster.can_see(star, "general:en", None)  # not her language
    assert roster.can_see(sales, "after_sales:en", None)
    assert not roster.can_see(sales, "general:zh", None)
    assert roster.can_see(sales, None, "li") and not roster.can_see(sales, None, None)
