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

from bot.shared.exceptions import BotError, ConfigError
from bot.version import __version__

logger = logging.getLogger("bot")

DEFAULT_PORT = 5005


def _setup_logging(level: str, log_file: str | None = None) -> None:
    from bot.server.logging_setup import configure_logging

    configure_logging(level, log_file)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _NotInKefu(argparse.Action):
    """A Rasa option that kefu does not implement: stop and name what to use instead.

    Scripts and compose files written for ``rasa run`` then fail with a useful
    message rather than argparse's bare "unrecognized arguments".
    """

    def __init__(self, option_strings: Sequence[str], dest: str, hint: str = "", **kwargs: Any) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.hint = hint

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} is a Rasa option that kefu does not implement. {self.hint}")


RASA_ONLY_OPTIONS: dict[str, dict[tuple[str, ...], str]] = {
    "run": {
        ("--remote-storage",): "kefu loads models from a local path: download the archive and pass "
                               "--model PATH, or upload it with PUT /model.",
        ("--use-syslog", "--syslog-address", "--syslog-port", "--syslog-protocol"):
            "kefu logs to stderr and, with --log-file PATH, to a file; forward those to syslog with your "
            "process manager (journald, Docker's syslog log driver).",
        ("--ssl-ca-file",): "kefu does not verify client certificates: serve TLS with --ssl-certificate/"
                            "--ssl-keyfile, or terminate mutual TLS in a reverse proxy.",
        ("--jwt-private-key",): "kefu only verifies JWTs: give the verification key with --jwt-secret (the "
                                "public key for RS256/ES256) and --jwt-method; your own service signs them.",
        ("--inspect",): "use `python -m bot shell --debug`, or the demo page at / of a running server.",
    },
    "train": {
        ("--persist-nlu-data",): "the archive keeps the resolved config and fingerprints; the training data "
                                 "stays in your project.",
        ("--dry-run",): "`python -m bot data validate` checks the data; `train` says 'Nothing changed' "
                        "and reuses the newest model when nothing would be retrained.",
    },
}


def _add_rasa_only_options(p: argparse.ArgumentParser, command: str) -> None:
    for flags, hint in RASA_ONLY_OPTIONS[command].items():
        for flag in flags:
            p.add_argument(flag, action=_NotInKefu, hint=hint)


def _add_project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None, help="config.yml (default: ./config.yml)")
    p.add_argument("--domain", "-d", default=None, help="domain file or folder (default: ./domain.yml)")
    p.add_argument("--data", nargs="+", default=None, help="training data files/folders (default: data/ and nlu_data/)")


def _add_test_args(p: argparse.ArgumentParser, core: bool, nlu: bool) -> None:
    """Rasa 3.6's ``rasa test [core|nlu]`` options, with Rasa's meanings."""
    p.add_argument("--model", "-m", default="models", help="model archive or folder (default: models/, newest)")
    p.add_argument("--out", default="results", help="output folder for the reports (default: results/)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    p.add_argument("--no-plot", action="store_true", help="don't draw the confusion matrix and histogram")
    p.add_argument("--successes", action="store_true", help="also write the successful stories / predictions")
    p.add_argument("--no-errors", action="store_true", help="don't write the failed stories / intent errors")
    p.add_argument("--no-warnings", action="store_true", help="accepted for Rasa scripts (kefu writes no warnings file content)")
    p.add_argument("--domain", "-d", default=None, help="accepted for Rasa scripts: the model's own domain is used")
    if core:
        p.add_argument("--stories", "-s", nargs="+", default=None, help="test story files/folders (default: tests/)")
        p.add_argument("--endpoints", default=None,
                       help="endpoints.yml: read as in Rasa (an error in it stops the test); with an "
                            "action_endpoint kefu checks the action server serves the domain's custom actions")
        p.add_argument("--fail-on-prediction-errors", action="store_true",
                       help="exit 1 if any story has a wrongly predicted action (for CI)")
        p.add_argument("--max-stories", type=_positive_int, default=None, help="test at most this many stories")
        p.add_argument("--e2e", "--end-to-end", dest="e2e", action="store_true",
                       help="accepted: user texts without an intent always go through the model's NLU")
        for flag, hint in (("--evaluate-model-directory", "run `test core --model FILE` once per archive."),
                           ("--percentages", "compare NLU configs with `test nlu --config A.yml B.yml` "
                                             "or `data suggest`; core configs by training each and `test core`.")):
            if flag == "--percentages" and nlu:
                continue
            p.add_argument(flag, action=_NotInKefu, hint=hint)
    if nlu:
        p.add_argument("--nlu", "-u", nargs="+", default=None,
                       help="NLU test data (default: tests/nlu or test_data/; with --cross-validation: the training data)")
        p.add_argument("--cross-validation", action="store_true",
                       help="k-fold cross-validation of config.yml's pipeline on the NLU data (no model needed)")
        p.add_argument("--folds", "-f", type=_positive_int, default=5, help="folds of --cross-validation (default 5)")
        p.add_argument("--runs", "-r", type=_positive_int, default=1,
                       help="repeat --cross-validation with this many different splits (default 1)")
        p.add_argument("--config", "-c", nargs="+", default=None,
                       help="config file(s) for --cross-validation; two or more: compare them on the same folds")
        p.add_argument("--percentages", action=_NotInKefu,
                       hint="kefu compares configs on the full data with the same folds: `test nlu --config A.yml "
                            "B.yml` or `data suggest`.")


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
    # Rasa's logging flags, on every command as in Rasa.
    common.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="INFO",
                        default=argparse.SUPPRESS, help="log at INFO")
    common.add_argument("-vv", "--debug", dest="log_level", action="store_const", const="DEBUG",
                        default=argparse.SUPPRESS, help="log at DEBUG (message texts included)")
    common.add_argument("--quiet", dest="log_level", action="store_const", const="WARNING",
                        default=argparse.SUPPRESS, help="log warnings and errors only")
    sub = _SubParsers(parser.add_subparsers(dest="command", metavar="COMMAND"), common)

    p = sub.add_parser("init", help="Write a small starter project into a folder.")
    p.add_argument("path", nargs="?", default=".", help="target folder (default: current folder)")
    p.add_argument("--no-train", action="store_true", help="don't train the starter model")

    p = sub.add_parser(
        "train", help="Train a model archive (NLU + policies) into models/; `train nlu`, `train core`.",
        description="Train one archive. As in Rasa, `train nlu` trains only the NLU pipeline (no domain "
                    "needed) and `train core` only the policies; they are --nlu-only and --core-only.",
    )
    _add_project_args(p)
    p.add_argument("--nlu", "-u", nargs="+", default=None, metavar="PATH",
                   help="NLU data files/folders (Rasa's `train nlu --nlu`; default: --data)")
    p.add_argument("--stories", "-s", nargs="+", default=None, metavar="PATH",
                   help="stories/rules files/folders (Rasa's `train core --stories`; default: --data)")
    p.add_argument("--skip-validation", action="store_true",
                   help="accepted for Rasa scripts: kefu's loaders check the data as they read it")
    p.add_argument("--out", default="models", help="output folder or archive path (default: models/)")
    p.add_argument("--fixed-model-name", default=None, help="archive name instead of a timestamp")
    p.add_argument("--force", action="store_true", help="retrain everything even if nothing changed")
    p.add_argument("--augmentation", type=int, default=50, help="story augmentation factor (default 50)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--nlu-only", action="store_true", help="train only the NLU pipeline")
    g.add_argument("--core-only", action="store_true", help="train only the dialogue policies")
    p.add_argument("--num-threads", type=_positive_int, default=None,
                   help="torch threads for training (default: torch's choice, usually the CPU cores)")
    p.add_argument("--finetune", nargs="?", const=True, default=None, metavar="MODEL",
                   help="continue from a previous model (an archive, or the newest in a folder; default: the "
                        "newest in --out) instead of starting from scratch, as in Rasa: only 'epochs' may "
                        "change in config.yml, only responses in the domain, and the NLU data may add "
                        "examples but no intents or entities")
    p.add_argument("--epoch-fraction", type=float, default=1.0, metavar="F",
                   help="with --finetune: train this fraction of the configured epochs (default 1.0)")
    _add_rasa_only_options(p, "train")

    p = sub.add_parser(
        "run", help="Start the bot's HTTP server (channels; the management API with --enable-api).",
        description="Serve the channels of credentials.yml (REST webhook, widget, WeChat) and the console. "
                    "The management API (/model, /conversations, ...) is served only with --enable-api, "
                    "and then only behind --auth-token or --jwt-secret. `run actions` is `actions`.",
    )
    p.add_argument("--model", "-m", default="models", help="model archive or folder of archives (default: models/)")
    p.add_argument("--endpoints", default=None, help="endpoints.yml (stores, action server; default: ./endpoints.yml if present)")
    p.add_argument("--log-file", default=None, help="also append the log to this file (same format)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    g = p.add_argument_group("Server Settings")
    g.add_argument("--host", "-i", "--interface", dest="host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    g.add_argument("--port", "-p", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    g.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1; >1 needs Redis or SQL stores)")
    g.add_argument("--enable-api", action="store_true",
                   help="also serve the management API (needs --auth-token or --jwt-secret)")
    g.add_argument("--auth-token", "-t", default=os.environ.get("KEFU_AUTH_TOKEN") or None,
                   help="token the API requires as 'Authorization: Bearer TOKEN' (default: env KEFU_AUTH_TOKEN)")
    g.add_argument("--allow-token-in-url", action="store_true",
                   help="also accept the token as ?token= (Rasa's way; URLs end up in logs and proxies)")
    g.add_argument("--dev-open-api", action="store_true",
                   help="development only: serve --enable-api without auth; refused unless --host is loopback")
    g.add_argument("--cors", nargs="*", default=None, metavar="ORIGIN",
                   help="origins allowed to call the server from a browser (default: none)")
    g.add_argument("--response-timeout", type=_positive_int, default=None,
                   help="seconds a response may take (default 3600, Rasa's: training over HTTP is slow)")
    g.add_argument("--request-timeout", type=_positive_int, default=None,
                   help="seconds a client may take to send its request (default: Sanic's 60)")
    g.add_argument("--ssl-certificate", default=None, help="PEM certificate (chain): serve HTTPS")
    g.add_argument("--ssl-keyfile", default=None, help="PEM private key of --ssl-certificate (default: in the certificate file)")
    g.add_argument("--ssl-password", default=os.environ.get("KEFU_SSL_PASSWORD") or None,
                   help="password of an encrypted --ssl-keyfile (default: env KEFU_SSL_PASSWORD)")
    g = p.add_argument_group("Channels")
    g.add_argument("--credentials", default=None, help="credentials.yml (channels; default: ./credentials.yml if present)")
    g.add_argument("--connector", default=None, metavar="NAME",
                   help="serve only this channel of credentials.yml (e.g. rest, socketio, wechat)")
    g = p.add_argument_group("JWT Authentication")
    g.add_argument("--jwt-secret", default=os.environ.get("KEFU_JWT_SECRET") or None,
                   help="shared secret (HS*) or public key (RS*/ES*) verifying 'Authorization: Bearer JWT' (default: env KEFU_JWT_SECRET)")
    g.add_argument("--jwt-method", default=os.environ.get("KEFU_JWT_METHOD", "HS256"), help="JWT algorithm (default HS256)")
    _add_rasa_only_options(p, "run")

    p = sub.add_parser("shell", help="Chat with the bot in the terminal.")
    p.add_argument("--model", "-m", default="models", help="model archive or folder (default: models/)")
    p.add_argument("--endpoints", default="endpoints.yml", help="endpoints.yml")
    p.add_argument("--sender", "--conversation-id", dest="sender", default="shell", help="conversation id (default: shell)")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")

    p = sub.add_parser("actions", help="Start an action server (rasa_sdk protocol) for the actions package; "
                                       "`run actions` is the same.")
    p.add_argument("--actions", default="actions", help="Python package with the actions (default: actions)")
    p.add_argument("--port", "-p", type=int, default=5055, help="port (default 5055)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")

    p = sub.add_parser("test", help="Evaluate a model: `test` (both), `test core` (stories), `test nlu`, `test kb`.")
    tsub = _SubParsers(p.add_subparsers(dest="test_command", metavar="WHAT"), common)
    ta = tsub.add_parser("all", help="`test` alone: `test core`, then `test nlu` (Rasa's `rasa test`).")
    _add_test_args(ta, core=True, nlu=True)
    tc = tsub.add_parser("core", help="Run test stories; writes story_report.json and failed_test_stories.yml.")
    _add_test_args(tc, core=True, nlu=False)
    tn = tsub.add_parser("nlu", help="Evaluate the NLU pipeline on test data or by cross-validation.")
    _add_test_args(tn, core=False, nlu=True)

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

    from bot.handoff.cli import add_agents_parser

    add_agents_parser(sub)  # `agents set-password ID`, `agents list` (console credentials)

    from bot.customers.cli import add_customers_parser

    add_customers_parser(sub)  # `customers show ID | segment NAME | recompute | check` (Customer 360)

    p = sub.add_parser("data", help="Training data (`data validate`) and customer data (`data export|erase|purge`).")
    dsub = _SubParsers(p.add_subparsers(dest="data_command", metavar="WHAT"), common)
    dv = dsub.add_parser("validate", help="Check domain, data, stories and rules for mistakes.")
    _add_project_args(dv)
    dv.add_argument("--root", default=".")
    dv.add_argument("--fail-on-warnings", action="store_true",
                    help="exit 1 on warnings too (kefu's checks that Rasa does not make, unused responses, "
                    "intents without examples), as Rasa's flag does")
    # --- rasa-cli: data split|convert|suggest (bot/data_tools/, bot/nlu/suggest.py) ---------------
    ds = dsub.add_parser("split", help="`data split nlu`: stratified train/test split of the NLU data.")
    ssub = _SubParsers(ds.add_subparsers(dest="split_command", metavar="WHAT"), common)
    dsn = ssub.add_parser("nlu", help="Write training_data.yml and test_data.yml, each intent split on its own.",
                          description="Split the NLU data like `rasa data split nlu`: per intent (per response "
                                      "key for retrieval intents), synonyms/regexes/lookups kept in the training part.")
    dsn.add_argument("--nlu", "-u", nargs="+", default=None, help="NLU files/folders (default: the project's NLU data)")
    dsn.add_argument("--training-fraction", type=float, default=0.8, help="share kept for training (default 0.8)")
    dsn.add_argument("--random-seed", type=int, default=None, help="seed of the shuffle (default: random)")
    dsn.add_argument("--out", default="train_test_split", help="output folder (default: train_test_split/)")
    dsn.add_argument("--root", default=".", help="project folder (default: current folder)")
    dc = dsub.add_parser("convert", help="`data convert nlu`: Rasa 1/2 Markdown or JSON NLU data to Rasa 3 YAML.")
    csub = _SubParsers(dc.add_subparsers(dest="convert_command", metavar="WHAT"), common)
    for what in ("nlu", "core", "responses", "config"):
        dcn = csub.add_parser(what, help="Markdown/JSON NLU → YAML (or YAML → JSON with -f json)" if what == "nlu"
                              else f"not converted (Rasa 3.6 dropped it): prints what to do")
        dcn.add_argument("--format", "-f", default="yaml", choices=("yaml", "json"), help="output format (default yaml)")
        dcn.add_argument("--data", nargs="+", default=["data"], help="files/folders to convert (default: data/)")
        dcn.add_argument("--out", default="converted_data", help="output folder, or a file for one input (default: converted_data/)")
        dcn.add_argument("--language", "-l", default=None, help="accepted for Rasa scripts (not needed)")
        if what == "core":
            dcn.add_argument("--domain", "-d", default=None, help=argparse.SUPPRESS)
    dg = dsub.add_parser(
        "suggest", help="Cross-validate your NLU pipeline against kefu's recommended one on your data.",
        description="Both pipelines are trained and tested on the same stratified folds of the project's NLU "
                    "data; prints intent accuracy, macro F1, entity F1 and training time per fold, the "
                    "difference, and a one-line recommendation.",
    )
    dg.add_argument("--config", "-c", default=None, help="config.yml with your pipeline (default: ./config.yml)")
    dg.add_argument("--data", nargs="+", default=None, help="training data files/folders (default: data/ and nlu_data/)")
    dg.add_argument("--nlu", "-u", nargs="+", default=None, help="NLU data only (overrides --data)")
    dg.add_argument("--folds", "-f", type=_positive_int, default=5, help="cross-validation folds (default 5)")
    dg.add_argument("--random-seed", type=int, default=42, help="seed of the folds (default 42)")
    dg.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    dg.add_argument("--root", default=".", help="project folder (default: current folder)")
    # --- end rasa-cli ----------------------------------------------------------------------------

    from bot.privacy.cli import add_data_privacy_parsers

    add_data_privacy_parsers(dsub)  # data export|erase|purge (PIPL/GDPR, retention)
    # --- rasa-cli: visualize, interactive --------------------------------------------------------
    p = sub.add_parser("visualize", help="Draw the stories as a graph into graph.html (self-contained page).")
    p.add_argument("--stories", "-s", nargs="+", default=None, help="story files/folders (default: the project's data)")
    p.add_argument("--domain", "-d", default=None, help="domain file or folder (default: ./domain.yml)")
    p.add_argument("--config", "-c", default=None, help="config.yml (default: ./config.yml)")
    p.add_argument("--out", default="graph.html", help="output HTML file (default: graph.html)")
    p.add_argument("--max-history", type=_positive_int, default=2,
                   help="steps whose last N steps agree are drawn once (default 2)")
    p.add_argument("--nlu", "-u", nargs="+", default=None, help="accepted for Rasa scripts: intents are drawn by name")
    p.add_argument("--root", default=".", help="project folder (default: current folder)")
    _add_workbench_parsers(sub)  # interactive, models (bot/workbench/cli.py)
    # --- end rasa-cli ----------------------------------------------------------------------------
    # --- api-auth: `token create` (API credentials, bot/web/tokens.py) -------------------------
    from bot.web.tokens import add_token_parser

    add_token_parser(sub)
    # --- end api-auth ----------------------------------------------------------------------------
    # --- pg: `db upgrade|current|history|stamp` (SQL store migrations, bot/stores/db_cli.py) ------
    from bot.stores.db_cli import add_db_parser

    add_db_parser(sub)
    # --- end pg ----------------------------------------------------------------------------------
    return parser


# ---------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    if args.num_threads is not None:
        import torch

        torch.set_num_threads(args.num_threads)
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
        nlu=args.nlu,
        stories=args.stories,
        parallel=True,
        finetune=args.finetune,
        epoch_fraction=args.epoch_fraction,
    )
    if not result.trained_nlu and not result.trained_core and result.reused_nlu and result.reused_core:
        print(f"Nothing changed. The newest model is still {result.model_path}")
    else:
        parts = []
        trained = "fine-tuned" if args.finetune else "trained"
        parts.append("NLU " + (trained if result.trained_nlu else "reused" if result.reused_nlu else "none"))
        parts.append("core " + (trained if result.trained_core else "reused" if result.reused_core else "none"))
        print(f"Model saved to {result.model_path} ({', '.join(parts)}; {result.seconds:.1f} s)")
    return 0


def _optional_file(path: str | None, default: str, flag: str) -> str | None:
    """An explicitly named file must exist; the default one is used only if present."""
    if path is None:
        return default if Path(default).exists() else None
    if not Path(path).is_file():
        raise ConfigError(f"{flag} {path}: no such file.", fix=f"give {flag} an existing file, or leave it out.")
    return path


def _input_channels(credentials_file: str | None, connector: str | None) -> list[Any]:
    """The channels of credentials.yml (plus REST), or only ``--connector``'s, like ``rasa run``."""
    from bot.shared.yaml_io import read_yaml_file, to_plain
    from connectors.base import create_input_channels
    from connectors.rest import RestInput

    credentials = (to_plain(read_yaml_file(credentials_file)) if credentials_file else None) or {}
    if connector:
        return create_input_channels({connector: credentials.get(connector)})
    channels = create_input_channels(credentials)
    if not any(isinstance(c, RestInput) for c in channels):
        channels.insert(0, RestInput())
    return channels


def cmd_run(args: argparse.Namespace) -> int:
    from bot.server.run import TlsFiles, check_api_access

    # Refuse an open API before loading anything (serve() checks again, and warns).
    check_api_access(enable_api=args.enable_api, auth_token=args.auth_token, jwt_secret=args.jwt_secret,
                     dev_open_api=args.dev_open_api, host=args.host, warn=False)
    tls = None
    if args.ssl_certificate:
        tls = TlsFiles(args.ssl_certificate, args.ssl_keyfile, args.ssl_password)
        tls.check()
    elif args.ssl_keyfile:
        raise ConfigError("--ssl-keyfile was given without --ssl-certificate.",
                          fix="add --ssl-certificate CERT.pem (the certificate of that key), or drop --ssl-keyfile.")

    from functools import partial

    from bot.agent import create_agent_for_server
    from bot.model.archive import resolve_model_path
    from bot.server.run import serve
    from connectors.demo_page import demo_root

    model = resolve_model_path(args.model)  # fail early, in the terminal, if there is none
    channels = _input_channels(_optional_file(args.credentials, "credentials.yml", "--credentials"), args.connector)
    endpoints = _optional_file(args.endpoints, "endpoints.yml", "--endpoints")
    scheme = "https" if tls else "http"
    api = ("on (token)" if args.auth_token else "on (JWT)" if args.jwt_secret else "on, OPEN (development)") \
        if args.enable_api else "off (--enable-api to serve it)"
    print(f"kefu is starting on {scheme}://{args.host}:{args.port} with model {model}; management API: {api}")
    extra: dict[str, Any] = {}
    if args.response_timeout is not None:
        extra["response_timeout"] = args.response_timeout
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
        cors_origins=args.cors or None,
        request_timeout=args.request_timeout,
        enable_api=args.enable_api,
        dev_open_api=args.dev_open_api,
        allow_token_in_url=args.allow_token_in_url,
        ssl=tls,
        log_level=args.log_level,
        log_file=args.log_file,
        **extra,
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
    from bot.shared.concurrency import run_blocking

    agent = await Agent.create(
        args.model, args.endpoints if Path(args.endpoints).exists() else None, project_root=args.root
    )
    nlu_only = agent.processor is not None and agent.processor.ensemble is None
    if nlu_only:  # Rasa's `shell` on an NLU-only model is `shell nlu`: print each parse
        print("kefu shell (NLU-only model: prints what the NLU understood) — /stop to quit.")
    else:
        print("kefu shell — type a message, /restart to start over, /stop to quit.")
    last_buttons: list[dict] = []
    try:
        while True:
            try:
                text = await run_blocking(input, "您/You: ")
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text == "/stop":
                break
            if text.isdigit() and last_buttons and 1 <= int(text) <= len(last_buttons):
                text = last_buttons[int(text) - 1].get("payload") or text
            if nlu_only:
                print(json.dumps(await agent.parse_message(text), ensure_ascii=False, indent=2))
                continue
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
    if args.test_command == "all":
        from bot.testing.runner import run_all_tests

        return run_all_tests(args)
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


def _run_agents(args: argparse.Namespace) -> int:
    from bot.handoff.cli import run_agents

    return run_agents(args)
def _run_customers(args: argparse.Namespace) -> int:  # customer-360
    from bot.customers.cli import run_customers

    return run_customers(args)


def _run_token(args: argparse.Namespace) -> int:  # api-auth
    from bot.web.tokens import run_token_command

    return run_token_command(args)


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "validate":
        from bot.validation import run_validation

        return run_validation(args)
    if args.data_command in ("split", "convert", "suggest"):
        return _run_data_tools(args)
    from bot.privacy.cli import COMMANDS, run_data_privacy

    if args.data_command in COMMANDS:
        return run_data_privacy(args)
    print("Use `python -m bot data validate|split|convert|suggest|export|erase|purge`.", file=sys.stderr)
    return 2


# --- rasa-cli: data split|convert|suggest, visualize, interactive ----------------------------------
def _run_data_tools(args: argparse.Namespace) -> int:
    if args.data_command == "split":
        if args.split_command != "nlu":
            print("Use `python -m bot data split nlu` (Rasa 3.6 splits NLU data only).", file=sys.stderr)
            return 2
        from bot.data_tools.split import split_nlu_files

        paths = args.nlu
        if not paths:
            from bot.model.training import _project_importers

            _, importer = _project_importers(args.root, None, None, None, None, None, nlu_only=True)
            paths = importer.nlu_files
            if not paths:
                raise ConfigError(f"No NLU data in {args.root}.", fix="Pass the NLU files with -u PATH.")
        train, test, result = split_nlu_files(paths, args.out, args.training_fraction, args.random_seed)
        print(f"{len(result.train.training_examples)} training examples → {train}; "
              f"{len(result.test.training_examples)} test examples → {test}")
        return 0
    if args.data_command == "convert":
        from bot.data_tools.convert import NOT_CONVERTED, convert_nlu

        if args.convert_command in NOT_CONVERTED:
            print(f"`data convert {args.convert_command}`: {NOT_CONVERTED[args.convert_command]}", file=sys.stderr)
            return 2
        if args.convert_command != "nlu":
            print("Use `python -m bot data convert nlu -f yaml --data FILE --out DIR`.", file=sys.stderr)
            return 2
        for path in convert_nlu(args.data, args.out, args.format):
            print(f"Converted → {path}")
        return 0
    from bot.testing.suggest import run_suggest

    return run_suggest(args)


def cmd_visualize(args: argparse.Namespace) -> int:
    from bot.visualize import visualize

    target, view = visualize(args.root, args.stories, args.domain, args.config, args.out, args.max_history)
    print(f"Story graph of {len(view.stories)} stories ({len(view.nodes) - 2} steps) written to {target}")
    return 0


def cmd_interactive(args: argparse.Namespace) -> int:
    from bot.workbench.cli import cmd_interactive as run

    return run(args)


def _add_workbench_parsers(sub: Any) -> None:
    from bot.workbench.cli import add_interactive_parser, add_models_parser

    add_interactive_parser(sub)
    add_models_parser(sub)


def cmd_models(args: argparse.Namespace) -> int:
    from bot.workbench.cli import cmd_models as run

    return run(args)
# --- end rasa-cli ------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from bot.scaffold import init_project

    path = init_project(args.path)
    print(f"Starter project written to {path}.")
    if not args.no_train:
        from bot.model.training import train

        result = train(root=path, out=Path(path) / "models")
        print(f"Model saved to {result.model_path}. Chat with it: cd {path} && python -m bot shell")
    return 0


TEST_COMMANDS = ("all", "core", "nlu", "kb", "-h", "--help")


def _resolve_aliases(argv: Sequence[str]) -> list[str]:
    """Rasa's spellings: ``run actions`` is ``actions`` (the action server), ``train nlu|core``
    is ``train --nlu-only|--core-only``, ``test`` alone is ``test all``."""
    args = list(argv)
    i = 0
    while i < len(args) and args[i].startswith("-"):  # global options before the command
        i += 2 if args[i] == "--log-level" else 1
    if args[i:i + 2] == ["run", "actions"]:
        args[i:i + 2] = ["actions"]
    elif args[i:i + 2] == ["train", "nlu"]:  # Rasa's `train nlu` / `train core`
        args[i:i + 2] = ["train", "--nlu-only"]
    elif args[i:i + 2] == ["train", "core"]:
        args[i:i + 2] = ["train", "--core-only"]
    elif args[i:i + 1] == ["test"] and (args[i + 1:i + 2] or [""])[0] not in TEST_COMMANDS:
        args.insert(i + 1, "all")  # `rasa test`: core, then nlu
    return args


def _run_db(args: argparse.Namespace) -> int:
    """`db upgrade|current|history|stamp`: the SQL stores' Alembic migrations (docs/database.md)."""
    from bot.stores.db_cli import run_db_command

    return run_db_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_resolve_aliases(sys.argv[1:] if argv is None else argv))
    _setup_logging(args.log_level, getattr(args, "log_file", None))
    handlers = {
        "init": cmd_init,
        "train": cmd_train,
        "run": cmd_run,
        "shell": lambda a: asyncio.run(_shell(a)),
        "actions": cmd_actions,
        "test": cmd_test,
        "data": cmd_data,
        "visualize": cmd_visualize,  # rasa-cli
        "interactive": cmd_interactive,  # rasa-cli
        "models": cmd_models,  # trainer workbench
        "kb": cmd_kb,
        "shop": _run_shop,
        "triggers": _run_triggers,
        "agents": _run_agents,
        "token": _run_token,  # api-auth
        "db": _run_db,  # pg
        "customers": _run_customers,  # customer-360
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
