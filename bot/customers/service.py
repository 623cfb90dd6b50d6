"""Customer 360's service: identities and merges, incremental profile + health, the timeline.

One event = one transaction: resolve (or create) the customer its proven identity names,
apply the proven links it carries (docs/customers.md has the rules), store the event once,
fold it into the profile, rescore health, re-tag, and record what changed. Unproven claims
never reach :meth:`CustomerService.ingest` as links: the callers (the processor hook, the
broker reader) only pass identities a channel or a trusted producer verified.
"""
from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Sequence

from bot.customers import profile as prof
from bot.customers.health import score as health_score
from bot.customers.rules import CustomerRules, ThresholdAction
from bot.customers.store import STRONG_KINDS, CustomerStore
from bot.shared.concurrency import run_blocking
from bot.shared.exceptions import BotError

logger = logging.getLogger(__name__)

TIMELINE_HIDDEN = ("message",)  # every chat line is kept for recompute, the timeline shows conversations
UNIQUE_KINDS = ("shop_customer", "widget")  # a customer holds at most one of each (docs/customers.md)


class CustomerError(BotError):
    """A request about customers that cannot be done; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Link:
    """A proven identity: ``proof`` names how it was proven (never a request field)."""

    kind: str
    value: str
    proof: str


Publisher = Callable[[dict[str, Any]], Awaitable[None]]


def new_id() -> str:
    return "cu_" + uuid.uuid4().hex[:16]


class CustomerService:
    def __init__(self, store: CustomerStore, rules: CustomerRules, clock: Callable[[], float] = time.time,
                 publish: Publisher | None = None) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.publish = publish  # the event broker's publish (threshold actions entering journeys)
        self._outbox: list[dict[str, Any]] = []  # broker bodies of the current event (sent after its commit)
        self._notices: list[dict[str, Any]] = []  # agent notifications of the current event (after its commit)
        # Where agent notifications go live (the customers feature sets the handoff consoles'); None: stored only.
        self.notify: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        # One thread: every transaction runs off the event loop, in order (SQLite has one writer anyway).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="customers")

    # -- identities --------------------------------------------------------------------
    def _link(self, conn: Any, cid: str | None, link: Link, now: float, owner: Any = ...) -> str | None:
        """Attach ``link`` to ``cid`` (or find/create its owner); returns the customer the event belongs to.

        ``owner``: the identity's owner when the caller just read it (saves a query per event)."""
        if owner is ...:
            owner = self.store.owner(conn, link.kind, link.value)
        if cid is None and owner is None:
            cid = new_id()
            self.store.create_customer(conn, cid, now)
            self.store.add_identity(conn, link.kind, link.value, cid, link.proof, now)
            return cid
        if cid is None:
            return owner
        if owner == cid:
            return cid
        if owner is None:
            if link.kind in UNIQUE_KINDS and any(
                    i["kind"] == link.kind for i in self.store.identities_of(conn, cid)):
                # e.g. a second shop account signs in on the same conversation: never join two accounts
                holder = new_id()
                self.store.create_customer(conn, holder, now)
                self.store.add_identity(conn, link.kind, link.value, holder, link.proof, now)
                self.store.add_conflict(conn, link.kind, link.value, holder, cid, link.proof, now)
                return cid
            self.store.add_identity(conn, link.kind, link.value, cid, link.proof, now)
            return cid
        # Two records: an anonymous chat joins the known customer; two known customers never auto-merge.
        if self.store.is_anonymous(conn, cid):
            self._absorb(conn, survivor=owner, anonymous=cid, now=now)
            return owner
        if self.store.is_anonymous(conn, owner):
            self._absorb(conn, survivor=cid, anonymous=owner, now=now)
            return cid
        self.store.add_conflict(conn, link.kind, link.value, owner, cid, link.proof, now)
        logger.info("Identity %s proven by %s belongs to another customer; not merged (conflict recorded).",
                    link.kind, link.proof)
        return cid

    def _absorb(self, conn: Any, survivor: str, anonymous: str, now: float) -> None:
        self.store.move(conn, anonymous, survivor, keep_origin=False)
        self.store.delete_customer(conn, anonymous)
        self.store.add_merge(conn, id="mg_" + uuid.uuid4().hex[:16], survivor_id=survivor, merged_id=anonymous,
                                   kind="auto", actor="kefu", at=now)
        self._recompute(conn, survivor, now)

    # -- events ------------------------------------------------------------------------
    def ingest_sync(self, event: prof.CustomerEvent, links: Sequence[Link] = (), proof: str = "event") -> str:
        """Store and fold one event; returns the customer id it was attributed to."""
        now = self.clock()
        self._outbox = []
        self._notices = []
        with self.store.transaction() as conn:
            known = None if links else self.store.owner(conn, *event.identity)
            cid = known or self._resolve(conn, [Link(event.identity[0], event.identity[1], proof), *links], now)
            if not self.store.add_event(conn, event_id=event.id, customer_id=cid, identity=event.identity,
                                              kind=event.type, ts=event.ts, data=event.data):
                return cid  # a redelivered event changes nothing
            if event.type in prof.PROFILE_TYPES:
                self._update(conn, cid, event, now, linked=known is None)
        return cid

    def link_sync(self, kind: str, value: str, links: Sequence[Link], proof: str) -> str:
        """Record proven identities without an event (a sign-in, an order verification)."""
        now = self.clock()
        with self.store.transaction() as conn:
            return self._resolve(conn, [Link(kind, value, proof), *links], now)

    def _resolve(self, conn: Any, links: Sequence[Link], now: float) -> str:
        """Apply ``links`` (the event's own key first): known identities before new ones, so a new
        identity lands on the customer the known ones name, not on a fresh anonymous record."""
        owners = [self.store.owner(conn, link.kind, link.value) for link in links]
        if len(links) == 1 and owners[0] is not None:
            return owners[0]  # the common case: an event under a known identity
        pairs = list(zip(links, owners))
        ordered = [p for p in pairs if p[1] is not None] + [p for p in pairs if p[1] is None]
        cid: str | None = None
        for i, (link, owner) in enumerate(ordered):
            # the first link's owner is still what was read; later ones may have moved (merges)
            cid = self._link(conn, cid, link, now, owner if i == 0 else ...)
        assert cid is not None
        return cid

    def _update(self, conn: Any, cid: str, event: prof.CustomerEvent, now: float, linked: bool = True) -> None:
        row = self.store.get(conn, cid)
        assert row is not None
        state = row["state"]
        prof.apply(state, event)
        last = max(row["last_event_at"] or event.ts, event.ts)
        self._score_and_save(conn, row, state, now, last, timeline=True, linked=linked)

    def _score_and_save(self, conn: Any, row: dict[str, Any], state: dict[str, Any], now: float,
                              last_event_at: float | None, timeline: bool, linked: bool = True) -> None:
        """``linked`` False: no identity changed in this transaction, the stored kinds are current."""
        cid = row["id"]
        profile = prof.derive(state, now)
        kinds = row["profile"].get("identities")
        identities: list[dict[str, Any]] | None = None
        if kinds is None or linked:  # read the identities only when they may have changed
            identities = self.store.identities_of(conn, cid)
            kinds = sorted({i["kind"] for i in identities})
        profile["identities"] = kinds
        health = health_score(self.rules.health, profile, row["health"] or None)
        profile["health_score"], profile["health_band"] = health.score, health.band
        tags = self.rules.tags_for(profile)
        self.store.save(conn, cid, state=state, profile=profile, tags=tags, health=health.as_dict(), now=now,
                              last_event_at=last_event_at)
        old_score, old_band = row["health_score"], row["health_band"]
        moved = old_score is None or abs(health.score - old_score) >= self.rules.health.history_min_change
        if moved or old_band != health.band:
            self.store.add_health(conn, cid, now, health.score, health.band, health.factors)
        if not timeline:
            return
        if old_band != health.band:
            self.store.add_event(conn, event_id="hc_" + uuid.uuid4().hex, customer_id=cid, identity=("kefu", ""),
                                       kind="health_changed", ts=now,
                                       data={"from": old_band, "to": health.band, "score": health.score,
                                             "previous_score": old_score, "factors": health.factors})
            if identities is None:
                identities = self.store.identities_of(conn, cid)
            self._threshold_actions(conn, cid, row, health.score, health.band, now, identities)
        if sorted(row["tags"]) != sorted(tags):
            self.store.add_event(conn, event_id="tc_" + uuid.uuid4().hex, customer_id=cid, identity=("kefu", ""),
                                       kind="tags_changed", ts=now,
                                       data={"added": sorted(set(tags) - set(row["tags"])),
                                             "removed": sorted(set(row["tags"]) - set(tags))})

    def _threshold_actions(self, conn: Any, cid: str, row: dict[str, Any], score: float, band: str, now: float,
                                 identities: list[dict[str, Any]]) -> None:
        old_score, old_band = row["health_score"], row["health_band"]
        for action in self.rules.health.actions:
            if not action.applies(score, band):
                continue
            if old_band is not None and old_score is not None and action.applies(old_score, old_band):
                continue  # it held before: fire on entering, not on every event
            detail = {"score": score, "band": band, "previous_band": old_band, "message": action.notify_agents,
                      "routing_priority": action.routing_priority, "skill_group": action.skill_group,
                      "journey": action.journey}
            self.store.add_alert(conn, cid, now, action.name, detail)
            if action.notify_agents:
                logger.warning("Customer %s: %s (health %.1f, %s).", cid, action.notify_agents, score, band)
                self._notices.append({"customer_id": cid, "at": now, "rule": action.name, "detail": detail,
                                      "conversations": sorted(i["value"] for i in identities
                                                              if i["kind"] in ("conversation", "wechat_openid"))})
            if action.journey:
                shop_id = next((i["value"] for i in identities if i["kind"] == "shop_customer"), None)
                self._outbox.append({"event": "customer_health_changed", "event_id": f"health-{cid}-{now}",
                                     "customer_id": shop_id or cid, "sender_id": shop_id or cid, "timestamp": now,
                                     "data": {"journey": action.journey, "band": band, "score": score,
                                              "previous_band": old_band, "action": action.name}})

    # -- recompute ---------------------------------------------------------------------
    def _recompute(self, conn: Any, cid: str, now: float) -> None:
        row = self.store.get(conn, cid)
        if row is None:
            return
        state: dict[str, Any] = {}
        last = None
        for e in self.store.events_of(conn, cid):
            if prof.apply(state, prof.CustomerEvent(e["id"], e["type"], e["ts"], e["data"])):
                last = e["ts"] if last is None else max(last, e["ts"])
        self._score_and_save(conn, row, state, now, last, timeline=False)

    def recompute_sync(self, cid: str) -> None:
        with self.store.transaction() as conn:
            self._recompute(conn, cid, self.clock())

    def recompute_all_sync(self, batch: int = 500, progress: Callable[[int], None] | None = None) -> int:
        """Every customer from its stored events (after a rules change, or to check the incremental path).

        A batch of customers per transaction, read with three queries and written with one
        executemany; the fold, the score and the tags are the same functions the incremental path uses.
        """
        done, after = 0, ""
        health_rules = self.rules.health
        while True:
            with self.store.transaction() as conn:
                rows = self.store.rows_after(conn, after, batch)
                ids = [r["id"] for r in rows]
                now = self.clock()
                events = self.store.events_of_many(conn, ids, prof.PROFILE_TYPES) if ids else {}
                kinds = self.store.identity_kinds_of_many(conn, ids) if ids else {}
                updates, history = [], []
                for row in rows:
                    state: dict[str, Any] = {}
                    last = None
                    for event_id, kind, ts, data in events[row["id"]]:
                        prof.apply(state, prof.CustomerEvent(event_id, kind, ts, data))
                        last = ts if last is None else max(last, ts)
                    profile = prof.derive(state, now)
                    profile["identities"] = kinds[row["id"]]
                    health = health_score(health_rules, profile, row["health"] or None)
                    profile["health_score"], profile["health_band"] = health.score, health.band
                    tags = self.rules.tags_for(profile)
                    updates.append({"cid": row["id"], "state": state, "profile": profile, "tags": tags,
                                    "health": health.as_dict(), "now": now, "last_event_at": last})
                    old = row["health_score"]
                    if old is None or abs(health.score - old) >= health_rules.history_min_change \
                            or row["health_band"] != health.band:
                        history.append({"customer_id": row["id"], "at": now, "score": health.score,
                                        "band": health.band, "factors": health.factors})
                self.store.save_many(conn, updates)
                self.store.add_health_many(conn, history)
            if not ids:
                return done
            done += len(ids)
            after = ids[-1]
            if progress:
                progress(done)

    def reload(self, rules: CustomerRules) -> None:
        self.rules = rules

    # -- manual merges -----------------------------------------------------------------
    def merge_sync(self, survivor: str, merged: str, actor: str) -> dict[str, Any]:
        if survivor == merged:
            raise CustomerError(400, "A customer cannot be merged into itself.")
        now = self.clock()
        with self.store.transaction() as conn:
            a, b = self.store.get(conn, survivor), self.store.get(conn, merged)
            if a is None or b is None:
                raise CustomerError(404, f"No customer '{survivor if a is None else merged}'.")
            if a["merged_into"] or b["merged_into"]:
                raise CustomerError(409, "One of the customers was merged already; merge into the survivor.")
            merge_id = "mg_" + uuid.uuid4().hex[:16]
            self.store.move(conn, merged, survivor, keep_origin=True)
            self.store.set_merged_into(conn, merged, survivor)
            self.store.add_merge(conn, id=merge_id, survivor_id=survivor, merged_id=merged, kind="manual",
                                       actor=actor, at=now)
            self.store.add_event(conn, event_id="mr_" + merge_id, customer_id=survivor, identity=("kefu", ""),
                                       kind="merged", ts=now, data={"merge_id": merge_id, "merged": merged, "by": actor})
            self._recompute(conn, survivor, now)
        return {"merge_id": merge_id, "survivor": survivor, "merged": merged}

    def unmerge_sync(self, merge_id: str, actor: str) -> dict[str, Any]:
        now = self.clock()
        with self.store.transaction() as conn:
            merge = self.store.get_merge(conn, merge_id)
            if merge is None:
                raise CustomerError(404, f"No merge '{merge_id}'.")
            if merge["kind"] != "manual":
                raise CustomerError(409, "Only manual merges can be undone (an anonymous chat joined by proof stays).")
            if merge["undone_at"] is not None:
                raise CustomerError(409, f"Merge '{merge_id}' was undone already.")
            merged = merge["merged_id"]
            holders = self.store.move_back(conn, merged)
            self.store.set_merged_into(conn, merged, None)
            self.store.undo_merge(conn, merge_id, actor, now)
            for cid in {merge["survivor_id"], *holders}:
                self.store.add_event(conn, event_id=f"um_{merge_id}_{cid}", customer_id=cid, identity=("kefu", ""),
                                           kind="unmerged", ts=now, data={"merge_id": merge_id, "merged": merged, "by": actor})
                self._recompute(conn, cid, now)
            self._recompute(conn, merged, now)
        return {"merge_id": merge_id, "restored": merged}

    # -- reads -------------------------------------------------------------------------
    def get_sync(self, cid: str, history: int = 90) -> dict[str, Any]:
        with self.store.transaction() as conn:
            row = self.store.get(conn, cid)
            if row is None:
                raise CustomerError(404, f"No customer '{cid}'.")
            row.pop("state")
            row["identities"] = [{k: i[k] for k in ("kind", "value", "proof", "linked_at")}
                                 for i in self.store.identities_of(conn, cid)]
            row["health_history"] = self.store.health_history(conn, cid, history)
            row["merges"] = self.store.merges_of(conn, cid)
            row["conflicts"] = self.store.conflicts(conn, cid)
        return row

    def find_sync(self, kind: str, value: str) -> str | None:
        with self.store.transaction() as conn:
            return self.store.owner(conn, kind, value)

    def timeline_sync(self, cid: str, before: tuple[float, int] | None = None, limit: int = 50,
                       types: Iterable[str] | None = None) -> dict[str, Any]:
        with self.store.transaction() as conn:
            if self.store.get(conn, cid) is None:
                raise CustomerError(404, f"No customer '{cid}'.")
            items = self.store.timeline(conn, cid, before=before, limit=limit + 1, types=types,
                                              hide=() if types else TIMELINE_HIDDEN)
        more = len(items) > limit
        items = items[:limit]
        cursor = f"{items[-1]['ts']!r}:{items[-1]['seq']}" if more and items else None
        return {"items": items, "next": cursor}

    def segment_sync(self, name: str, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        if name not in {s.name for s in self.rules.segments}:
            raise CustomerError(404, f"No segment '{name}'. Segments: {', '.join(s.name for s in self.rules.segments)}.")
        with self.store.transaction() as conn:
            return self.store.search(conn, tag=name, limit=limit, offset=offset)

    def alerts_sync(self, since: float = 0.0, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.transaction() as conn:
            return self.store.alerts(conn, since, limit)

    def context_sync(self, kind: str, value: str) -> dict[str, Any] | None:
        """What routing and journeys use: tags, health, and the routing the threshold actions ask for."""
        with self.store.transaction() as conn:
            cid = self.store.owner(conn, kind, value)
            row = self.store.get(conn, cid) if cid else None
        if row is None:
            return None
        score, band = row["health_score"], row["health_band"]
        applying: list[ThresholdAction] = [a for a in self.rules.health.actions
                                           if score is not None and band is not None and a.applies(score, band)]
        return {"customer_id": row["id"], "tags": row["tags"], "segments": {tag: True for tag in row["tags"]},
                "health_score": score, "health_band": band,
                "routing_priority": sum(a.routing_priority for a in applying),
                "skill_group": next((a.skill_group for a in applying if a.skill_group), None)}

    # -- the async API (each call one transaction in the service's thread) ---------------
    async def _run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_blocking(func, *args, executor=self._executor, **kwargs)

    async def ingest(self, event: prof.CustomerEvent, links: Sequence[Link] = (), proof: str = "event") -> str:
        """Store and fold one event; returns the customer id it was attributed to."""
        def work() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
            return self.ingest_sync(event, links, proof), list(self._outbox), list(self._notices)

        cid, bodies, notices = await self._run(work)
        for notice in notices:
            if self.notify is None:
                break
            try:
                await self.notify(notice)
            except Exception:  # a console bus down must not lose the profile update
                logger.exception("Could not notify the consoles of a health alert for %s", cid)
        for body in bodies:
            if self.publish is None:
                break
            try:
                await self.publish(body)
            except Exception:  # the broker down must not lose the profile update
                logger.exception("Could not publish customer_health_changed for %s", cid)
        return cid

    async def link(self, kind: str, value: str, links: Sequence[Link], proof: str) -> str:
        return await self._run(self.link_sync, kind, value, links, proof)

    async def recompute(self, cid: str) -> None:
        await self._run(self.recompute_sync, cid)

    async def recompute_all(self, batch: int = 500, progress: Callable[[int], None] | None = None) -> int:
        return await self._run(self.recompute_all_sync, batch, progress)

    async def merge(self, survivor: str, merged: str, actor: str) -> dict[str, Any]:
        return await self._run(self.merge_sync, survivor, merged, actor)

    async def unmerge(self, merge_id: str, actor: str) -> dict[str, Any]:
        return await self._run(self.unmerge_sync, merge_id, actor)

    async def get(self, cid: str, history: int = 90) -> dict[str, Any]:
        return await self._run(self.get_sync, cid, history)

    async def find(self, kind: str, value: str) -> str | None:
        return await self._run(self.find_sync, kind, value)

    async def timeline(self, cid: str, before: tuple[float, int] | None = None, limit: int = 50,
                       types: Iterable[str] | None = None) -> dict[str, Any]:
        return await self._run(self.timeline_sync, cid, before, limit, types)

    async def segment(self, name: str, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        return await self._run(self.segment_sync, name, limit, offset)

    async def search(self, band: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            with self.store.transaction() as conn:
                return self.store.search(conn, band=band, limit=limit, offset=offset)
        return await self._run(work)

    async def alerts(self, since: float = 0.0, limit: int = 100) -> list[dict[str, Any]]:
        return await self._run(self.alerts_sync, since, limit)

    async def health_overview(self, segment: str | None, day_ends: list[float]) -> dict[str, Any]:
        """The dashboard's health-score distribution (now) and trend (band counts at each of ``day_ends``)."""
        bands = [name for name, _ in self.rules.health.bands]  # highest first

        def work() -> dict[str, Any]:
            with self.store.transaction() as conn:
                return self.store.health_overview(conn, segment, day_ends, bands)
        return await self._run(work)

    async def context(self, kind: str, value: str) -> dict[str, Any] | None:
        return await self._run(self.context_sync, kind, value)

    async def open(self) -> None:
        await self._run(self.store.open)

    async def close(self) -> None:
        """Close the store and the service's thread."""
        await self._run(self.store.close)
        self._executor.shutdown(wait=False)
