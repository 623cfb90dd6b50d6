"""``python -m bot triggers list|simulate CUSTOMER|report|stop-variant|resume-variant``.

``simulate`` replays one customer's events against the journeys with a test clock and a
dry-run sender, and prints what would be sent when and why (holds and skips included):
the check a marketer runs before turning a journey on. Wire into bot/cli.py with
``add_triggers_parser(sub)`` and ``"triggers": run_triggers``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError


def add_triggers_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("triggers", help="Lifecycle journeys: `triggers list|simulate CUSTOMER|report`.")
    tsub = p.add_subparsers(dest="triggers_command", metavar="WHAT")
    ls = tsub.add_parser("list", help="Validate triggers.yml and list its journeys.")
    ls.add_argument("--file", default="triggers.yml", help="journeys file (default: triggers.yml)")
    ls.add_argument("--domain", default="domain.yml", help="check responses/actions against this domain")
    sim = tsub.add_parser("simulate", help="Replay a customer's events; print what would be sent when and why.")
    sim.add_argument("customer", help="customer id")
    sim.add_argument("--file", default="triggers.yml", help="journeys file (default: triggers.yml)")
    sim.add_argument("--events", default=None, help="events file (.json list or .jsonl); default: the store's event log")
    sim.add_argument("--store", default=None, help="trigger store URL (default: sqlite:///triggers.db)")
    sim.add_argument("--days", type=float, default=120.0, help="simulate this many days after the last event")
    rep = tsub.add_parser("report", help="Sends, skips, conversions per journey and variant.")
    rep.add_argument("--store", default=None, help="trigger store URL (default: sqlite:///triggers.db)")
    rep.add_argument("--file", default="triggers.yml", help="journeys file (for variant order)")
    rep.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("stop-variant", "Stop an A/B variant (persisted; in-flight sends rerouted or sent)."),
                       ("resume-variant", "Resume a variant stopped with stop-variant.")):
        sw = tsub.add_parser(name, help=text)
        sw.add_argument("journey")
        sw.add_argument("step")
        sw.add_argument("variant")
        sw.add_argument("--store", default=None, help="trigger store URL: SQLAlchemy or redis:// (default: sqlite:///triggers.db)")
        sw.add_argument("--prefix", default="kefu:triggers", help="Redis key prefix (Redis stores)")
        sw.add_argument("--file", default="triggers.yml", help="journeys file")
        if name == "stop-variant":
            sw.add_argument("--reason", default="", help="why (shown in the report)")
            sw.add_argument("--in-flight", default="reroute", choices=("reroute", "send"),
                            help="already-queued sends of the variant: re-route them (default) or send as assigned")
    return p


def describe(config: Any) -> str:
    from bot.triggers.journeys import Condition

    def cond(c: Condition) -> str:
        text = "|".join(c.events)
        if c.properties:
            text += f" properties={json.dumps(c.properties, ensure_ascii=False)}"
        if c.profile:
            text += f" profile={json.dumps(c.profile, ensure_ascii=False)}"
        if c.match:
            text += f" matching {','.join(c.match)}"
        return text

    lines = [f"{len(config.journeys)} journeys in {config.filename} (tz {config.settings.timezone}, quiet "
             f"{config.settings.quiet_start[0]:02d}:{config.settings.quiet_start[1]:02d}-"
             f"{config.settings.quiet_end[0]:02d}:{config.settings.quiet_end[1]:02d}, caps "
             f"{config.settings.per_day}/day {config.settings.per_week}/week)"]
    for j in config.journeys:
        state = ("" if j.enabled else " [disabled]") + ("" if j.quiet_hours else " [any hour]")
        reentry = j.reentry if j.reentry != "after" else f"after {j.reentry_after / 86400:g}d"
        lines.append(f"- {j.name}{state} ({j.priority}, re-entry {reentry}): on {cond(j.entry)}")
        for s in j.steps:
            variants = ", ".join(f"{v.name}{'(stopped)' if v.stopped else ''}:{v.message.name}@{v.weight:g}"
                                 for v in s.variants)
            lines.append(f"    {s.name}: after {s.delay.text} -> {variants}")
        if j.exits:
            lines.append("    exits on: " + "; ".join(cond(c) for c in j.exits))
    return "\n".join(lines)


def _load_events(path: str, customer: str) -> list[Any]:
    from bot.triggers.events import EventRejected, validate_event

    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
        items = raw.get("events", []) if isinstance(raw, dict) else raw
    except json.JSONDecodeError:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = []
    for i, item in enumerate(items):
        try:
            event = validate_event(item, float("inf"), i)
        except EventRejected as e:
            raise ConfigError(e.message, path, None, "fix the event or remove it") from e
        if event.customer_id == customer:
            events.append(event)
    return sorted(events, key=lambda e: (e.timestamp, e.id))


async def simulate(config: Any, events: list[Any], customer: str, days: float = 120.0) -> list[str]:
    """Replay events with a test clock; return the timeline lines."""
    from bot.triggers.clock import TestClock
    from bot.triggers.engine import TriggerEngine
    from bot.triggers.queue import SQLJobQueue
    from bot.triggers.senders import DryRunSender
    from bot.triggers.store import SQLTriggerStore

    if not events:
        return [f"No events for customer {customer}."]
    store = SQLTriggerStore("sqlite+aiosqlite:///:memory:")
    queue = SQLJobQueue(store.engine)
    clock = TestClock(events[0].timestamp)
    engine = TriggerEngine(config, store, queue, DryRunSender(), clock)

    async def advance_to(t: float) -> None:
        while True:
            due = await queue.next_due()
            if due is None or due > t:
                break
            clock.set(max(due, clock.now()))
            await engine.drain()
        clock.set(max(t, clock.now()))

    try:
        for event in events:
            await advance_to(event.timestamp)
            await store.add_event(event)
            await engine.process(event, trusted=True)  # the operator's own file, replayed on a scratch store
        await advance_to(events[-1].timestamp + days * 86400)
        profile = await store.get_profile(customer)
        tz = config.settings.tz(profile.get("timezone"))

        def when(ts: float) -> str:
            return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")

        rows: list[tuple[float, int, str]] = [(e.timestamp, 0, f"EVENT  {e.type} {json.dumps(e.properties, ensure_ascii=False)}")
                                              for e in events]
        for inst in await store.instances_for(customer):
            rows.append((inst.entered_at, 1, f"ENTER  {inst.journey} (variants {inst.variants})"))
        for d in await store.decisions_for(customer):
            if d["kind"] == "hold":
                text = f"HOLD   {d['journey']}/{d['step']} [{d['variant']}]: {d['reason']} until {when(d['until'])}"
            elif d["kind"] == "exit":
                text = f"EXIT   {d['journey']}: {d['reason']}"
            else:
                text = f"SKIP   {d['journey']}/{d['step']} [{d['variant']}]: {d['reason']}"
            rows.append((d["at"], 2, text))
        sends = {s.send_id: s for s in await store.sends_for(customer)}
        for outgoing in engine.sender.sent:
            s = sends.get(outgoing.send_id)
            if s is None or s.sent_at is None:
                continue
            slots = f" slots {json.dumps(outgoing.slots, ensure_ascii=False)}" if outgoing.slots else ""
            rows.append((s.sent_at, 3, f"SEND   {s.journey}/{s.step} [{s.variant}] {outgoing.message.name}{slots}"))
        return [f"{when(ts)}  {text}" for ts, _, text in sorted(rows, key=lambda r: (r[0], r[1]))]
    finally:
        await store.close()


def run_triggers(args: argparse.Namespace) -> int:
    from bot.triggers.events import EventRejected
    from bot.triggers.journeys import check_against_domain, load_triggers

    command = getattr(args, "triggers_command", None)
    try:
        if command == "list":
            config = load_triggers(args.file)
            print(describe(config))
            if args.domain and Path(args.domain).exists():
                from bot.shared.domain import Domain

                problems = check_against_domain(config, Domain.load(args.domain))
                for problem in problems:
                    print(f"warning: {problem}")
            return 0
        if command == "simulate":
            config = load_triggers(args.file)
            if args.events:
                events = _load_events(args.events, args.customer)
            else:
                events = asyncio.run(_store_events(args.store, args.customer))
            for line in asyncio.run(simulate(config, events, args.customer, args.days)):
                print(line)
            return 0
        if command == "report":
            from bot.triggers.report import build_report, format_report

            config = load_triggers(args.file)
            report = asyncio.run(_report(args.store, config))
            print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_report(report))
            return 0
        if command in ("stop-variant", "resume-variant"):
            config = load_triggers(args.file)
            result = asyncio.run(_switch(args, config))
            print(json.dumps(result, ensure_ascii=False))
            return 0
    except ConfigError as e:
        print(f"error: {e}")
        return 1
    except EventRejected as e:
        print(f"error: {e.message}")
        return 1
    print("usage: python -m bot triggers {list,simulate CUSTOMER,report,stop-variant,resume-variant} ...")
    return 2


async def _store_events(url: str | None, customer: str) -> list[Any]:
    from bot.triggers import open_store

    store = open_store(url)
    try:
        return await store.events_for(customer)
    finally:
        await store.close()


async def _report(url: str | None, config: Any) -> dict[str, Any]:
    from bot.triggers import open_store
    from bot.triggers.report import build_report

    store = open_store(url)
    try:
        return build_report(await store.report_counts(), config, stops=await store.stopped_variants())
    finally:
        await store.close()


async def _switch(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    from bot.triggers import open_store
    from bot.triggers.engine import TriggerEngine

    store = open_store(args.store, prefix=args.prefix)
    engine = TriggerEngine(config, store, queue=None, sender=None)  # type: ignore[arg-type]
    try:
        if args.triggers_command == "stop-variant":
            return await engine.stop_variant(args.journey, args.step, args.variant, reason=args.reason,
                                             in_flight=args.in_flight)
        return await engine.resume_variant(args.journey, args.step, args.variant)
    finally:
        await store.close()
