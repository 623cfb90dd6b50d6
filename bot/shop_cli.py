"""`python -m bot shop seed|import`: create the demo shop, load a merchant export.

Wire into bot/cli.py with `add_shop_parser(sub)` and `"shop": run_shop`.
`forward_outbox` relays the shop's behaviour events (written by the actions in
the rasa_sdk process) onto kefu's event broker.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
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
