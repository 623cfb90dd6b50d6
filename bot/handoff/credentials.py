"""Where agent credentials and the console's signing secret come from: never a checked-in value.

Per agent, first found wins: ``KEFU_AGENT_<ID>_PASSWORD_HASH`` (an argon2id hash),
``KEFU_AGENT_<ID>_PASSWORD`` (hashed at start), ``password_hash:`` in config.yml,
the project's state file ``.kefu/agents.json`` (written by first run and by
``python -m bot agents set-password``). An agent with none gets a generated password:
only its hash is stored (``.kefu/agents.json``, mode 0600) and the password is printed
once on stdout, never logged. The token signing secret is ``KEFU_HANDOFF_SECRET`` or
``.kefu/handoff-secret`` (generated once, 0600), so every worker signs alike.
``KEFU_STATE_DIR`` moves ``.kefu/`` (e.g. onto a container volume).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Mapping

from bot.handoff.passwords import generate_password, hash_password, is_argon2id_hash, weak_reason, well_known_match
from bot.shared.exceptions import ConfigError

if TYPE_CHECKING:  # pragma: no cover - config.py imports this module (secrets, hash checks)
    from bot.handoff.config import AgentSpec, HandoffConfig

logger = logging.getLogger(__name__)

STATE_DIR_ENV = "KEFU_STATE_DIR"
SECRET_ENV = "KEFU_HANDOFF_SECRET"
AGENTS_FILE = "agents.json"
SECRET_FILE = "handoff-secret"
MIN_SECRET_LENGTH = 32
SET_PASSWORD_FIX = "python -m bot agents set-password {agent}"


def state_dir(root: str | Path) -> Path:
    """The project's private state folder: ``$KEFU_STATE_DIR`` or ``<root>/.kefu`` (git-ignored)."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path(root) / ".kefu")


def env_name(agent_id: str, suffix: str) -> str:
    """``KEFU_AGENT_<ID>_<SUFFIX>``, the id upper-cased with every other character as ``_``."""
    return f"KEFU_AGENT_{re.sub(r'[^A-Z0-9]', '_', agent_id.upper())}_{suffix}"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by the owner only (0600) from the first byte."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by other users (mode {mode:o}); it holds console credentials.",
                          filename=path, fix=f"chmod 600 {path}")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time (Sanic's workers start together) reads-then-writes the state folder."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600), "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class CredentialFile:
    """``.kefu/agents.json``: ``{"agents": {id: {"password_hash": ..., "updated_at": ...}}}``, mode 0600."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / AGENTS_FILE

    def read(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        _check_private(self.path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            agents = data["agents"]
            hashes = {str(k): str(v["password_hash"]) for k, v in agents.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{self.path} is not a kefu credential file.", filename=self.path,
                              fix="Delete it to generate new passwords, or set each with "
                                  "'python -m bot agents set-password ID'.") from e
        for agent_id, value in hashes.items():
            if not is_argon2id_hash(value):
                raise ConfigError(f"Agent '{agent_id}' has no argon2id hash in {self.path}.", filename=self.path,
                                  fix=SET_PASSWORD_FIX.format(agent=agent_id))
        return hashes

    def write(self, hashes: Mapping[str, str]) -> None:
        now = time.time()
        data = {"agents": {k: {"password_hash": v, "updated_at": now} for k, v in sorted(hashes.items())}}
        _write_private(self.path, json.dumps(data, indent=2) + "\n")


def handoff_secret(root: str | Path, env: Mapping[str, str] | None = None) -> str:
    """``$KEFU_HANDOFF_SECRET``, else ``.kefu/handoff-secret`` (created once, 0600)."""
    env = os.environ if env is None else env
    value = env.get(SECRET_ENV)
    if value:
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(f"{SECRET_ENV} is shorter than {MIN_SECRET_LENGTH} characters.",
                              fix=f"Use e.g. `export {SECRET_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')`.")
        return value
    folder = state_dir(root)
    path = folder / SECRET_FILE
    with _locked(folder):
        if not path.is_file():
            _write_private(path, secrets.token_hex(32) + "\n")
            logger.info("Generated the console's token signing secret in %s.", path)
        _check_private(path)
        value = path.read_text(encoding="utf-8").strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"The signing secret in {path} is shorter than {MIN_SECRET_LENGTH} characters.",
                          filename=path, fix=f"Delete {path}; a new one is generated at start.")
    return value


def _from_env(agent: AgentSpec, env: Mapping[str, str]) -> str | None:
    hashed = env.get(env_name(agent.id, "PASSWORD_HASH"))
    if hashed:
        check_hash(agent.id, hashed, where=env_name(agent.id, "PASSWORD_HASH"))
        return hashed
    plain = env.get(env_name(agent.id, "PASSWORD"))
    if plain:
        reason = weak_reason(plain, agent.id)
        if reason:
            raise ConfigError(f"{env_name(agent.id, 'PASSWORD')} is refused: {reason}.",
                              fix=f"Choose another (or unset it and run `{SET_PASSWORD_FIX.format(agent=agent.id)}`).")
        return hash_password(plain)
    return None


def check_hash(agent_id: str, value: object, where: str, filename: str | Path | None = None,
               line: int | None = None) -> None:
    """Refuse a configured hash that is no argon2id hash or hashes a well-known password."""
    fix = f"Run `{SET_PASSWORD_FIX.format(agent=agent_id)}` and remove it from {where}."
    if not is_argon2id_hash(value):
        raise ConfigError(f"Agent '{agent_id}': {where} is not an argon2id hash ($argon2id$v=19$...).",
                          filename=filename, line=line, fix=fix)
    known = well_known_match(str(value), agent_id)
    if known is not None:
        raise ConfigError(f"Agent '{agent_id}': {where} is the hash of a well-known password.",
                          filename=filename, line=line, fix=fix)


def provision(config: HandoffConfig, root: str | Path, *, out: IO[str] | None = None,
              env: Mapping[str, str] | None = None) -> HandoffConfig:
    """``config`` with every agent's password hash filled in; generates and prints the missing ones once."""
    env = os.environ if env is None else env
    file = CredentialFile(state_dir(root))
    stored = file.read()
    hashes: dict[str, str] = {}
    for agent in config.agents:
        found = _from_env(agent, env) or agent.password_hash or stored.get(agent.id)
        if found:
            hashes[agent.id] = found
    missing = [a.id for a in config.agents if a.id not in hashes]
    if missing:
        generated: dict[str, str] = {}
        with _locked(file.folder):
            stored = file.read()  # another worker may have generated them meanwhile
            for agent_id in missing:
                if agent_id in stored:
                    hashes[agent_id] = stored[agent_id]
                else:
                    generated[agent_id] = generate_password()
                    stored[agent_id] = hashes[agent_id] = hash_password(generated[agent_id])
            if generated:
                file.write(stored)
        if generated:
            _show_once(generated, file.path, out if out is not None else sys.stdout)
    agents = tuple(replace(a, password_hash=hashes.get(a.id, "")) for a in config.agents)
    return replace(config, agents=agents)


def _show_once(generated: Mapping[str, str], path: Path, out: IO[str]) -> None:
    logger.warning("Generated console credentials for %d agent(s), stored hashed in %s; "
                   "the passwords are shown once on the console (stdout), never logged.", len(generated), path)
    lines = ["", "=" * 72, "kefu agent console: generated passwords (shown ONCE, only hashes are stored)"]
    lines += [f"  {agent_id:<16} {password}" for agent_id, password in generated.items()]
    lines += [f"Hashes: {path}. Change one: python -m bot agents set-password ID", "=" * 72, ""]
    print("\n".join(lines), file=out, flush=True)


def set_password(root: str | Path, agent_id: str, password: str) -> Path:
    """Store the argon2id hash of ``password`` for ``agent_id`` in the state file; refuses weak ones."""
    reason = weak_reason(password, agent_id)
    if reason:
        raise ConfigError(f"Password for '{agent_id}' refused: {reason}.",
                          fix="Choose a longer, unique one, or let kefu generate one (--generate).")
    file = CredentialFile(state_dir(root))
    with _locked(file.folder):
        stored = file.read()
        stored[agent_id] = hash_password(password)
        file.write(stored)
    return file.path
