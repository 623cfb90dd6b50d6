"""``python -m bot agents set-password ID`` / ``agents list``: console credentials from the terminal.

The password is read without echo (or from stdin with ``--password-stdin``, or generated
with ``--generate`` and printed once); only its argon2id hash is written, to
``.kefu/agents.json`` (mode 0600). It reads the agent ids leniently, so it works on the
project whose start was just refused for a plaintext password.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError


def add_agents_parser(sub: Any) -> None:
    p = sub.add_parser("agents", help="Agent console credentials: `agents set-password ID`, `agents list`.")
    asub = p.add_subparsers(dest="agents_command", metavar="WHAT")
    sp = asub.add_parser("set-password", help="Store a new password hash for an agent in .kefu/agents.json.")
    sp.add_argument("agent_id", help="the agent's id in config.yml's handoff.agents")
    sp.add_argument("--root", default=".", help="project folder (default: current folder)")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--generate", action="store_true", help="generate a strong password and print it once")
    how.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    ls = asub.add_parser("list", help="Show each agent and where its credential comes from (never the hash).")
    ls.add_argument("--root", default=".", help="project folder (default: current folder)")


def _configured_agents(root: Path) -> dict[str, dict[str, Any]]:
    """``handoff.agents`` of config.yml and endpoints.yml, without validating (no credential checks)."""
    from bot.shared.yaml_io import read_yaml_file, to_plain

    agents: dict[str, dict[str, Any]] = {}
    for name in ("config.yml", "endpoints.yml"):
        path = root / name
        if not path.is_file():
            continue
        section = (to_plain(read_yaml_file(path)) or {}).get("handoff") or {}
        for entry in section.get("agents") or [] if isinstance(section, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                agents[entry["id"]] = {**entry, "_file": name}
    return agents


def _source(agent_id: str, entry: dict[str, Any], stored: dict[str, str]) -> str:
    from bot.handoff.credentials import env_name

    if os.environ.get(env_name(agent_id, "PASSWORD_HASH")):
        return f"environment ({env_name(agent_id, 'PASSWORD_HASH')})"
    if os.environ.get(env_name(agent_id, "PASSWORD")):
        return f"environment ({env_name(agent_id, 'PASSWORD')})"
    if "password" in entry:
        return f"PLAINTEXT in {entry['_file']} (refused at start)"
    if entry.get("password_hash"):
        return f"password_hash in {entry['_file']}"
    if agent_id in stored:
        return "state file (.kefu/agents.json)"
    return "none yet (generated and shown once at the next start)"


def run_agents(args: argparse.Namespace) -> int:
    from bot.handoff.credentials import CredentialFile, set_password, state_dir
    from bot.handoff.passwords import generate_password

    if args.agents_command not in ("list", "set-password"):
        print("Use `python -m bot agents set-password ID` or `python -m bot agents list`.", file=sys.stderr)
        return 2
    root = Path(args.root)
    agents = _configured_agents(root)
    if args.agents_command == "list":
        stored = CredentialFile(state_dir(root)).read()
        for agent_id, entry in agents.items():
            print(f"{agent_id:<16} {entry.get('role', 'agent'):<11} {_source(agent_id, entry, stored)}")
        return 0
    agent_id = args.agent_id
    if agent_id not in agents:
        raise ConfigError(f"No agent '{agent_id}' under handoff.agents.", filename=root / "config.yml",
                          fix=f"Use one of: {', '.join(agents) or '(none configured)'}.")
    if args.generate:
        password = generate_password()
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"New password for {agent_id}: ")
        if getpass.getpass("Again: ") != password:
            print("The two passwords differ; nothing changed.", file=sys.stderr)
            return 1
    path = set_password(root, agent_id, password)
    print(f"Stored the password hash for '{agent_id}' in {path}.")
    if args.generate:
        print(f"Password for {agent_id} (shown once): {password}")
    source = _source(agent_id, agents[agent_id], {agent_id: "x"})
    if not source.startswith("state file"):
        print(f"Note: {source} takes precedence over the state file; remove it there.", file=sys.stderr)
    print("Restart the server for the change to take effect.")
    return 0
