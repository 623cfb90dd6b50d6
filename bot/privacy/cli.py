"""``python -m bot data export|erase|purge``: PIPL/GDPR requests and retention from a terminal.

Runs against the project's stores directly (endpoints.yml, config.yml, triggers.yml of
``--root``), so it works while the server is down; on SQLite it shares the files with a
running server (WAL). Every export and erase is audited like the HTTP routes.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("export", "erase", "purge")


def add_data_privacy_parsers(sub: Any) -> None:
    """The privacy sub-commands under ``data`` (``sub`` is ``data``'s sub-parser factory)."""
    p = sub.add_parser("export", help="Export everything stored about one customer as JSON (PIPL/GDPR access).")
    p.add_argument("--customer", required=True, help="customer id, phone or channel id (openid, session id)")
    p.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    p = sub.add_parser("erase", help="Erase one customer across conversations, handoffs, triggers and the shop.")
    p.add_argument("--customer", required=True, help="customer id, phone or channel id (openid, session id)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    p = sub.add_parser("purge", help="Delete conversations, closed handoffs, trigger events, analytics rows and idle Customer 360 records older than N days.")
    p.add_argument("--older-than", type=float, required=True, metavar="DAYS", help="age in days (> 0)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.add_argument("--batch", type=int, default=500, help="rows per batch (default 500)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")


def _project_settings(root: str) -> Any:
    """config.yml and endpoints.yml of ``root``, as the server reads them (bot/server/features.py)."""
    from bot.feature import ProjectSettings
    from bot.shared.endpoints import load_endpoints
    from bot.shared.yaml_io import read_yaml_file, to_plain

    folder = Path(root)
    config_path, endpoints_path = folder / "config.yml", folder / "endpoints.yml"
    config = (to_plain(read_yaml_file(config_path)) or {}) if config_path.is_file() else {}
    return ProjectSettings(root=folder, config=config if isinstance(config, dict) else {},
                           endpoints=load_endpoints(endpoints_path if endpoints_path.is_file() else None))


def run_data_privacy(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from bot.privacy.feature import record_audit
    from bot.privacy.service import service_for_project
    from bot.stores.audit import create_audit_log
    from bot.web.principals import Principal, Role

    # The operator at the terminal acts as an admin (they hold the project's files); the
    # entries go to the same audit log the server writes (endpoints.yml `audit:`).
    actor = Principal(subject=f"cli:{getpass.getuser()}", role=Role.ADMIN, via="cli")
    settings = _project_settings(args.root)
    audit = create_audit_log(settings.section("audit"), settings.root)
    command = args.data_command
    if command == "purge" and not args.older_than > 0:
        print("Error: --older-than must be a positive number of days, e.g. --older-than 180.", file=sys.stderr)
        return 2
    if command == "erase" and not args.yes:
        answer = input(f"Erase every record of customer {args.customer!r} in {Path(args.root).resolve()}? "
                       "This cannot be undone. Type 'erase' to go on: ")
        if answer.strip() != "erase":
            print("Nothing erased.", file=sys.stderr)
            return 1
    service = service_for_project(settings)
    try:
        if command == "export":
            data = await service.export(args.customer)
            text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
            if args.out:
                Path(args.out).write_text(text + "\n", encoding="utf-8")
                print(f"Exported to {args.out}: {len(data['conversations'])} conversation(s), "
                      f"{len(data['handoffs'])} handoff(s).", file=sys.stderr)
            else:
                print(text)
            await record_audit(audit, actor, "export", args.customer,
                               {"conversations": len(data["conversations"]), "handoffs": len(data["handoffs"])})
        elif command == "erase":
            result = await service.erase(args.customer)
            result.pop("customer_ref", None)
            await record_audit(audit, actor, "erase", args.customer, result)
            print(json.dumps({"erased": result}, ensure_ascii=False, default=str))
        else:
            counts = await service.purge(args.older_than * 86400.0, batch=args.batch, dry_run=args.dry_run)
            if not args.dry_run:
                await record_audit(audit, actor, "purge", "", counts)
            print(json.dumps({"dry_run": args.dry_run, "older_than_days": args.older_than, **counts}))
    finally:
        await service.close()
        await audit.close()
    return 0
