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
              f"{report.unchanged} unchanged, {len(report.rejected)} rejected")
        for line, reason in report.rejected:
            print(f"  {args.file}:{line}: {reason}")
        return 1 if report.rejected else 0
    print(f"usage: {PROG} {{seed,import}} ...")
    return 2


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
