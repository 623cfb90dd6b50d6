"""Order verification attempts, limited per order and per phone across conversations.

The per-conversation count (`verify_attempts`, three tries) stops nobody who opens a new
chat for each guess: a stranger with an order id could try last-4 digits forever, one
conversation (or REST sender id) at a time. So failures are also counted per order id and
per phone in a store every conversation and worker shares: a table in the shop database
(`verification_failures`, by default the shop's own SQL URL) or Redis. `MAX_FAILURES`
failures within `WINDOW` lock that order/phone ("too many attempts, try later"); a success
resets its counters.

Configured by endpoints.yml `shop:` keys (docs/shop.md):

    shop:
      attempts_url: redis://127.0.0.1:6379/0   # or any SQLAlchemy URL; default: the shop's sql url
      attempts_max: 5                          # failures per order / per phone ...
      attempts_window: 3600                    # ... within this many seconds
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional, Protocol, Sequence

from actions.shop.base import ShopDataError, ShopUnavailable

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_FAILURES", "WINDOW", "AttemptStore", "RedisAttemptStore", "SqlAttemptStore", "Subject",
    "VerificationLimiter", "configure_limiter", "get_limiter", "limiter_from_config",
]

MAX_FAILURES = 5
WINDOW = timedelta(hours=1)
DEFAULT_HTTP_SHOP_ATTEMPTS_URL = "sqlite:///verification_attempts.db"


@dataclass(frozen=True)
class Subject:
    """What a failure counts against: ``("order", "E2026…")`` or ``("phone", "138…")``, hashed."""

    kind: str
    digest: str

    @classmethod
    def of(cls, kind: str, value: str) -> "Subject":
        return cls(kind, hashlib.sha256(f"{kind}:{value}".encode("utf-8")).hexdigest())


class AttemptStore(Protocol):
    """Failure counts shared by every conversation and worker."""

    async def count(self, subject: Subject, since: datetime) -> int: ...

    async def record(self, subjects: Sequence[Subject], at: datetime, window: timedelta) -> None: ...

    async def reset(self, subjects: Sequence[Subject]) -> None: ...

    async def close(self) -> None: ...


class SqlAttemptStore:
    """The counts in a table of the shop database (SQLAlchemy, any URL)."""

    def __init__(self, url: str, *, timeout: float = 2.0, engine: Any = None) -> None:
        from actions.shop.sql import create_schema, make_engine

        self.url = url
        self.timeout = timeout
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else make_engine(url)
        create_schema(self.engine)  # adds the table to a shop database created before it existed

    async def _run(self, work: Any, what: str) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return await asyncio.wait_for(asyncio.to_thread(work), self.timeout)
        except (TimeoutError, asyncio.TimeoutError, SQLAlchemyError) as e:
            raise ShopUnavailable(
                f"Verification attempt store failed on '{what}': {type(e).__name__}. "
                "Check `shop: attempts_url` (or `shop: url`) in endpoints.yml."
            ) from e

    async def count(self, subject: Subject, since: datetime) -> int:
        from sqlalchemy import func, select

        from actions.shop.models import VerificationFailure as F

        def work() -> int:
            with self.engine.connect() as c:
                return int(c.execute(
                    select(func.count()).select_from(F).where(
                        F.kind == subject.kind, F.subject == subject.digest, F.failed_at >= since)
                ).scalar_one())

        return await self._run(work, "count failures")

    async def record(self, subjects: Sequence[Subject], at: datetime, window: timedelta) -> None:
        from sqlalchemy import delete, insert

        from actions.shop.models import VerificationFailure as F

        def work() -> None:
            with self.engine.begin() as c:
                c.execute(insert(F), [{"kind": s.kind, "subject": s.digest, "failed_at": at} for s in subjects])
                c.execute(delete(F).where(F.failed_at < at - window))  # keep the table small

        await self._run(work, "record failure")

    async def reset(self, subjects: Sequence[Subject]) -> None:
        from sqlalchemy import delete

        from actions.shop.models import VerificationFailure as F

        def work() -> None:
            with self.engine.begin() as c:
                for s in subjects:
                    c.execute(delete(F).where(F.kind == s.kind, F.subject == s.digest))

        await self._run(work, "reset failures")

    async def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


class RedisAttemptStore:
    """The counts in Redis: one sorted set of failure times per subject, expiring with the window."""

    def __init__(self, url: str, *, prefix: str = "kefu:verify") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self._client = aioredis.from_url(url)
        self._seq = 0

    def key(self, subject: Subject) -> str:
        return f"{self.prefix}:{{{subject.kind}:{subject.digest}}}"

    async def count(self, subject: Subject, since: datetime) -> int:
        return int(await self._client.zcount(self.key(subject), since.timestamp(), "+inf"))

    async def record(self, subjects: Sequence[Subject], at: datetime, window: timedelta) -> None:
        for s in subjects:  # one key per call: Redis Cluster safe
            self._seq += 1
            member = f"{at.timestamp()}:{time.time_ns()}:{self._seq}"
            key = self.key(s)
            pipe = self._client.pipeline(transaction=True)
            pipe.zadd(key, {member: at.timestamp()})
            pipe.zremrangebyscore(key, "-inf", (at - window).timestamp())
            pipe.expire(key, int(window.total_seconds()) + 60)
            await pipe.execute()

    async def reset(self, subjects: Sequence[Subject]) -> None:
        for s in subjects:
            await self._client.delete(self.key(s))

    async def close(self) -> None:
        await self._client.aclose()


class VerificationLimiter:
    """Decides whether an order/phone may be verified now, and counts the failures."""

    def __init__(self, store: AttemptStore, *, max_failures: int = MAX_FAILURES, window: timedelta = WINDOW) -> None:
        self.store = store
        self.max_failures = max_failures
        self.window = window

    @staticmethod
    def _subjects(order_id: Optional[str], phone: Optional[str]) -> list[Subject]:
        subjects = []
        if order_id:
            subjects.append(Subject.of("order", order_id))
        if phone:
            subjects.append(Subject.of("phone", phone))
        return subjects

    async def locked(self, *, now: datetime, order_id: Optional[str] = None, phone: Optional[str] = None) -> bool:
        """True when the order or the phone had `max_failures` failures within the window."""
        since = now - self.window
        for subject in self._subjects(order_id, phone):
            if await self.store.count(subject, since) >= self.max_failures:
                return True
        return False

    async def failed(self, *, now: datetime, order_id: Optional[str] = None, phone: Optional[str] = None) -> bool:
        """Count one failure for the order and the phone; True when that locks either."""
        subjects = self._subjects(order_id, phone)
        if subjects:
            await self.store.record(subjects, now, self.window)
        return await self.locked(now=now, order_id=order_id, phone=phone)

    async def succeeded(self, *, order_id: Optional[str] = None, phone: Optional[str] = None) -> None:
        """A verification passed: its order's and phone's failures are forgotten."""
        subjects = self._subjects(order_id, phone)
        if subjects:
            await self.store.reset(subjects)

    async def close(self) -> None:
        await self.store.close()


def _limits(config: dict[str, Any]) -> tuple[int, timedelta]:
    try:
        max_failures = int(config.get("attempts_max") or MAX_FAILURES)
        window = timedelta(seconds=float(config.get("attempts_window") or WINDOW.total_seconds()))
    except (TypeError, ValueError) as e:
        raise ShopDataError(
            "endpoints.yml `shop: attempts_max` must be an integer and `attempts_window` a number of seconds."
        ) from e
    if max_failures < 1 or window.total_seconds() <= 0:
        raise ShopDataError("endpoints.yml `shop: attempts_max` and `attempts_window` must be positive.")
    return max_failures, window


def limiter_from_config(config: dict[str, Any]) -> VerificationLimiter:
    """The limiter a `shop:` section describes (see the module docstring)."""
    url = config.get("attempts_url")
    if not url:
        kind = (config.get("type") or "sql").lower()
        shop_url = config.get("url") or "sqlite:///shop.db"
        url = shop_url if kind == "sql" else DEFAULT_HTTP_SHOP_ATTEMPTS_URL
    max_failures, window = _limits(config)
    store: AttemptStore
    if str(url).startswith(("redis://", "rediss://", "unix://")):
        store = RedisAttemptStore(str(url))
    else:
        store = SqlAttemptStore(str(url), timeout=float(config.get("timeout") or 2.0))
    return VerificationLimiter(store, max_failures=max_failures, window=window)


_configured: Optional[VerificationLimiter] = None
_built: Optional[tuple[Any, VerificationLimiter]] = None  # (the shop it was built for, limiter)
_lock = threading.Lock()


def get_limiter() -> VerificationLimiter:
    """The process-wide limiter: an installed one, else built from endpoints.yml's `shop:`.

    Without `attempts_url` a SQL shop's own database (its engine) holds the counts, so a
    limiter follows the shop `get_shop()` returns (tests install private shops).
    """
    global _built
    from actions.shop import get_shop, load_shop_config
    from actions.shop.sql import SqlShopStore

    with _lock:
        if _configured is not None:
            return _configured
    shop = get_shop()
    with _lock:
        if _built is not None and _built[0] is shop:
            return _built[1]
        config = load_shop_config()
        if not config.get("attempts_url") and isinstance(shop, SqlShopStore):
            max_failures, window = _limits(config)
            store = SqlAttemptStore(shop.url, timeout=shop.timeout, engine=shop.engine)
            limiter = VerificationLimiter(store, max_failures=max_failures, window=window)
        else:
            limiter = limiter_from_config(config)
        _built = (shop, limiter)
        return limiter


def configure_limiter(limiter: Optional[VerificationLimiter]) -> None:
    """Install a limiter (tests, embedding apps); None goes back to the configured one."""
    global _configured
    with _lock:
        _configured = limiter
