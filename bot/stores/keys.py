"""One Redis key builder, with hash tags so multi-key Lua scripts work on Redis Cluster.

Redis Cluster runs a script only when all its keys hash to one slot; a ``{tag}``
in a key makes only the tag count. Every key a script touches together must share
the tag: :meth:`KeyBuilder.key` puts ``{tag}`` right after the prefix, e.g.
``kefu:socketio:{sess-1}:seq`` and ``kefu:socketio:{sess-1}:log`` land in one slot,
while different sessions spread over the cluster.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyBuilder:
    """``prefix:{tag}:part:part``; ``tag`` None hashes the whole prefix as one tag."""

    prefix: str

    def key(self, *parts: str, tag: str | None = None) -> str:
        """A key whose slot is decided by ``tag`` (by the prefix when ``tag`` is None)."""
        head = f"{self.prefix}:{{{tag}}}" if tag is not None else f"{{{self.prefix}}}"
        return ":".join([head, *[str(p) for p in parts]])

    def pattern(self, *parts: str, tag: str | None = None) -> str:
        """A SCAN/KEYS match pattern for keys built with the same parts (``*`` allowed)."""
        return self.key(*parts, tag=tag)
