"""Who is calling: a verified principal with a role and the scopes that role grants.

Every route declares the scope it needs (``requires_scope``); the principal comes only
from a verified credential (the API token, a JWT signed with the server's secret, a
console login, a shop-signed widget token), never from a request field. The table below
is the one place that says which role may do what; ``docs/security.md`` prints it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Scope(str, Enum):
    """What a route needs. Values are the strings that appear in JWT ``scopes`` claims."""

    STATUS_READ = "status:read"  # /status, /domain, version details
    MODEL_PARSE = "model:parse"  # POST /model/parse
    MODEL_TEST = "model:test"  # POST /model/test/intents, test stories
    MODEL_TRAIN = "model:train"  # POST /model/train (a candidate; activating is MODEL_WRITE)
    MODEL_WRITE = "model:write"  # PUT /model (activate / roll back)
    CONVERSATIONS_READ = "conversations:read"  # trackers, transcripts (audited)
    CONVERSATIONS_WRITE = "conversations:write"  # append/replace events, messages, execute, trigger_intent, predict
    KNOWLEDGE_READ = "knowledge:read"
    KNOWLEDGE_WRITE = "knowledge:write"  # edit FAQ entries, reload
    EVENTS_WRITE = "events:write"  # POST /events (behaviour events)
    EVENTS_TRUSTED = "events:trusted"  # may set channel, openid, time zone, consent in an event
    TRIGGERS_READ = "triggers:read"  # reports
    TRIGGERS_WRITE = "triggers:write"  # stop/resume A/B variants
    AUDIT_READ = "audit:read"
    DATA_ADMIN = "data:admin"  # export and erase one customer's data, retention
    HANDOFF_AGENT = "handoff:agent"  # the console: own queues and conversations
    HANDOFF_SUPERVISE = "handoff:supervise"  # the console: every queue, transfers, audit of handoffs
    TRAINING_ANNOTATE = "training:annotate"  # the workbench: write training data (examples, FAQ phrasings, test stories)
    METRICS_READ = "metrics:read"  # GET /metrics (Prometheus): operational figures, no shopper data
    CUSTOMERS_READ = "customers:read"  # Customer 360: profile, health, timeline, segments
    CUSTOMERS_WRITE = "customers:write"  # Customer 360: merge/unmerge, recompute, reload rules
    ANALYTICS_READ = "analytics:read"  # the operations dashboard (/dashboard) and its CSV exports


class Role(str, Enum):
    ADMIN = "admin"
    TRAINER = "trainer"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    EVENT_PRODUCER = "event_producer"
    MONITOR = "monitor"  # a metrics scraper (Prometheus): /metrics only
    USER = "user"  # Rasa's JWT role: a shopper, on their own conversation only
    NONE = "none"  # a verified JWT naming no known role: authenticated, allowed nothing (403, not 401)


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.TRAINER: frozenset({Scope.STATUS_READ, Scope.MODEL_PARSE, Scope.MODEL_TEST, Scope.MODEL_TRAIN,
                             Scope.CONVERSATIONS_READ, Scope.KNOWLEDGE_READ, Scope.TRIGGERS_READ,
                             Scope.TRAINING_ANNOTATE, Scope.ANALYTICS_READ}),
    Role.SUPERVISOR: frozenset({Scope.STATUS_READ, Scope.HANDOFF_AGENT, Scope.HANDOFF_SUPERVISE,
                                Scope.CONVERSATIONS_READ, Scope.TRIGGERS_READ,
                                Scope.CUSTOMERS_READ, Scope.CUSTOMERS_WRITE, Scope.ANALYTICS_READ}),
    Role.AGENT: frozenset({Scope.STATUS_READ, Scope.HANDOFF_AGENT, Scope.CUSTOMERS_READ}),
    Role.EVENT_PRODUCER: frozenset({Scope.EVENTS_WRITE}),
    Role.MONITOR: frozenset({Scope.METRICS_READ}),
    Role.USER: frozenset({Scope.CONVERSATIONS_READ, Scope.CONVERSATIONS_WRITE}),  # own conversation only
    Role.NONE: frozenset(),
}

# Scopes a role may hold only when its credential names them in a ``scopes`` claim (they are
# never granted by the role alone): an event producer is untrusted unless its token was minted
# with ``python -m bot token create --trusted``.
OPT_IN_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.EVENT_PRODUCER: frozenset({Scope.EVENTS_TRUSTED}),
}


def scopes_for(role: Role, claimed: frozenset[Scope] | None = None) -> frozenset[Scope]:
    """A credential's scopes: the role's, narrowed by a ``scopes`` claim; opt-in ones only when claimed.

    ``claimed`` None means the credential has no ``scopes`` claim. A claim can never widen a
    role beyond ``ROLE_SCOPES`` plus ``OPT_IN_SCOPES``.
    """
    granted = ROLE_SCOPES.get(role, frozenset())
    if claimed is None:
        return granted
    return (granted | OPT_IN_SCOPES.get(role, frozenset())) & claimed


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``conversation_id`` limits a shopper (Rasa's ``user`` role) to one conversation."""

    subject: str
    role: Role
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    conversation_id: str | None = None
    via: str = "token"  # token | jwt | console | widget — how it was verified (for the audit log)

    def has(self, scope: Scope, conversation_id: str | None = None) -> bool:
        if scope not in self.scopes:
            return False
        if self.conversation_id is not None:  # a shopper: only their own conversation
            return conversation_id is not None and conversation_id == self.conversation_id
        return True

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
