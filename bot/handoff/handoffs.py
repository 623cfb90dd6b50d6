"""The typed handoff record and the one place where store rows become records.

``SQLHandoffStore`` speaks rows (dicts, one key per column); the service's parts
pass :class:`Handoff` records between them; the API gets dicts back through
:meth:`Handoff.as_dict` (exactly the row) and :func:`summary_view` (queue lists),
so the JSON the console reads keeps its shape.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from bot.handoff.store import ACTIVE, SQLHandoffStore

# Column order of ``kefu_handoffs``: as_dict() keeps it, so the API's JSON keeps its key order.
_SUMMARY_KEYS = ("id", "conversation_id", "channel", "status", "reason", "priority", "queue", "language", "skills",
                 "tags", "agent_id", "customer_id", "after_hours", "csat", "created_at", "assigned_at", "resolved_at")


@dataclass(frozen=True, slots=True)
class Handoff:
    """One handoff as the store holds it (a row of ``kefu_handoffs``)."""

    id: str
    conversation_id: str
    channel: str | None = None
    status: str = "queued"
    reason: str = ""
    priority: int = 0
    queue: str = ""
    language: str | None = None
    skills: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    agent_id: str | None = None
    customer_id: str | None = None
    after_hours: bool | None = False
    record: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[Any, ...] = ()
    csat: int | None = None
    csat_pending: bool | None = False
    created_at: float = 0.0
    assigned_at: float | None = None
    resolved_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Handoff":
        """A store row (or a dict with the same keys) as a record; missing keys take the defaults."""
        values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        for key in ("skills", "tags", "notes"):
            if key in values:
                values[key] = tuple(values[key] or ())
        if "record" in values:
            values["record"] = dict(values["record"] or {})
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The row again: the same keys, order and JSON as ``SQLHandoffStore.get`` returns."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(skills=list(self.skills), tags=list(self.tags), notes=list(self.notes), record=dict(self.record))
        return data

    def replace(self, **changes: Any) -> "Handoff":
        return dataclasses.replace(self, **changes)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def left_messages(self) -> list[dict[str, Any]]:
        """Messages the shopper left after hours (on the record)."""
        return list(self.record.get("left_messages") or [])

    def summary(self) -> dict[str, Any]:
        """What a queue list shows (no transcript)."""
        data = self.as_dict()
        return {k: data[k] for k in _SUMMARY_KEYS} | {
            "summary": self.record.get("summary"), "profile": self.record.get("profile"),
            "sentiment_trend": self.record.get("sentiment_trend"), "left_messages": self.left_messages,
        }


def summary_view(h: Handoff | Mapping[str, Any]) -> dict[str, Any]:
    """What a queue list shows (no transcript), for a record or a store row."""
    return (h if isinstance(h, Handoff) else Handoff.from_row(h)).summary()


class HandoffRecords:
    """Reads of the store, as :class:`Handoff` records (the one place rows are converted)."""

    def __init__(self, store: SQLHandoffStore) -> None:
        self.store = store

    @staticmethod
    def _of(row: Mapping[str, Any] | None) -> Handoff | None:
        return Handoff.from_row(row) if row is not None else None

    async def create(self, values: dict[str, Any]) -> Handoff:
        return Handoff.from_row(await self.store.create(values))

    async def get(self, handoff_id: str) -> Handoff | None:
        return self._of(await self.store.get(handoff_id))

    async def get_many(self, handoff_ids: list[str]) -> dict[str, Handoff]:
        return {key: Handoff.from_row(row) for key, row in (await self.store.get_many(handoff_ids)).items()}

    async def current_for(self, conversation_id: str) -> Handoff | None:
        return self._of(await self.store.current_for(conversation_id))

    async def active_for(self, conversation_id: str) -> Handoff | None:
        return self._of(await self.store.active_for(conversation_id))

    async def list(self, statuses: tuple[str, ...] | None = None, **filters: Any) -> list[Handoff]:
        return [Handoff.from_row(row) for row in await self.store.list(statuses, **filters)]
