"""The Redis keys of the handoff's shared state (live queue, presence, login throttling)."""
from __future__ import annotations

from bot.stores.keys import KeyBuilder


def handoff_keys(prefix: str) -> KeyBuilder:
    """The keys of the handoff's shared state (live queue and presence) for ``prefix``.

    One hash tag, the prefix (``{kefu:handoff}:...``), for all of them: the expiry script and
    set_online/set_away touch an agent's presence key together with the shared ``online`` set,
    replace_loads rewrites every agent's load in one MULTI, and the live queue adds to
    ``where``, ``queues`` and a queue's sorted set in one MULTI; so no per-agent or per-queue
    tag can keep them in one Redis Cluster slot. The prefix's trailing ``:`` (``kefu:handoff:``
    in config) is dropped, the builder adds its own separators.
    """
    return KeyBuilder(prefix.rstrip(":") or prefix)
