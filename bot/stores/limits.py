"""Length limits of the SQL stores' string columns, checked before a value reaches the database.

PostgreSQL enforces ``VARCHAR(n)`` ("value too long for type character varying(128)",
a 500 in the middle of a request); SQLite ignores it and stores anything. So that both
behave alike — and a client learns which field was too long — values that come from
outside (the events API, the agent console, the audit of a conversation read) are
checked at the edge with :func:`check_length`, and the stores check their rows with
:func:`check_row` as a net for every other path. Both raise :class:`ValueTooLong`, an
``InvalidRequest`` (HTTP 400) naming the field and the limit.
"""
from __future__ import annotations

from typing import Any, Mapping

from bot.shared.exceptions import InvalidRequest


class ValueTooLong(InvalidRequest):
    """A string longer than the column that would store it (HTTP 400)."""

    def __init__(self, field: str, length: int, limit: int, where: str = "") -> None:
        self.field, self.length, self.limit = field, length, limit
        place = f"{where}: " if where else ""
        super().__init__(f"{place}'{field}' is {length} characters long; the limit is {limit}. "
                         f"Fix: send a {field} of at most {limit} characters.")


def column_limit(table: Any, column: str) -> int | None:
    """The declared length of ``table.c[column]`` (None: unbounded, e.g. Text)."""
    length = getattr(table.c[column].type, "length", None)
    return int(length) if length else None


def check_length(value: Any, field: str, limit: int | None, where: str = "") -> None:
    """Raise :class:`ValueTooLong` when ``value`` (a string, or what ``str`` makes of it) is over ``limit``."""
    if value is None or limit is None:
        return
    length = len(value if isinstance(value, str) else str(value))
    if length > limit:
        raise ValueTooLong(field, length, limit, where)


def check_row(table: Any, values: Mapping[str, Any], where: str = "", names: Mapping[str, str] | None = None) -> None:
    """Check every string value of a row against its column's length (``names``: column → field name shown)."""
    for column, value in values.items():
        if isinstance(value, str) and column in table.c:
            check_length(value, (names or {}).get(column, column), column_limit(table, column), where)
