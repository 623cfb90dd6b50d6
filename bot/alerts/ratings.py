"""Where CSAT ratings come from: a small seam so every rating source feeds the CSAT alert.

Two sources: the handoff CSAT (``kefu_handoffs.csat``, asked after an agent resolves; its
time is the handoff's ``resolved_at``) and the conversation-end survey of the analytics
feature (``analytics_surveys.csat``, asked when a conversation without a handoff ends; its
time is ``answered_at``). A conversation is rated by one of them, never both (the survey
skips conversations with a handoff), so the two together are every rating once.
``alerts.yml`` ``rating_sources:`` picks which ones count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class Rating:
    value: float  # 1-5 stars
    at: float  # epoch seconds
    source: str


class RatingsSource(Protocol):
    name: str

    async def ratings(self, since: float, until: float) -> list[Rating]:
        """Every rating given in ``[since, until)``."""
        ...


class HandoffRatings:
    """CSAT answers to the handoff survey, from the handoff store (SQL)."""

    name = "handoff"

    def __init__(self, handoff_store: Any) -> None:
        self.store = handoff_store

    async def ratings(self, since: float, until: float) -> list[Rating]:
        import sqlalchemy as sa

        from bot.handoff.store import handoffs

        await self.store.init()
        query = sa.select(handoffs.c.csat, handoffs.c.resolved_at).where(
            handoffs.c.csat.is_not(None), handoffs.c.resolved_at >= since, handoffs.c.resolved_at < until)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Rating(float(csat), float(at), self.name) for csat, at in rows]


class SurveyRatings:
    """CSAT answers to the conversation-end survey, from the analytics store (SQL)."""

    name = "survey"

    def __init__(self, analytics_store: Any) -> None:
        self.store = analytics_store

    async def ratings(self, since: float, until: float) -> list[Rating]:
        import sqlalchemy as sa

        from bot.analytics.schema import surveys

        await self.store.open()  # idempotent: the analytics feature opens it at start
        query = sa.select(surveys.c.csat, surveys.c.answered_at).where(
            surveys.c.csat.is_not(None), surveys.c.answered_at >= since, surveys.c.answered_at < until)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Rating(float(csat), float(at), self.name) for csat, at in rows]


# name -> factory(context peers) building the source, or None when its feature is not running
RATING_SOURCES: dict[str, Callable[[dict[str, Any]], "RatingsSource | None"]] = {
    "handoff": lambda peers: HandoffRatings(peers["handoff"].service.store) if "handoff" in peers else None,
    "survey": lambda peers: SurveyRatings(peers["analytics"].store) if "analytics" in peers else None,
}


async def ratings_between(sources: list[RatingsSource], since: float, until: float) -> list[Rating]:
    found: list[Rating] = []
    for source in sources:
        found.extend(await source.ratings(since, until))
    return found
