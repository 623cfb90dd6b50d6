"""``python -m bot …``: the command line, mirroring ``rasa …``."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from bot.shared.exceptions import BotError
from bot.version import __version__

logger = logging.getLogger("bot")

DEFAULT_PORT = 5005


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s - %(message)s",
    )
    for noisy in ("jieba", "urllib3", "httpx", "sanic.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None, help="config.yml (default: ./config.yml)")
    p.add_argument("--domain", "-d", default=None, help="domain file or folder (default: ./domain.yml)")
    p.add_argument("--data", nargs="+", default=None, help="training data files/folders (default: data/ and nlu_data/)")


class _SubParsers:
    """Adds the common options (e.g. --log-level) to every sub-command."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self._action, self._common = action, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self._action.add_parser(name, parents=[self._common], **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="kefu: customer-service bot engine that runs Rasa 3 projects.",
    )
    parser.add_argument("--version", action="version", version=f"kefu {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("KEFU_LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING, ERROR")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING, ERROR")
    sub = _SubParsers(parser.add_subparsers(dest="command", metavar="COMMAND"), common)

    p = sub.add_parser("init", help="Write a small starter project into a folder.")
    p.add_argument("path", nargs="?", default=".", help="target folder (default: current folder)")
    p.add_argument("--no-train", action="store_true", help="don't train the starter model")

    p = sub.add_parser("train", help="Train a model archive (NLU + policies) into models/.")
    _add_project_args(p)
    p.add_argument("--out", default="models", help="output folder or archive path (default: models/)")
    p.add_argument("--fixed-model-name", default=None, help="archive name instead of a timestamp")
    p.add_argument("--force", action="store_true", help="retrain everything even if nothing changed")
    p.add_argument("--augmentation", type=int, default=50, help="story augmentation factor (default 50)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--nlu-only", action="store_true", help="train only the NLU pipeline")
    g.add_argument("--core-only", action="store_true", help="train only the dialogue policies")

    p = sub.add_parser("run", help="Start the bot's HTTP server (REST webhook, API, channels).")
    p.add_argument("--model", "-m", default="models", help="model archive or folder of archives (default: models/)")
    p.add_argument("--endpoints", default="endpoints.yml", help="endpoints.yml (stores, action server)")
    p.add_argument("--credentials", default="credentials.yml", help="credentials.yml (channels)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", "-p", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1; >1 needs Redis or SQL stores)")
    p.add_argument("--auth-token", default=os.environ.get("KEFU_AUTH_TOKEN"), help="token required on the HTTP API (?token=)")
    p.add_argument("--jwt-secret", default=os.environ.get("KEFU_JWT_SECRET"), help="secret for JWT auth (Authorization: Bearer)")
    p.add_argument("--jwt-method", default="HS256", help="JWT algorithm (default HS256)")
    p.add_argument("--cors", nargs="*", default=None, help="allowed CORS origins")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")

    p = sub.add_parser("shell", help="Chat with the bot in the terminal.")
    p.add_argument("--model", "-m", default="models", help="model archive or folder (default: models/)")
    p.add_argument("--endpoints", default="endpoints.yml", help="endpoints.yml")
    p.add_argument("--sender", default="shell", help="conversation id (default: shell)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")

    p = sub.add_parser("actions", help="Start an action server (rasa_sdk protocol) for the actions package.")
    p.add_argument("--actions", default="actions", help="Python package with the actions (default: actions)")
    p.add_argument("--port", "-p", type=int, default=5055, help="port (default 5055)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")

    p = sub.add_parser("test", help="Evaluate a model: `test core` (stories) or `test nlu`.")
    tsub = _SubParsers(p.add_subparsers(dest="test_command", metavar="WHAT"), common)
    tc = tsub.add_parser("core", help="Run test stories; writes story_report.json and failed_test_stories.yml.")
    tc.add_argument("--model", "-m", default="models", help="model archive or folder (default: models/)")
    tc.add_argument("--stories", "-s", nargs="+", default=None, help="test story files/folders (default: tests/)")
    tc.add_argument("--out", default="results", help="output folder (default: results/)")
    tc.add_argument("--root", default=".", help="project folder (default: current folder)")
    tc.add_argument("--fail-on-prediction-errors", action="store_true", help="exit 1 if any story fails")
    tn = tsub.add_parser("nlu", help="Evaluate the NLU pipeline on test data or by cross-validation.")
    tn.add_argument("--model", "-m", default="models")
    tn.add_argument("--nlu", "-u", nargs="+", default=None, help="NLU test data (default: train data, by cross-validation)")
    tn.add_argument("--out", default="results")
    tn.add_argument("--cross-validation", action="store_true")
    tn.add_argument("--folds", type=int, default=5)
    tn.add_argument("--config", "-c", default=None)
    tn.add_argument("--root", default=".")

    tk = tsub.add_parser("kb", help="Evaluate FAQ retrieval on a query file; writes kb_report.json.")
    from bot.knowledge.cli import add_kb_build_arguments, add_kb_test_arguments

    add_kb_test_arguments(tk)

    p = sub.add_parser("kb", help="FAQ knowledge base: `kb build`.")
    ksub = _SubParsers(p.add_subparsers(dest="kb_command", metavar="WHAT"), common)
    kb = ksub.add_parser("build", help="Validate knowledge_base/ and build the FAISS index.")
    add_kb_build_arguments(kb)

    from bot.triggers.cli import add_triggers_parser

    p = sub.add_parser("shop", help="Moved: the demo shop's data tools are `python -m actions.shop seed|import`.")
    p.add_argument("shop_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    add_triggers_parser(sub)

    p = sub.add_parser("data", help="Work with training data: `data validate`.")
    dsub = _SubParsers(p.add_subparsers(dest="data_command", metavar="WHAT"), common)
    dv = dsub.add_parser("validate", help="Check domain, data, stories and rules for mistakes.")
    _add_project_args(dv)
    dv.add_argument("--root", default=".")
    dv.add_argument("--fail-on-warnings", action="store_true")

    # --- api-auth: `token create` (API credentials, bot/web/tokens.py) -------------------------
    from bot.web.tokens import add_token_parser

    add_token_parser(sub)
    # --- end api-auth ----------------------------------------------------------------------------
    return parser


# ---------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from bot.model.training import train

    result = train(
        root=args.root,
        config=args.config,
        domain=args.domain,
        data=args.data,
        out=args.out,
        fixed_model_name=args.fixed_model_name,
        force=args.force,
        nlu_only=args.nlu_only,
        core_only=args.core_only,
        augmentation=args.augmentation,
    )
    if not result.trained_nlu and not result.trained_core and result.reused_nlu and result.reused_core:
        print(f"Nothing changed. The newest model is still {result.model_path}")
    else:
        parts = []
        parts.append("NLU " + ("trained" if result.trained_nlu else "reused" if result.reused_nlu else "none"))
        parts.append("core " + ("trained" if result.trained_core else "reused" if result.reused_core else "none"))
        print(f"Model saved to {result.model_path} ({', '.join(parts)}; {result.seconds:.1f} s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from functools import partial

    from bot.agent import create_agent_for_server
    from bot.model.archive import resolve_model_path
    from bot.server.run import serve
    from bot.shared.yaml_io import read_yaml_file, to_plain
    from connectors.base import create_input_channels
    from connectors.rest import RestInput

    model = resolve_model_path(args.model)  # fail early, in the terminal, if there is none
    credentials = to_plain(read_yaml_file(args.credentials)) if Path(args.credentials).exists() else {}
    channels = create_input_channels(credentials or {})
    if not any(isinstance(c, RestInput) for c in channels):
        channels.insert(0, RestInput())
    endpoints = args.endpoints if Path(args.endpoints).exists() else None
    print(f"kefu is starting on http://{args.host}:{args.port} with model {model}")
    from connectors.demo_page import demo_root

    serve(
        partial(create_agent_for_server, str(model), endpoints, args.root),
        app_kwargs={"root_handler": demo_root},
        project_root=args.root,
        host=args.host,
        port=args.port,
        workers=args.workers,
        input_channels=channels,
        auth_token=args.auth_token,
        jwt_secret=args.jwt_secret,
        jwt_method=args.jwt_method,
        cors_origins=args.cors if args.cors else "*",
    )
    return 0


def _format_reply(msg: dict[str, Any]) -> str:
    lines = []
    if msg.get("text"):
        lines.append(str(msg["text"]))
    if msg.get("image"):
        lines.append(f"[image] {msg['image']}")
    elif msg.get("attachment") and not msg.get("text"):
        lines.append(f"[attachment] {msg['attachment']}")
    for i, b in enumerate(msg.get("buttons") or [], 1):
        lines.append(f"  {i}. {b.get('title')}  ({b.get('payload')})")
    if msg.get("custom"):
        lines.append(json.dumps(msg["custom"], ensure_ascii=False))
    return "\n".join(lines)


async def _shell(args: argparse.Namespace) -> int:
    from bot.agent import Agent

    agent = await Agent.create(
        args.model, args.endpoints if Path(args.endpoints).exists() else None, project_root=args.root
    )
    print("kefu shell — type a message, /restart to start over, /stop to quit.")
    last_buttons: list[dict] = []
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                text = await loop.run_in_executor(None, lambda: input("您/You: "))
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text == "/stop":
                break
            if text.isdigit() and last_buttons and 1 <= int(text) <= len(last_buttons):
                text = last_buttons[int(text) - 1].get("payload") or text
            replies = await agent.handle_text(text, sender_id=args.sender) or []
            last_buttons = []
            for r in replies:
                print("客服/Bot: " + _format_reply(r))
                last_buttons = r.get("buttons") or last_buttons
    finally:
        await agent.close()
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    from bot.action_server import run_action_server

    run_action_server(args.actions, port=args.port, host=args.host, project_root=os.getcwd())
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    if args.test_command == "core":
        from bot.testing.runner import run_core_tests

        return run_core_tests(args)
    if args.test_command == "kb":
        from bot.knowledge.cli import run_kb_test

        return run_kb_test(args)
    if args.test_command == "nlu":
        from bot.testing.runner import run_nlu_tests

        return run_nlu_tests(args)
    print("Use `python -m bot test core` or `python -m bot test nlu`.", file=sys.stderr)
    return 2


def cmd_kb(args: argparse.Namespace) -> int:
    if args.kb_command == "build":
        from bot.knowledge.cli import run_kb_build

        return run_kb_build(args)
    print("Use `python -m bot kb build`.", file=sys.stderr)
    return 2


def _run_triggers(args: argparse.Namespace) -> int:
    from bot.triggers.cli import run_triggers

    return run_triggers(args)


def _run_shop(args: argparse.Namespace) -> int:
    """The shop belongs to the demo package, which the engine does not import: point at its command."""
    rest = " ".join(args.shop_args) or "seed|import ..."
    print(f"`python -m bot shop` moved to the demo package: run `python -m actions.shop {rest}` "
          "from the project folder.", file=sys.stderr)
    return 2


def _run_token(args: argparse.Namespace) -> int:  # api-auth
    from bot.web.tokens import run_token_command

    return run_token_command(args)


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "validate":
        from bot.validation import run_validation

        return run_validation(args)
    print("Use `python -m bot data validate`.", file=sys.stderr)
    return 2


def cmd_init(args: argparse.Namespace) -> int:
    from bot.scaffold import init_project

    path = init_project(args.path)
    print(f"Starter project written to {path}.")
    if not args.no_train:
        from bot.model.training import train

        result = train(root=path, out=Path(path) / "models")
        print(f"Model saved to {result.model_path}. Chat with it: cd {path} && python -m bot shell")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    handlers = {
        "init": cmd_init,
        "train": cmd_train,
        "run": cmd_run,
        "shell": lambda a: asyncio.run(_shell(a)),
        "actions": cmd_actions,
        "test": cmd_test,
        "data": cmd_data,
        "kb": cmd_kb,
        "shop": _run_shop,
        "triggers": _run_triggers,
        "token": _run_token,  # api-auth
    }
    if args.command not in handlers:
        parser.print_help()
        return 2
    try:
        return int(handlers[args.command](args) or 0)
    except BotError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
