"""``docs/security.md``'s role → scope table is the code's ``ROLE_SCOPES``: they cannot drift.

When this fails after a change to ``bot/web/principals.py``, paste the table printed in
the failure between the markers in docs/security.md.
"""
from __future__ import annotations

from pathlib import Path

from bot.web.principals import OPT_IN_SCOPES, ROLE_SCOPES, Role, Scope

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
START, END = "<!-- role-scope-table:start -->", "<!-- role-scope-table:end -->"
ROLES = [role for role in Role if role is not Role.NONE]


def cell(role: Role, scope: Scope) -> str:
    if scope in ROLE_SCOPES[role]:
        return "own" if role is Role.USER else "yes"
    if scope in OPT_IN_SCOPES.get(role, frozenset()):
        return "opt-in"
    return ""


def role_scope_table() -> str:
    lines = ["| scope | " + " | ".join(role.value for role in ROLES) + " |",
             "|---|" + "---|" * len(ROLES)]
    for scope in Scope:
        lines.append(f"| `{scope.value}` | " + " | ".join(cell(role, scope) for role in ROLES) + " |")
    return "\n".join(lines)


def test_security_doc_role_table_matches_role_scopes():
    text = DOC.read_text(encoding="utf-8")
    assert START in text and END in text, f"{DOC} needs the markers {START} and {END} around the table."
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = role_scope_table()
    assert documented == expected, f"Paste this table between the markers in {DOC}:\n{expected}"
    assert ROLE_SCOPES[Role.NONE] == frozenset()  # a role nobody documents must grant nothing
