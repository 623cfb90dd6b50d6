"""``python -m bot interactive`` and ``python -m bot models list|train|activate|rollback``."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from pathlib import Path
from typing import Any


def add_interactive_parser(sub: Any) -> None:
    p = sub.add_parser("interactive", help="Interactive learning: chat, correct each intent and action, save "
                                           "as stories and NLU data (Rasa's `interactive`).")
    p.add_argument("--model", "-m", default=None, help="model archive or folder (default: newest in models/)")
    p.add_argument("--root", default=".", help="project folder whose data receives the corrections")
    p.add_argument("--endpoints", default="endpoints.yml", help="endpoints.yml (action server, stores)")
    p.add_argument("--conversation-id", dest="sender", default="interactive", help="conversation id")
    p.add_argument("--skip-visualization", action="store_true", help="accepted for Rasa scripts (nothing is drawn)")


def add_models_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="Model registry of the trainer workbench: list, train a candidate "
                                      "behind the gate, activate, roll back (docs/workbench.md).")
    msub = p.add_subparsers(dest="models_command")
    for name, text in (("list", "every model with data version, gate result, activations"),
                       ("train", "train a candidate without the held-out examples and compare it with the active model"),
                       ("activate", "make a model the active one (running servers follow within seconds)"),
                       ("rollback", "back to the model that was active before")):
        q = msub.add_parser(name, help=text)
        q.add_argument("--root", default=".", help="project folder (default: current folder)")
        if name == "activate":
            q.add_argument("name", help="model name (python -m bot models list)")
            q.add_argument("--override", action="store_true", help="activate although the gate failed (admin)")
        if name == "train":
            q.add_argument("--activate", action="store_true", help="activate it when the gate passes")


def cmd_interactive(args: argparse.Namespace) -> int:
    from bot.workbench.interactive import run_interactive

    return asyncio.run(run_interactive(args.model, args.root, args.endpoints, args.sender))


def _print_comparison(entry: dict[str, Any]) -> None:
    c = entry.get("comparison") or {}
    acc = c.get("accuracy") or {}
    print(f"{entry['name']}: gate {'passed' if c.get('passed') else 'FAILED'}; held-out accuracy "
          f"{acc.get('active')} -> {acc.get('candidate')} on {c.get('held_out')} examples")
    for row in c.get("intents", []):
        if row["delta"]:
            print(f"  {row['intent']:<28} F1 {row['f1_active']} -> {row['f1_candidate']} ({row['delta']:+.3f})")
    for r in c.get("regressions", []):
        print(f"  REGRESSION {r['intent']}: {r['delta']:+.3f} (limit {r['limit']})")


def cmd_models(args: argparse.Namespace) -> int:
    from bot.workbench.config import WorkbenchConfig
    from bot.workbench.feature import WorkbenchService
    from bot.workbench.registry import RegistryError

    root = Path(args.root).resolve()
    service = WorkbenchService(root, WorkbenchConfig.for_project(root))
    who = f"cli:{getpass.getuser()}"
    try:
        if args.models_command == "list":
            data = service.registry.read()
            for m in data["models"]:
                mark = "*" if m["name"] == data["active"] else " "
                print(f"{mark} {m['name']}  data {m['data_version']}  by {m['trained_by']}  gate "
                      f"{ {True: 'passed', False: 'failed', None: '-'}[m['gate_passed']] }")
            return 0
        if args.models_command == "train":
            entry = service.train_and_gate(who)
            _print_comparison(entry)
            if args.activate and entry["gate_passed"]:
                service.registry.activate(entry["name"], who, is_admin=True)
                print(f"Activated {entry['name']}.")
            return 0 if entry["gate_passed"] else 3
        if args.models_command == "activate":
            record = service.registry.activate(args.name, who, is_admin=True, override=args.override)
            print(json.dumps(record))
            return 0
        if args.models_command == "rollback":
            print(json.dumps(service.registry.rollback(who)))
            return 0
    except RegistryError as e:
        print(f"Error: {e}")
        return 1
    print("Usage: python -m bot models list|train|activate NAME|rollback")
    return 2
