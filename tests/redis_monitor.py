"""Record which keys each atomic Redis operation touches, to check Redis Cluster safety.

:class:`KeyRecorder` reads ``MONITOR`` on the test redis-server while a test runs. MONITOR
also shows the commands a Lua script runs (``[0 lua]``), so a key a script builds itself
(instead of getting it in ``KEYS``) is caught too. Commands are grouped into what Redis
runs atomically: a script call with the commands it runs, ``MULTI`` … ``EXEC``, or one
command. The keys of every command come from the server itself (``COMMAND GETKEYS``).
Redis Cluster runs a group only when all its keys hash to one slot (``redis.crc.key_slot``).
"""
from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

from redis.crc import key_slot

_LINE = re.compile(rb"^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$")
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b",
            ord('"'): b'"', ord("\\"): b"\\"}
_END = b"kefu-key-recorder-end"


def parse_args(text: bytes) -> list[bytes]:
    """``"SET" "k" "a\\x00b"`` (MONITOR's quoting) -> ``[b"SET", b"k", b"a\\x00b"]``."""
    args: list[bytes] = []
    i = 0
    while i < len(text):
        if text[i] != ord('"'):
            i += 1
            continue
        i += 1
        out = bytearray()
        while text[i] != ord('"'):
            if text[i] == ord("\\"):
                nxt = text[i + 1]
                if nxt == ord("x"):
                    out.append(int(text[i + 2:i + 4], 16))
                    i += 4
                    continue
                out += _ESCAPES.get(nxt, bytes([nxt]))
                i += 2
                continue
            out.append(text[i])
            i += 1
        args.append(bytes(out))
        i += 1
    return args


@dataclass
class Group:
    """One atomic unit: its commands (name + args) and whether a script ran it."""

    commands: list[list[bytes]] = field(default_factory=list)
    script: bool = False


@dataclass
class Recorded:
    """A group with the keys of each of its commands (from ``COMMAND GETKEYS``)."""

    group: Group
    keys: list[list[bytes]]

    @property
    def name(self) -> str:
        return " ".join(c[0].decode().upper() for c in self.group.commands[:3])

    @property
    def all_keys(self) -> set[bytes]:
        return {k for ks in self.keys for k in ks}

    @property
    def declared(self) -> set[bytes]:
        """Keys the first command names (a script call's ``KEYS``)."""
        return set(self.keys[0]) if self.keys else set()

    @property
    def slots(self) -> set[int]:
        return {key_slot(k) for k in self.all_keys}


class KeyRecorder:
    """``with KeyRecorder(host, port) as rec: ...`` then ``rec.groups``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lines: list[tuple[str, list[bytes]]] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.groups: list[Recorded] = []

    def __enter__(self) -> "KeyRecorder":
        self._sock = socket.create_connection((self.host, self.port), timeout=10)
        self._sock.sendall(b"MONITOR\r\n")
        self._file = self._sock.makefile("rb")
        assert self._file.readline().startswith(b"+OK")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        for raw in self._file:
            match = _LINE.match(raw.rstrip(b"\r\n").lstrip(b"+"))
            if not match:
                continue
            args = parse_args(match.group(2))
            if args[:2] == [b"ECHO", _END] or args[:2] == [b"echo", _END]:
                return
            self.lines.append((match.group(1).decode(), args))

    def __exit__(self, *exc: object) -> None:
        with socket.create_connection((self.host, self.port), timeout=10) as sock:
            sock.sendall(b"ECHO " + _END + b"\r\n")
            sock.recv(64)
        assert self._thread is not None
        self._thread.join(timeout=10)
        assert self._sock is not None
        self._file.close()
        self._sock.close()
        if exc[0] is None:
            self.groups = self._analyse()

    def _groups(self) -> list[Group]:
        groups: list[Group] = []
        in_multi = False
        for source, args in self.lines:
            name = args[0].upper()
            if source == "lua":
                groups[-1].commands.append(args)
            elif name == b"MULTI":
                groups.append(Group())
                in_multi = True
            elif name == b"EXEC":
                in_multi = False
            elif in_multi:
                groups[-1].commands.append(args)
            else:
                groups.append(Group([args], script=name in (b"EVAL", b"EVALSHA")))
        return [g for g in groups if g.commands]

    def _analyse(self) -> list[Recorded]:
        import redis

        client = redis.Redis(host=self.host, port=self.port)
        try:
            out = []
            for group in self._groups():
                keys = []
                for command in group.commands:
                    try:
                        keys.append([k if isinstance(k, bytes) else k.encode() for k in client.command_getkeys(*command)])
                    except redis.ResponseError:  # no keys (PING, SCRIPT LOAD, ...)
                        keys.append([])
                out.append(Recorded(group, keys))
            return out
        finally:
            client.close()

    def scripts(self) -> list[Recorded]:
        return [g for g in self.groups if g.group.script]


def assert_cluster_safe(recorder: KeyRecorder) -> None:
    """Every atomic group in one slot, and every key a script touched passed in its ``KEYS``."""
    problems = []
    for rec in recorder.groups:
        if len(rec.slots) > 1:
            problems.append(f"{rec.name}: keys in {len(rec.slots)} slots: {sorted(rec.all_keys)}")
        if rec.group.script and not rec.all_keys <= rec.declared:
            problems.append(f"{rec.name}: script touched keys not in KEYS: {sorted(rec.all_keys - rec.declared)}")
    assert not problems, "\n".join(problems)
