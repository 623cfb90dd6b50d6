"""``python -m bot db upgrade|current|history|stamp|revision``: the SQL stores' schema migrations by hand.

Stores migrate themselves on start (``bot.stores.migrate.ensure_schema``); this command is
for operators who migrate as a deploy step (``KEFU_DB_MIGRATE=check`` on the servers), for
looking at where a database stands, and for adopting a schema made by hand (``stamp``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from bot.shared.exceptions import ConfigError

URL_ENV = "KEFU_DATABASE_URL"


def add_db_parser(sub: Any) -> None:
    """``db`` on the CLI's sub-command set (``bot/cli.py``)."""
    p = sub.add_parser("db", help="SQL store schema migrations (Alembic): `db upgrade|current|history|stamp`.")
    dsub = p.add_subparsers(dest="db_command", metavar="WHAT")

    def with_url(q: argparse.ArgumentParser, endpoints: bool = False) -> None:
        q.add_argument("--url", default=None,
                       help=f"SQLAlchemy URL of the database (default: ${URL_ENV}), e.g. "
                            "postgresql://kefu:PASS@db/kefu or sqlite:///handoff.db")
        if endpoints:
            q.add_argument("--endpoints", default=None, metavar="FILE",
                           help="instead of --url: the databases an endpoints.yml names (tracker_store of "
                                "type sql with the workbench's state, audit), each with its store's tables; ${ENV} is expanded")

    def with_stores(q: argparse.ArgumentParser) -> None:
        q.add_argument("--store", action="append", default=None, metavar="STORE",
                       help="only this store's tables (repeatable): tracker, audit, handoff, triggers, ... "
                            "(default: all; a SQLite file per store wants the store that lives in it)")

    u = dsub.add_parser("upgrade", help="Create or upgrade the stores' tables to the newest revision (data kept).")
    with_url(u, endpoints=True)
    with_stores(u)
    u.add_argument("revision", nargs="?", default="head", help="target revision (default: head of each store)")
    u.add_argument("--table", action="append", default=None, metavar="DEFAULT=NAME",
                   help="a store configured with another table name, e.g. events=conversations")
    c = dsub.add_parser("current", help="Each store's revision in the database, and whether it is the newest.")
    with_url(c, endpoints=True)
    with_stores(c)
    h = dsub.add_parser("history", help="The revisions of each store, oldest first.")
    with_stores(h)
    r = dsub.add_parser("revision", help="Developers: write the next revision file of a store (or a new store's first).")
    r.add_argument("--store", required=True, help="the store's branch, e.g. handoff (or a new one with --new-store)")
    r.add_argument("-m", "--message", required=True, help="what the revision does, e.g. 'handoff: add a tags index'")
    r.add_argument("--new-store", action="store_true", help="start a new branch for a new store's tables")
    s = dsub.add_parser("stamp", help="Record a revision as applied without running it (a schema made by hand).")
    with_url(s)
    s.add_argument("revision", help="e.g. handoff_0002, or handoff@head")
    s.add_argument("--purge", action="store_true", help="forget every recorded revision first")


def _url(args: argparse.Namespace) -> str:
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        raise ConfigError("No database URL.", "command line",
                          fix=f"Pass --url postgresql://USER:PASS@HOST/DB (or sqlite:///FILE.db), or set {URL_ENV}.")
    return str(url)


def endpoint_targets(path: str) -> list[tuple[str, str, dict[str, str]]]:
    """``(store, url, tables)`` for each SQL store an endpoints.yml configures (its URL as the server builds it)."""
    from pathlib import Path

    from bot.shared.endpoints import load_endpoints
    from bot.stores._common import endpoint_type
    from bot.stores.audit import audit_url
    from bot.stores.tracker_store import _create_sql

    if not Path(path).is_file():
        raise ConfigError(f"No endpoints file at '{path}'.", path, fix="Pass the project's endpoints.yml.")
    endpoints = load_endpoints(path)
    targets: list[tuple[str, str, dict[str, str]]] = []
    tracker = endpoints.tracker_store
    if tracker is not None and (endpoint_type(tracker) or "").lower() == "sql":
        store = _create_sql(tracker, None, None)  # builds the engine only; nothing connects
        targets.append(("tracker", store.url, {"events": store.events.name}))
        targets.append(("workbench", store.url, {}))  # the workbench's state lives there unless workbench.state_url
    targets.append(("audit", audit_url(endpoints.extra.get("audit"), Path(path).resolve().parent), {}))
    return targets


def _masked(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _tables(pairs: Sequence[str] | None) -> dict[str, str]:
    tables: dict[str, str] = {}
    for pair in pairs or []:
        default, sep, name = pair.partition("=")
        if not sep or not default or not name:
            raise ConfigError(f"--table {pair!r} is not DEFAULT=NAME.", "command line",
                              fix="Write e.g. --table events=conversations.")
        tables[default] = name
    return tables


def _print_states(states: Sequence[Any]) -> None:
    for state in states:
        mark = "up to date" if state.up_to_date else f"behind (newest {state.head})"
        print(f"{state.store:<10} {state.current or '(none)':<16} {mark}")


def run_db_command(args: argparse.Namespace) -> int:
    from bot.stores import migrate

    command = getattr(args, "db_command", None)
    if command in ("upgrade", "current") and args.endpoints:
        if args.url or args.store:
            raise ConfigError("--endpoints names the databases and stores itself.", "command line",
                              fix="Use either --endpoints FILE or --url URL [--store S].")
        behind = False
        for store, url, tables in endpoint_targets(args.endpoints):
            print(f"{store}: {_masked(url)}")
            if command == "upgrade":
                states = migrate.upgrade(url, [store], args.revision, {**tables, **_tables(args.table)})
            else:
                states = migrate.current(url, [store])
            behind = behind or not all(s.up_to_date for s in states)
            _print_states(states)
        return 3 if behind and command == "current" else 0
    if command == "upgrade":
        _print_states(migrate.upgrade(_url(args), args.store, args.revision, _tables(args.table)))
        return 0
    if command == "current":
        states = migrate.current(_url(args), args.store)
        _print_states(states)
        return 0 if all(s.up_to_date for s in states) else 3  # 3: a deploy script can tell "needs upgrade"
    if command == "history":
        for store, revision, down, message in migrate.history(args.store):
            print(f"{store:<10} {down or '(base)':>16} -> {revision:<16} {message}")
        return 0
    if command == "revision":
        print(f"Wrote {migrate.new_revision(args.store, args.message, new_store=args.new_store)}")
        return 0
    if command == "stamp":
        _print_states(migrate.stamp(_url(args), args.revision, purge=args.purge))
        return 0
    print("Use `python -m bot db upgrade|current|history|stamp` (see --help).", file=sys.stderr)
    return 2
