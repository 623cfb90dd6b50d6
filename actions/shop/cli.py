"""`python -m actions.shop seed|import`: create the demo shop, load a merchant export.

The demo's own command (it was `python -m bot shop`): the engine does not
import the demo shop, so the shop's tools live with it. Run it from the project
folder; the database comes from `--url`, else endpoints.yml `shop: url`, else
`sqlite:///shop.db`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

from actions.shop import DEFAULT_DB, load_shop_config
from actions.shop.base import ShopDataError, ShopError

PROG = "python -m actions.shop"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Demo shop data: seed a shop database, import a merchant export.")
    parser.add_argument("--log-level", default=os.environ.get("KEFU_LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING, ERROR")
    ssub = parser.add_subparsers(dest="shop_command", metavar="WHAT")
    seed = ssub.add_parser("seed", help="Generate the demo sports shop (default: shop.db).")
    seed.add_argument("--url", default=None, help="SQLAlchemy URL (default: endpoints.yml `shop: url` or sqlite:///shop.db)")
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed and day → same shop)")
    seed.add_argument("--small", action="store_true", help="a small shop (120 customers, 900 orders)")
    imp = ssub.add_parser("import", help="Load a merchant export (.jsonl, .json or .csv); idempotent.")
    imp.add_argument("file", help="export file; schema in docs/shop.md")
    imp.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    nlu = ssub.add_parser("nlu", help="Write NLU regexes/lookups from shop.yml (nlu_data/nlu/shop_generated.yml).")
    nlu.add_argument("--config", default=None, help="shop.yml to read (default: ./shop.yml or $KEFU_SHOP_CONFIG)")
    nlu.add_argument("--out", default=None, help="file to write (default: nlu_data/nlu/shop_generated.yml)")
    nlu.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 1 if not)")
    comp = ssub.add_parser("compensate", help="Issue a compensation coupon for a resolved complaint, within the role's limit.")
    comp.add_argument("customer_id", type=int)
    comp.add_argument("--amount", type=float, required=True, help="value in the shop's currency (shop.yml limits per role)")
    comp.add_argument("--role", required=True, help="agent | supervisor | admin (shop.yml coupons.compensation_limits)")
    comp.add_argument("--agent", required=True, help="who issues it (recorded with the coupon)")
    comp.add_argument("--case", required=True, help="the complaint/handoff id: one coupon per case")
    comp.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    pts = ssub.add_parser("points", help="Award points by a shop.yml rule (purchase, review, share), once per reference.")
    pts.add_argument("customer_id", type=int)
    pts.add_argument("kind", help="a rule of shop.yml `points: rules:`")
    pts.add_argument("--ref", required=True, help="order id, review id or share id (idempotency key)")
    pts.add_argument("--amount", type=float, default=0.0, help="amount paid (purchase rules)")
    pts.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    order = ssub.add_parser("order", help="The shop reports an order paid/shipped/delivered; purchase points follow "
                                          "(shop.yml points: rules: purchase), once per order.")
    order.add_argument("order_id")
    order.add_argument("status", choices=("paid", "shipped", "delivered"))
    order.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    stock = ssub.add_parser("stock", help="Set a product's stock (optionally one size/colour); back-in-stock notices follow.")
    stock.add_argument("sku")
    stock.add_argument("units", type=int)
    stock.add_argument("--size", default=None)
    stock.add_argument("--colour", default=None)
    stock.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    db = ssub.add_parser("db", help="The shop database's schema migrations (Alembic): `db upgrade|current`.")
    dsub = db.add_subparsers(dest="db_command", metavar="WHAT")
    up = dsub.add_parser("upgrade", help="Create or upgrade the shop's tables to the newest revision (rows kept).")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    up.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    cur = dsub.add_parser("current", help="The database's revision; exit code 3 when it is behind (a deploy gate).")
    cur.add_argument("--url", default=None, help="SQLAlchemy URL (default as for seed)")
    return parser


class UsageError(ShopError):
    """A command-line mistake: printed with its fix, exit status 1."""


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    config = load_shop_config()
    if config.get("type", "sql") != "sql":
        raise UsageError("endpoints.yml: `shop seed/import` write to a SQL database, but endpoints.yml `shop:` "
                         "is type http. Fix: pass --url sqlite:///shop.db (or a PostgreSQL URL)")
    return config.get("url") or f"sqlite:///{DEFAULT_DB}"


def run_shop(args: argparse.Namespace) -> int:
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
            raise UsageError(f"{args.file}: {e} Fix: see the import schema in docs/shop.md") from e
        print(f"Imported {args.file}: {report.inserted} inserted, {report.updated} updated, "
              f"{report.unchanged} unchanged, {len(report.rejected)} rejected, "
              f"{report.points_earned} purchase points earned")
        for line, reason in report.rejected:
            print(f"  {args.file}:{line}: {reason}")
        return 1 if report.rejected else 0
    if args.shop_command == "nlu":
        from pathlib import Path

        from actions.shop.config import load_shop_yml
        from actions.shop.nlu import write_or_check

        config = load_shop_yml(args.config)
        path, changed = write_or_check(config, Path.cwd(), Path(args.out) if args.out else None, check=args.check)
        if args.check:
            print(f"{path}: {'out of date with shop.yml; run `' + PROG + ' nlu`' if changed else 'up to date'}")
            return 1 if changed else 0
        print(f"{path}: {'written' if changed else 'unchanged'}")
        return 0
    if args.shop_command == "db":
        return _db_command(args)
    if args.shop_command in ("compensate", "points", "stock", "order"):
        import asyncio

        return asyncio.run(_store_command(args))
    print(f"usage: {PROG} {{seed,import,nlu,compensate,points,order,stock}} ...\n       {PROG} db {{upgrade,current}} [--url URL]")
    return 2


def _db_command(args: argparse.Namespace) -> int:
    from actions.shop import migrate
    from actions.shop.sql import make_engine

    if args.db_command not in ("upgrade", "current"):
        print(f"usage: {PROG} db {{upgrade,current}} [--url URL]")
        return 2
    url = _url(args)
    engine = make_engine(url)
    try:
        if args.db_command == "upgrade":
            result = migrate.ensure_schema(engine, args.revision)
            now = migrate.current(engine)
            print(f"shop       {now.current or '(none)':<16} {result}")
            return 0
        now = migrate.current(engine)
        print(f"shop       {now.current or '(none)':<16} {'up to date' if now.up_to_date else f'behind (newest {now.head})'}")
        return 0 if now.up_to_date else 3
    finally:
        engine.dispose()


async def _store_command(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from actions.shop import coupon_template_views
    from actions.shop.config import shop_config
    from actions.shop.loyalty import award, compensate, order_status_reported
    from actions.shop.sql import SqlShopStore

    store = SqlShopStore(_url(args))
    now = datetime.now(timezone.utc)
    try:
        store.sync_coupon_templates(coupon_template_views())
        if args.shop_command == "compensate":
            result = await compensate(store, shop_config(), args.customer_id, amount_cents=int(round(args.amount * 100)),
                                      role=args.role, agent=args.agent, case_id=args.case, now=now)
            if not result.ok:
                limit = shop_config().compensation_limits_cents.get(args.role)
                raise UsageError(f"compensation refused ({result.code}): role {args.role!r} may issue up to "
                                 f"{shop_config().money(limit) if limit is not None else 'nothing'}. "
                                 "Fix: a smaller amount, or a supervisor (shop.yml coupons.compensation_limits)")
            print(f"Coupon {result.coupon.code}: {result.coupon.title_en}, {shop_config().money(result.coupon.amount_cents)}"
                  f"{'' if result.new else ' (already issued for this case)'}")
        elif args.shop_command == "points":
            added = await award(store, shop_config(), args.customer_id, args.kind, ref=args.ref, now=now,
                                amount_cents=int(round(args.amount * 100)))
            print(f"Added {added} points" + ("" if added else " (already awarded for this reference, or capped today)"))
        elif args.shop_command == "order":
            change, added = await order_status_reported(store, shop_config(), args.order_id, args.status, now=now)
            if not change.ok:
                raise UsageError(f"order {args.order_id}: {change.code}. Fix: give an order id the shop has")
            print(f"Order {args.order_id}: {args.status}" + (" (already)" if change.code == "unchanged" else "")
                  + f"; {added} points earned")
        else:
            events = await store.set_stock(args.sku, args.units, size=args.size, colour=args.colour, now=now)
            print(f"Stock of {args.sku} set; {len(events)} back-in-stock notice(s) queued in the outbox")
        return 0
    finally:
        await store.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s - %(message)s")
    try:
        return run_shop(args)
    except ShopError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
