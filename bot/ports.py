"""Ports: how the engine reaches a project's business data without importing it.

The handoff record wants a customer profile and the outbox relay wants the
project's behaviour events; where those live (the demo's shop database, a
merchant's API, nothing at all) is the project's business. endpoints.yml names
a class per port, the way Rasa names a custom tracker store::

    ports:
      profile: {type: actions.shop.ports.ShopProfilePort}
      outbox: {type: actions.shop.ports.ShopOutboxPort, batch: 100}
      erasure: {type: actions.shop.ports.ShopErasurePort}
      compensation: {type: actions.shop.ports.ShopCompensationPort}

Every key beside ``type`` is passed to the class as a keyword argument, after
``project_root``. A project without a ``ports:`` section has no profile and no
relay, and the engine never imports anything of it for these.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from bot.dialogue.actions.project_package import load_action_package
from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)

SECTION = "ports"


@runtime_checkable
class ProfilePort(Protocol):
    """Who the shopper is, for the agent who takes over a conversation."""

    async def profile(self, channel: str | None, sender_id: str) -> dict[str, Any] | None:
        """The profile of ``sender_id`` on ``channel``, or None when unknown or unavailable.

        The dict has ``customer_id``, ``name``, ``orders``, ``lifetime_value_cents``,
        ``open_after_sales`` (list of ``{order_id, kind, status, reason}``),
        ``recent_orders`` (list of ``{id, status, total_cents}``) and ``vip`` (bool).
        Must not raise: a profile is a nicety, the handoff goes on without one.
        """
        ...


@runtime_checkable
class OutboxPort(Protocol):
    """Behaviour events the project wrote (a transactional outbox), for the event broker.

    Delivery is at-least-once: the relay marks events only after the broker took
    them, so each event needs a stable ``outbox_id`` consumers can dedupe on.
    """

    # Seconds between relays; None: the relay's default; 0 or less: no relay at all.
    interval: float | None

    async def pending(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` unpublished events, oldest first, each with an ``outbox_id``."""
        ...

    async def mark_published(self, outbox_ids: Sequence[Any]) -> None:
        """Never hand these out again."""
        ...

    async def close(self) -> None:
        """Release connections; the relay calls it once when it stops.

        Build the port cheaply (no connection in ``__init__``): it may be built and
        never used, when its ``interval`` turns the relay off.
        """
        ...


@runtime_checkable
class ErasurePort(Protocol):
    """The project's own data about one customer, for PIPL/GDPR export and erasure requests
    (``python -m bot data export|erase``, ``/data/customers/<id>``; see bot/privacy)."""

    async def identities(self, customer_id: str) -> dict[str, Any] | None:
        """Who ``customer_id`` is (a customer id, or a channel id such as an openid):
        ``{"customer_id": "42", "sender_ids": ["oUpF8u...", ...]}``, or None when unknown."""
        ...

    async def export(self, customer_id: str) -> dict[str, Any] | None:
        """Everything the project holds about the customer, as JSON-ready data."""
        ...

    async def erase(self, customer_id: str) -> dict[str, Any]:
        """Erase or anonymise the customer; returns what was done (counts, no personal data)."""
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class CompensationPort(Protocol):
    """Compensation coupons an agent issues from the console for a complaint (the handoff route
    ``POST /handoff/api/handoffs/<id>/compensation``). The project owns the limits per role."""

    async def compensate(self, customer_id: str, *, amount_cents: int, role: str, agent: str,
                         case_id: str) -> dict[str, Any]:
        """Issue one coupon for ``case_id`` (a repeat returns the first one) if ``role`` may give ``amount_cents``.

        Returns ``{"ok": bool, "code": "ok" | "over_limit" | "role_not_allowed" | ...,
        "limit_cents": int | None, "coupon_code": str | None, "amount_cents": int | None,
        "new": bool, "message": {"zh": ..., "en": ...} | None}`` where ``message`` is what
        the shopper is sent (code, value, expiry, terms). The role comes from the agent's
        verified console login; the engine never takes it from a request.
        """
        ...


# key under `ports:` → the protocol its class must satisfy
PORTS: dict[str, type] = {"profile": ProfilePort, "outbox": OutboxPort, "erasure": ErasurePort,
                          "compensation": CompensationPort}


@dataclass(frozen=True)
class Ports:
    """The ports a project configures; None where it configures none."""

    profile: ProfilePort | None = None
    outbox: OutboxPort | None = None
    erasure: ErasurePort | None = None
    compensation: CompensationPort | None = None


def import_project_class(dotted_path: str, project_root: Path) -> type:
    """``package.module.ClassName``, importing ``package`` from the project folder when it is there.

    The one place ports touch the import system; a project package is loaded by the same
    rules as the custom-actions package (``load_action_package``). Raises ImportError/AttributeError.
    """
    module_name, _, class_name = dotted_path.rpartition(".")
    if not module_name or not class_name:
        raise ImportError(f"{dotted_path!r} is not a dotted path `package.module.ClassName`")
    top = module_name.split(".")[0]
    root = project_root.resolve()
    if (root / top).is_dir() or (root / f"{top}.py").is_file():
        # The project's own package, loaded like its custom actions: from its folder,
        # without putting the folder on sys.path for the whole process.
        load_action_package(top, root)
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def _missing_methods(cls: type, protocol: type) -> list[str]:
    """The protocol's methods ``cls`` lacks, or has but not as ``async def``."""
    missing = []
    for name, member in vars(protocol).items():
        if name.startswith("_") or not inspect.iscoroutinefunction(member):
            continue
        found = getattr(cls, name, None)
        if found is None:
            missing.append(f"async def {name}()")
        elif not inspect.iscoroutinefunction(found):
            missing.append(f"async def {name}() (it is not async)")
    return missing


def _missing_attributes(port: Any, protocol: type) -> list[str]:
    """The protocol's data attributes the built ``port`` lacks."""
    return [f"attribute `{name}`" for name in getattr(protocol, "__annotations__", {}) if not hasattr(port, name)]


def ports_section(settings: Any) -> tuple[dict[str, Any], str, int | None]:
    """(the `ports:` mapping, the file it is in, its line) from ProjectSettings."""
    filename = "endpoints.yml"
    endpoints = getattr(settings, "endpoints", None)
    if endpoints is not None and getattr(endpoints, "filename", None):
        filename = endpoints.filename
    raw = settings.section(SECTION)
    if raw is None:
        return {}, filename, None
    line = getattr(raw, "line", None)
    if hasattr(raw, "as_dict"):  # endpoints.yml extras arrive as an EndpointConfig
        filename = getattr(raw, "filename", None) or filename
        raw = raw.as_dict()
    if not isinstance(raw, dict):
        raise ConfigError(f"`{SECTION}:` must be a mapping of port names to classes, got {type(raw).__name__}.",
                          filename, line, fix=f"Write e.g. `{SECTION}:` with an indented "
                          "`outbox: {type: actions.shop.ports.ShopOutboxPort}`.")
    return raw, filename, line


def load_port(name: str, entry: Any, project_root: Path, filename: str = "endpoints.yml",
              line: int | None = None) -> Any:
    """Build the port ``name`` from its ``{type: module.Class, **options}`` entry."""
    protocol = PORTS.get(name)
    key = f"{SECTION}: {name}"
    if protocol is None:
        raise ConfigError(f"`{SECTION}:` has an unknown port `{name}`; valid ports: {', '.join(sorted(PORTS))}.",
                          filename, line, fix=f"Rename it to one of {', '.join(sorted(PORTS))} or remove it.")
    if isinstance(entry, str):
        entry = {"type": entry}
    if not isinstance(entry, dict) or not entry.get("type"):
        raise ConfigError(f"`{key}` needs `type: module.path.ClassName`.", filename, line,
                          fix=f"Write `{name}: {{type: actions.shop.ports.Shop{name.title()}Port}}` "
                              "(a class importable from the project folder).")
    options = dict(entry)
    dotted = str(options.pop("type"))
    try:
        cls = import_project_class(dotted, project_root)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"`{key}` type `{dotted}` cannot be imported ({type(e).__name__}: {e}).", filename, line,
                          fix=f"Point `type:` at a class `module.path.ClassName` importable from {project_root} "
                              f"(e.g. actions.shop.ports.Shop{name.title()}Port), or remove `{name}:`.") from e
    if not isinstance(cls, type):
        raise ConfigError(f"`{key}` type `{dotted}` is a {type(cls).__name__}, not a class.", filename, line,
                          fix=f"Name a class that implements bot.ports.{protocol.__name__}.")
    _check(_missing_methods(cls, protocol), key, dotted, protocol, filename, line)
    try:
        port = cls(project_root=project_root, **options)
    except TypeError as e:
        raise ConfigError(f"`{key}`: {dotted} does not accept the options {sorted(options)} ({e}).", filename, line,
                          fix=f"Remove the options {cls.__name__} does not take, or add them to its __init__.") from e
    except Exception as e:  # noqa: BLE001 - any failure to build is a configuration problem to name
        raise ConfigError(f"`{key}`: {dotted} could not be built ({type(e).__name__}: {e}).", filename, line,
                          fix=f"Check the options of `{name}:` and the project's own configuration.") from e
    _check(_missing_attributes(port, protocol), key, dotted, protocol, filename, line)
    return port


def _check(missing: list[str], key: str, dotted: str, protocol: type, filename: str, line: int | None) -> None:
    if missing:
        raise ConfigError(f"`{key}` type `{dotted}` does not implement bot.ports.{protocol.__name__}: "
                          f"it lacks {', '.join(missing)}.", filename, line,
                          fix=f"Add the missing members to {dotted.rpartition('.')[2]} (see bot/ports.py).")


def load_configured_port(settings: Any, name: str) -> Any:
    """Only the port ``name`` (built from ``ports: <name>``), or None when the project configures none.

    Each user builds just its own port, so a broken profile port cannot stop the relay.
    """
    section, filename, line = ports_section(settings)
    if section.get(name) is None:
        return None
    return load_port(name, section[name], Path(settings.root), filename, line)


def load_ports(settings: Any) -> Ports:
    """The ports ``settings`` (bot.feature.ProjectSettings) configure under ``ports:``."""
    section, filename, line = ports_section(settings)
    built = {name: load_port(name, entry, Path(settings.root), filename, line) for name, entry in section.items()}
    for name, port in built.items():
        logger.info("Port %s: %s.", name, type(port).__name__)
    return Ports(**built)
