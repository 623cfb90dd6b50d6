"""One customer's data across kefu's stores, for export, erasure and retention.

A PIPL/GDPR request names a customer by whatever the shop knows them by (a customer id, a
phone, an openid); :meth:`PrivacyService.identities` widens that to every id kefu keys data
by: the shop's channel ids (``ports: erasure``), the ids the trigger profile and journeys
recorded, the conversations of the customer's handoffs, and conversations whose messages
carry the customer id in their metadata (a widget session bound to the customer). With
Customer 360 (``customers:``) the proven identities widen it further: the customer record a
value names, and every shop customer id, WeChat openid, widget and conversation linked to it.
The analytics store (``analytics:``) and the Customer 360 store are exported, erased and
purged with the others.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)

# Customer 360 identity kinds whose value is a shop customer id / a conversation (sender) id.
C360_CUSTOMER_KINDS = ("shop_customer",)
C360_SENDER_KINDS = ("wechat_openid", "widget", "conversation")

# Trigger-profile fields that hold a conversation id of the customer on some channel.
PROFILE_ID_FIELDS = ("wechat_openid", "openid", "sender_id", "session_id", "widget_session", "conversation_id")


def customer_ref(customer: str) -> str:
    """A stable reference for logs and audit lines that is not the id itself."""
    return "sha256:" + hashlib.sha256(str(customer).encode("utf-8")).hexdigest()[:12]


@dataclass
class Identities:
    """Every id one customer's data is stored under."""

    requested: str
    customer_ids: set[str] = field(default_factory=set)
    sender_ids: set[str] = field(default_factory=set)
    conversations: list[str] = field(default_factory=list)
    c360_ids: list[str] = field(default_factory=list)  # Customer 360 records (bot/customers)

    def as_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "customer_ids": sorted(self.customer_ids),
                "sender_ids": sorted(self.sender_ids), "conversations": list(self.conversations),
                "c360_ids": list(self.c360_ids)}

    def all_ids(self) -> list[str]:
        """Every customer and sender id (what the analytics store keys its rows by)."""
        return sorted(self.customer_ids | self.sender_ids | set(self.conversations))


class PrivacyService:
    """Export, erase and purge over the stores it is given (any may be None: not configured)."""

    def __init__(self, tracker_store: Any = None, handoff_store: Any = None, trigger_store: Any = None,
                 erasure: Any = None, clock: Callable[[], float] = time.time, owned: tuple[Any, ...] = (),
                 analytics_store: Any = None, customer_store: Any = None) -> None:
        """``analytics_store``: :class:`bot.analytics.store.AnalyticsStore`; ``customer_store``:
        :class:`bot.customers.store.CustomerStore` (synchronous: its calls run off the loop)."""
        self.analytics_store = analytics_store
        self.customer_store = customer_store
        self.tracker_store = tracker_store
        self.handoff_store = handoff_store
        self.trigger_store = trigger_store
        self.erasure = erasure
        self.clock = clock
        self._owned = owned  # what close() closes (not an agent's live tracker store)

    async def identities(self, customer: str) -> Identities:
        ids = Identities(requested=customer, customer_ids={customer}, sender_ids={customer})
        if self.erasure is not None:
            found = await self.erasure.identities(customer)
            if found:
                if found.get("customer_id") is not None:
                    ids.customer_ids.add(str(found["customer_id"]))
                ids.sender_ids.update(str(s) for s in found.get("sender_ids") or [])
        if self.customer_store is not None:
            await self._c360_identities(ids)
        if self.trigger_store is not None:
            for customer_id in sorted(ids.customer_ids):
                profile = await self.trigger_store.get_profile(customer_id)
                ids.sender_ids.update(str(profile[k]) for k in PROFILE_ID_FIELDS if profile.get(k))
                for instance in await self.trigger_store.instances_for(customer_id):
                    ids.sender_ids.add(instance.sender_id)
        if self.handoff_store is not None:
            for customer_id in sorted(ids.customer_ids):
                for record in await self.handoff_store.handoffs_of([], customer_id):
                    ids.sender_ids.add(record["conversation_id"])
        if self.tracker_store is not None:
            ids.conversations = await self.tracker_store.conversations_of(ids.sender_ids, ids.customer_ids)
        return ids

    async def _c360(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(conn)`` in one Customer 360 transaction, off the event loop."""
        from bot.shared.concurrency import run_blocking

        def run() -> Any:
            with self.customer_store.transaction() as conn:
                return work(conn)

        return await run_blocking(run)

    async def _c360_identities(self, ids: Identities) -> None:
        """The Customer 360 records any known id names, and every id proven to belong to them."""
        def work(conn: Any) -> tuple[list[str], list[dict[str, Any]]]:
            records: set[str] = set()
            for value in sorted(ids.customer_ids | ids.sender_ids):
                records.update(self.customer_store.resolve(conn, value))
            linked = [row for cid in sorted(records) for row in self.customer_store.identities_of(conn, cid)]
            return sorted(records), linked

        records, linked = await self._c360(work)
        ids.c360_ids = records
        for row in linked:
            if row["kind"] in C360_CUSTOMER_KINDS:
                ids.customer_ids.add(str(row["value"]))
            elif row["kind"] in C360_SENDER_KINDS:
                ids.sender_ids.add(str(row["value"]))

    async def export(self, customer: str) -> dict[str, Any]:
        """Everything kefu (and the project's erasure port) holds about ``customer``, JSON-ready."""
        ids = await self.identities(customer)
        conversation_ids = sorted(set(ids.conversations) | ids.sender_ids)
        out: dict[str, Any] = {"customer": customer, "exported_at": self.clock(), "identities": ids.as_dict()}
        out["conversations"] = (await self.tracker_store.export_conversations(ids.conversations)
                                if self.tracker_store is not None else {})
        handoffs: list[dict[str, Any]] = []
        if self.handoff_store is not None:
            seen: set[str] = set()
            for customer_id in sorted(ids.customer_ids):
                for record in await self.handoff_store.export_customer(conversation_ids, customer_id):
                    if record["id"] not in seen:
                        seen.add(record["id"])
                        handoffs.append(record)
        out["handoffs"] = handoffs
        out["triggers"] = ({cid: await self.trigger_store.export_customer(cid) for cid in sorted(ids.customer_ids)}
                           if self.trigger_store is not None else {})
        out["analytics"] = (await self.analytics_store.export_customer(ids.all_ids())
                            if self.analytics_store is not None else None)
        out["customer_360"] = (await self._c360(lambda conn: self.customer_store.export_customers(conn, ids.c360_ids))
                               if self.customer_store is not None else None)
        out["shop"] = await self.erasure.export(customer) if self.erasure is not None else None
        return out

    async def erase(self, customer: str) -> dict[str, Any]:
        """Erase ``customer`` everywhere; returns counts only (safe to log and audit)."""
        ids = await self.identities(customer)
        conversation_ids = sorted(set(ids.conversations) | ids.sender_ids)
        counts: dict[str, Any] = {"customer_ref": customer_ref(customer)}
        if self.tracker_store is not None:
            counts["conversations"] = await self.tracker_store.erase_conversations(ids.conversations)
        if self.handoff_store is not None:
            counts["handoffs"] = 0
            for customer_id in sorted(ids.customer_ids):
                counts["handoffs"] += await self.handoff_store.erase_customer(conversation_ids, customer_id)
        if self.trigger_store is not None:
            counts["triggers"] = {cid: await self.trigger_store.erase_customer(cid, self.clock())
                                  for cid in sorted(ids.customer_ids)}
            counts["triggers"] = _merge(counts["triggers"].values())
        if self.analytics_store is not None:
            counts["analytics"] = await self.analytics_store.erase_customer(ids.all_ids())
        if self.customer_store is not None:
            counts["customer_360"] = await self._c360(
                lambda conn: self.customer_store.erase_customers(conn, ids.c360_ids))
        if self.erasure is not None:  # last: it is where the identities came from
            counts["shop"] = await self.erasure.erase(customer)
        return counts

    async def purge(self, older_than_s: float, batch: int = 500, dry_run: bool = False) -> dict[str, int]:
        """Delete conversations idle for ``older_than_s``, closed handoffs and trigger events older
        than that; ``dry_run`` only counts. Returns counts per store."""
        cutoff = self.clock() - older_than_s
        counts: dict[str, int] = {}
        if self.tracker_store is not None:
            counts["conversations"] = await self.tracker_store.purge_idle(cutoff, batch=batch, dry_run=dry_run)
        if self.handoff_store is not None:
            counts["handoffs"] = await self.handoff_store.purge_closed(cutoff, batch=batch, dry_run=dry_run)
        if self.trigger_store is not None:
            counts["trigger_events"] = await self.trigger_store.purge_events(cutoff, batch=batch, dry_run=dry_run)
        if self.analytics_store is not None:
            found = await self.analytics_store.purge_before(cutoff, batch=batch, dry_run=dry_run)
            counts.update({f"analytics_{name}": n for name, n in found.items()})
        if self.customer_store is not None:
            counts["customers"] = await self._purge_c360(cutoff, batch, dry_run)
        return counts

    async def _purge_c360(self, cutoff: float, batch: int, dry_run: bool) -> int:
        """Customer 360 records with no event since ``cutoff``: the record, its identities, timeline,
        health history and alerts (as an erasure)."""
        if dry_run:
            return len(await self._c360(lambda conn: self.customer_store.idle_since(conn, cutoff, 1 << 30)))
        total = 0
        while True:
            def work(conn: Any) -> int:
                idle = self.customer_store.idle_since(conn, cutoff, batch)
                records = sorted({r for cid in idle for r in self.customer_store.resolve(conn, cid)})
                self.customer_store.erase_customers(conn, records)
                return len(idle)

            done = await self._c360(work)
            total += done
            if done < batch:
                return total

    async def close(self) -> None:
        for resource in self._owned:
            try:
                await resource.close()
            except Exception:  # one store's shutdown must not hide the others'
                logger.exception("Closing %s failed", type(resource).__name__)


def _merge(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + int(value)
    return total


# ---------------------------------------------------------------------- building from a project
def _rooted(url: str, root: Path | None) -> str:
    """A relative SQLite path taken from the project folder (the server runs there)."""
    if root is not None and url.startswith("sqlite") and ":///" in url:
        scheme, path = url.split(":///", 1)
        if path and not path.startswith("/") and not path.startswith(":memory:"):
            return f"{scheme}:///{root / path}"
    return url


def handoff_store_for(settings: Any) -> Any:
    """The handoff store the project configures (``handoff: store_url``), or None without ``handoff:``."""
    section = settings.section("handoff")
    if section is None:
        return None
    if hasattr(section, "as_dict"):
        section = section.as_dict()
    from bot.handoff.store import SQLHandoffStore

    url = str((section or {}).get("store_url") or "sqlite+aiosqlite:///handoff.db")
    return SQLHandoffStore(_rooted(url, settings.root))


def trigger_store_for(settings: Any) -> Any:
    """The trigger store as ``bot.triggers.create_trigger_engine`` builds it, or None without triggers.yml."""
    from bot.triggers import REDIS_OPTIONS, REDIS_SCHEMES, triggers_settings
    from bot.triggers.store import DEFAULT_URL, SQLTriggerStore

    if settings.root is None:
        return None
    options = triggers_settings(settings.endpoints)
    if not (Path(settings.root) / str(options.get("file", "triggers.yml"))).exists():
        return None
    store_url = str(options.get("store_url") or DEFAULT_URL)
    if store_url.startswith(REDIS_SCHEMES) or str(options.get("store", "sql")).lower() == "redis":
        from bot.triggers.redis_store import RedisTriggerStore

        url = store_url if store_url.startswith(REDIS_SCHEMES) else str(options.get("url") or "localhost")
        return RedisTriggerStore(url, prefix=str(options.get("prefix", "kefu:triggers")),
                                 **{k: v for k, v in options.items() if k in REDIS_OPTIONS})
    return SQLTriggerStore(_rooted(store_url, Path(settings.root)))


def service_for_project(settings: Any, tracker_store: Any = None) -> PrivacyService:
    """A service over the project's stores; ``tracker_store`` None builds one from endpoints.yml."""
    from bot.ports import load_configured_port

    owned: list[Any] = []
    if tracker_store is None:
        from bot.stores.tracker_store import create_tracker_store

        config = getattr(settings.endpoints, "tracker_store", None)
        if config is not None and getattr(config, "url", None) and str(config.url).startswith("sqlite"):
            import dataclasses

            config = dataclasses.replace(config, url=_rooted(str(config.url), settings.root))
        tracker_store = create_tracker_store(config)
        owned.append(tracker_store)
    handoff_store = handoff_store_for(settings)
    trigger_store = trigger_store_for(settings)
    erasure = load_configured_port(settings, "erasure") if settings.root is not None else None
    analytics_store = analytics_store_for(settings)
    customer_store = customer_store_for(settings)
    owned.extend(x for x in (handoff_store, trigger_store, erasure, analytics_store) if x is not None)
    if customer_store is not None:
        owned.append(_SyncClosing(customer_store))
    return PrivacyService(tracker_store, handoff_store, trigger_store, erasure, owned=tuple(owned),
                          analytics_store=analytics_store, customer_store=customer_store)


class _SyncClosing:
    """An async ``close()`` for a synchronous store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def close(self) -> None:
        self.store.close()


def analytics_store_for(settings: Any) -> Any:
    """The analytics store as the analytics feature opens it (``analytics:`` section), or None."""
    if settings.root is None or settings.section("analytics") is None:
        return None
    from bot.analytics.config import AnalyticsConfig
    from bot.analytics.store import AnalyticsStore

    return _OpenOnUse(AnalyticsStore(AnalyticsConfig.from_project(settings.root).database_url(settings.root)))


def customer_store_for(settings: Any) -> Any:
    """The Customer 360 store as the customers feature opens it (``customers:``, customers.yml or
    health.yml), or None."""
    root = settings.root
    if root is None:
        return None
    section = settings.section("customers")
    if section is None and not (Path(root) / "customers.yml").is_file() and not (Path(root) / "health.yml").is_file():
        return None
    if hasattr(section, "as_dict"):
        section = section.as_dict()
    from bot.customers.store import CustomerStore

    url = (section or {}).get("url") if isinstance(section, dict) else None
    return CustomerStore(str(url or f"sqlite:///{(Path(root) / 'customers.db').as_posix()}"))


class _OpenOnUse:
    """The analytics store, opened (tables created) on its first use."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def export_customer(self, ids: list[str]) -> dict[str, Any]:
        await self.store.open()
        return await self.store.export_customer(ids)

    async def erase_customer(self, ids: list[str]) -> dict[str, int]:
        await self.store.open()
        return await self.store.erase_customer(ids)

    async def purge_before(self, cutoff: float, batch: int = 500, dry_run: bool = False) -> dict[str, int]:
        await self.store.open()
        return await self.store.purge_before(cutoff, batch=batch, dry_run=dry_run)

    async def close(self) -> None:
        await self.store.close()
