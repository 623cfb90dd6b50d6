"""`python -m bot shop seed|import`: create the demo shop, load a merchant export.

Wire into bot/cli.py with `add_shop_parser(sub)` and `"shop": run_shop`.
`forward_outbox` relays the shop's behaviour events (written by the actions in
the rasa_sdk process) onto kefu's event broker; `OutboxRelay` runs it
periodically inside the server (started by bot/server/run.py `build_app`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)


def add_shop_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("shop", help="Demo shop data: seed a shop database, import a merchant export.")
    ssub = p.add_subparsers(dest="shop_command", metavar="WHAT")
    seed = ssub.add_parser("seed", help="Generate the demo sports shop (default: shop.db).")
    seed.add_argument("--url", default=None, help="SQLAlchemy URL (default: endpoints.yml `shop: url` or sqlite:///shop.db)")
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed and day → same shop)")
    seed.add_argument("--small", action="store_true", help="a small shop (120 customers, 900 orders)")
    imp = ssub.add_parser("import", help="Load a merchant export (.jsonl, .json or .csv); idempotent.")
    imp.add_argument("file", help="export file; schema in docs/shop.md")
    imp.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    return p


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    from actions.shop import DEFAULT_DB, load_shop_config

    config = load_shop_config()
    if config.get("type", "sql") != "sql":
        raise ConfigError("`shop seed/import` write to a SQL database, but endpoints.yml `shop:` is type http.",
                          "endpoints.yml", None, "pass --url sqlite:///shop.db (or a PostgreSQL URL)")
    return config.get("url") or f"sqlite:///{DEFAULT_DB}"


def run_shop(args: argparse.Namespace) -> int:
    from actions.shop.base import ShopDataError

    if args.shop_command == "seed":
        from actions.shop.seed import FULL, SMALL, seed_shop

        report = seed_shop(_url(args), seed=args.seed, size=SMALL if args.small else FULL)
        print(f"Seeded {report.products} products, {report.customers} customers, {report.orders} orders "
              f"in {report.seconds:.1f}s: {json.dumps(report.statuses, ensure_ascii=False)}")
        return 0
    if args.shop_command == "import":
        from actions.shop.importer import import_file

        try:
            report = import_file(_url(args), args.file)
        except ShopDataError as e:
            raise ConfigError(str(e), args.file, None, "see the import schema in docs/shop.md") from e
        print(f"Imported {args.file}: {report.inserted} inserted, {report.updated} updated, "
              f"{report.unchanged} unchanged, {len(report.rejected)} rejected")
        for line, reason in report.rejected:
            print(f"  {args.file}:{line}: {reason}")
        return 1 if report.rejected else 0
    print("usage: python -m bot shop {seed,import} ...")
    return 2


async def forward_outbox(broker: Any, store: Any = None, *, batch: int = 100) -> int:
    """Publish unpublished outbox events to `broker` (bot/stores/event_broker.py), then mark them.

    At-least-once: an event is marked only after `broker.publish` returned, so a
    crash in between republishes it (consumers dedupe on `outbox_id`).
    """
    from actions.shop import get_shop

    store = store or get_shop()
    if not hasattr(store, "pending_outbox"):
        return 0  # the HTTP adapter: the merchant publishes its own events
    sent = 0
    while True:
        events = await asyncio.to_thread(store.pending_outbox, batch)
        if not events:
            return sent
        for event in events:
            await broker.publish(event)
        await asyncio.to_thread(store.mark_published, [e["outbox_id"] for e in events])
        sent += len(events)


DEFAULT_OUTBOX_INTERVAL_S = 2.0
MAX_OUTBOX_BACKOFF_S = 60.0


class OutboxRelay:
    """Relays the shop outbox to the event broker every `interval` seconds, in the server's loop.

    Errors (database locked or missing, broker down) are logged and retried with
    a doubling back-off up to a minute; nothing escapes into the worker. Several
    workers may relay the same outbox: delivery is at-least-once either way and
    consumers dedupe on `outbox_id`.
    """

    def __init__(self, broker: Any, store_factory: Any, *, interval: float = DEFAULT_OUTBOX_INTERVAL_S) -> None:
        self.broker = broker
        self.store_factory = store_factory  # () -> store, or None while the shop database does not exist
        self.interval = interval
        self.store: Any = None
        self.forwarded = 0
        self.failures = 0
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(), name="kefu-shop-outbox")

    async def relay_once(self) -> int:
        if self.store is None:
            self.store = self.store_factory()
            if self.store is None:
                return 0
        sent = await forward_outbox(self.broker, self.store)
        if sent:
            logger.debug("Forwarded %d shop event(s) to the event broker.", sent)
        self.forwarded += sent
        return sent

    async def run(self) -> None:
        delay = self.interval
        while not self._stop.is_set():
            try:
                await self.relay_once()
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the relay must never take the worker down
                self.failures += 1
                delay = min(max(delay, self.interval) * 2, MAX_OUTBOX_BACKOFF_S)
                logger.warning("Shop outbox relay failed (%s: %s); retrying in %.1fs.", type(e).__name__, e, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def stop(self) -> None:
        """Stop after the current relay (if any) and close the store."""
        self._stop.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, timeout=10)
            except (TimeoutError, asyncio.TimeoutError):
                self.task.cancel()
                logger.warning("Shop outbox relay did not stop within 10s; cancelled.")
            except Exception:  # noqa: BLE001 - run() logs its own errors
                logger.exception("Shop outbox relay ended with an error")
        if self.store is not None:
            await self.store.close()


def create_outbox_relay(broker: Any, project_root: str | Path) -> OutboxRelay | None:
    """The relay for a project with a SQL shop data layer, or None.

    A project has one when endpoints.yml has a `shop:` section (or KEFU_SHOP_URL
    is set) or it ships the `actions/shop` package (the demo: `sqlite:///shop.db`).
    `shop: outbox_interval` (seconds; 0 turns it off) or KEFU_SHOP_OUTBOX_INTERVAL
    sets the interval. The HTTP adapter has no outbox: the merchant publishes.
    """
    import os

    from actions.shop import DEFAULT_DB, load_shop_config

    root = Path(project_root)
    if broker is None:
        return None
    config = load_shop_config(root / "endpoints.yml")
    if not config and not (root / "actions" / "shop").is_dir():
        return None
    if (config.get("type") or "sql").lower() != "sql":
        logger.info("Shop data layer is type %s: no outbox to relay.", config.get("type"))
        return None
    raw = os.environ.get("KEFU_SHOP_OUTBOX_INTERVAL", config.get("outbox_interval", DEFAULT_OUTBOX_INTERVAL_S))
    try:
        interval = float(raw if raw is not None else DEFAULT_OUTBOX_INTERVAL_S)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"`shop: outbox_interval` must be a number of seconds, not {raw!r}.",
                          str(root / "endpoints.yml"), None, "write e.g. `outbox_interval: 2.0` (0 turns it off)") from e
    if interval <= 0:
        return None
    url = config.get("url") or f"sqlite:///{DEFAULT_DB}"
    path: Path | None = None
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        if not path.is_absolute():
            path = root / path
        url = f"sqlite:///{path}"

    def store_factory() -> Any:
        from actions.shop.sql import SqlShopStore

        if path is not None and not path.exists():
            return None  # not seeded yet: the actions create it on first use
        return SqlShopStore(url, create=False)

    return OutboxRelay(broker, store_factory, interval=interval)
