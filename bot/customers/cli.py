"""``python -m bot customers show ID | segment NAME | recompute | check``.

``show`` takes a customer id or ``KIND:VALUE`` (``shop_customer:42``, ``conversation:SID``,
``wechat_openid:o…``, ``phone:138…``). The store is ``customers.url`` of endpoints.yml
(default ``sqlite:///customers.db`` in the project folder).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.customers.rules import load_rules
from bot.customers.service import CustomerError, CustomerService
from bot.customers.store import CustomerStore
from bot.shared.masking import mask_text

KINDS = ("shop_customer", "widget", "wechat_openid", "phone", "conversation", "order")


def add_customers_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("customers", help="Customer 360: `customers show ID | segment NAME | recompute | check`.")
    csub = p.add_subparsers(dest="customers_command", metavar="WHAT")
    show = csub.add_parser("show", help="Profile, tags, health with its explanation and trend, latest timeline.")
    show.add_argument("customer", help="customer id, or KIND:VALUE (shop_customer:42, conversation:SID, phone:138...)")
    show.add_argument("--timeline", type=int, default=20, help="timeline items to print (default 20)")
    show.add_argument("--json", action="store_true", help="print JSON")
    seg = csub.add_parser("segment", help="Customers in a segment (customers.yml).")
    seg.add_argument("name")
    seg.add_argument("--limit", type=int, default=50)
    seg.add_argument("--json", action="store_true", help="print JSON")
    csub.add_parser("recompute", help="Recompute every profile, tag and health score from the stored events.")
    csub.add_parser("check", help="Validate customers.yml and health.yml (file:line errors).")
    for sp in (show, seg, *[csub.choices[n] for n in ("recompute", "check")]):
        sp.add_argument("--store", default=None, help="store URL (default: customers.url, else sqlite:///customers.db)")
        sp.add_argument("--project", default=".", help="project folder (default: .)")
    return p


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    from bot.shared.endpoints import load_endpoints

    root = Path(args.project)
    endpoints = load_endpoints(root / "endpoints.yml" if (root / "endpoints.yml").is_file() else None)
    section = (getattr(endpoints, "extra", None) or {}).get("customers") or {}
    return str(section.get("url") or f"sqlite:///{(root / 'customers.db').as_posix()}")


def _print_customer(data: dict[str, Any], timeline: dict[str, Any]) -> None:
    p = data["profile"]
    print(f"Customer {data['id']}  health {data['health_score']} ({data['health_band']})  tags: "
          f"{', '.join(data['tags']) or '-'}")
    print("Identities: " + ", ".join(f"{i['kind']}={mask_text(str(i['value']))} [{i['proof']}]"
                                     for i in data["identities"]))
    keys = ("order_count", "lifetime_value", "aov", "days_since_last_order", "purchase_interval_days",
            "preferred_categories", "price_sensitivity", "return_rate", "preferred_channel", "contacts_90d",
            "recent_sentiment", "csat_avg", "open_handoffs", "open_complaints")
    for key in keys:
        print(f"  {key:24} {p.get(key)}")
    print("Why this score (top factors):")
    for f in data["health"].get("factors", []):
        change = "" if f["change"] is None else f"  (moved {f['change']:+.2f})"
        print(f"  {f['label']:40} value {f['value']!s:10} contributes {f['contribution']:+.2f}{change}")
    trend = data["health_history"][-10:]
    print("Trend: " + " → ".join(f"{h['score']:.0f}" for h in trend))
    print("Timeline:")
    for item in timeline["items"]:
        print(f"  {item['ts']:.0f}  {item['type']:22} {json.dumps(item['data'], ensure_ascii=False)[:100]}")


async def _run(args: argparse.Namespace) -> int:
    cmd = args.customers_command
    rules = load_rules(args.project)
    if cmd == "check":
        print(f"OK: {len(rules.segments)} segments, {len(rules.health.components)} health components "
              f"({', '.join(rules.sources)}).")
        return 0
    store = CustomerStore(_store_url(args))
    service = CustomerService(store, rules)
    try:
        if cmd == "show":
            cid = args.customer
            kind, sep, value = cid.partition(":")
            if sep and kind in KINDS:
                found = await service.find(kind, value)
                if found is None:
                    print(f"No customer with {kind} '{mask_text(value)}'.", file=sys.stderr)
                    return 1
                cid = found
            data = await service.get(cid)
            timeline = await service.timeline(cid, limit=args.timeline)
            if args.json:
                print(json.dumps({"customer": data, "timeline": timeline}, ensure_ascii=False, indent=2, default=str))
            else:
                _print_customer(data, timeline)
        elif cmd == "segment":
            rows = await service.segment(args.name, limit=args.limit)
            if args.json:
                print(json.dumps([{k: r[k] for k in ("id", "tags", "health_score", "health_band")} for r in rows],
                                 ensure_ascii=False, indent=2))
            else:
                for r in rows:
                    print(f"{r['id']}  health {r['health_score']} ({r['health_band']})  {', '.join(r['tags'])}")
                print(f"{len(rows)} customer(s) in {args.name}.")
        elif cmd == "recompute":
            count = await service.recompute_all(progress=lambda n: print(f"  {n} ...", file=sys.stderr))
            print(f"Recomputed {count} customer(s).")
        else:
            print("Use `customers show ID`, `customers segment NAME`, `customers recompute` or `customers check`.",
                  file=sys.stderr)
            return 2
    except CustomerError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 1
    finally:
        await service.close()
    return 0


def run_customers(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
