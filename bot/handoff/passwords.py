"""Agent passwords: argon2id hashes, checked off the event loop, well-known ones refused.

An argon2id verification costs ~0.15 s of CPU and 64 MiB (argon2-cffi's RFC 9106
low-memory profile), so it never runs on the event loop: :func:`averify` and
:func:`ahash` run on a small pool of their own, which also bounds the memory a
burst of logins can take. An unknown agent id is verified against a dummy hash so
that a wrong id and a wrong password take the same time.
"""
from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from bot.shared.concurrency import run_blocking

HASHER = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
HASH_PREFIX = "$argon2id$"
MIN_LENGTH = 12
HASH_WORKERS = 2  # concurrent hashes per process: 2 x 64 MiB at most
# Refused as passwords and detected inside configured hashes (plus the agent's own id).
WELL_KNOWN = ("kefu-demo", "admin", "password", "123456", "12345678", "qwerty", "111111", "changeme",
              "secret", "letmein", "kefu", "demo")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_dummy: str | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="kefu-password")
        return _pool


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` with a random salt (blocking: call :func:`ahash` on a loop)."""
    return HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the argon2 hash ``stored``; False for a mismatch or a broken hash."""
    try:
        return HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def is_argon2id_hash(value: object) -> bool:
    """Whether ``value`` is a well-formed argon2id hash string (``$argon2id$v=19$m=...``)."""
    if not isinstance(value, str) or not value.startswith(HASH_PREFIX):
        return False
    try:
        extract_parameters(value)
    except InvalidHashError:
        return False
    return True


def generate_password() -> str:
    """A strong random password (144 bits, URL-safe characters)."""
    return secrets.token_urlsafe(18)


def weak_reason(password: str, agent_id: str) -> str | None:
    """Why ``password`` is too weak for ``agent_id``, or None when it is acceptable."""
    if password.casefold() in WELL_KNOWN or password.casefold() == agent_id.casefold():
        return "it is a well-known password (or the agent's own id)"
    if len(password) < MIN_LENGTH:
        return f"it is shorter than {MIN_LENGTH} characters"
    return None


def well_known_match(stored: str, agent_id: str) -> str | None:
    """The well-known password (or the agent id) that ``stored`` is a hash of, if any.

    One verification per candidate: about 2 s of CPU for a hash with default costs.
    It runs once at start, only for hashes written into config files or the environment
    (generated credentials and ``agents set-password`` refuse weak passwords before hashing).
    """
    for candidate in (*WELL_KNOWN, agent_id):
        if verify_password(candidate, stored):
            return candidate
    return None


def _dummy_hash() -> str:
    global _dummy
    if _dummy is None:
        _dummy = hash_password(secrets.token_hex(16))
    return _dummy


def _verify_or_dummy(password: str, stored: str | None) -> bool:
    if not stored:
        verify_password(password, _dummy_hash())  # same cost as a real check: no timing hint
        return False
    return verify_password(password, stored)


async def averify(password: str, stored: str | None) -> bool:
    """:func:`verify_password` off the event loop; ``stored`` None (unknown agent) costs the same and fails."""
    return await run_blocking(_verify_or_dummy, password, stored, executor=_executor())


async def ahash(password: str) -> str:
    """:func:`hash_password` off the event loop."""
    return await run_blocking(hash_password, password, executor=_executor())
