"""Custom actions over the rasa_sdk action-server HTTP protocol (``POST /webhook``).

Request: ``{"next_action", "sender_id", "tracker", "domain", "version"}``.
Response: ``{"events": [...], "responses": [...]}``; HTTP 400 with ``action_name`` and
``error`` means the action rejected execution (forms use that to hand control back).
Everything else that goes wrong (server down, timeout, 5xx, bad JSON) is an
``ActionExecutionError`` naming the action and the URL; the processor turns it into
fallback behaviour.

Every call to one action server goes through one pooled ``httpx.AsyncClient`` per
event loop (``action_http_client``): keep-alive connections are reused across turns
instead of a TCP connect (and a client set-up) per action. ``warm_up_action_server``
opens a connection at start; ``close_action_clients`` closes the pool at shutdown.

The domain is serialised once per model, not per call (``domain_json``). As in Rasa
3.6, ``enable_selective_domain: true`` under ``action_endpoint`` sends it only to the
actions listed with ``send_domain: true`` in the domain. Every call also carries a
``domain_digest``: a rasa_sdk that caches the domain (3.8 and later) answers HTTP 449
when it was sent no domain and does not know the digest, and the call is repeated
with the domain, as newer Rasa does; older rasa_sdk versions ignore the key.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from typing import TYPE_CHECKING, Any

import httpx

from bot.dialogue.actions.base import Action, create_bot_utterance, generate_response
from bot.shared.events import Event
from bot.shared.exceptions import ActionExecutionError, ActionExecutionRejection

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.endpoints import EndpointConfig
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)

# The Rasa version kefu speaks the action-server protocol of.
RASA_PROTOCOL_VERSION = "3.6.21"
DEFAULT_ACTION_TIMEOUT_S = 5.0
# Rasa's endpoints.yml key (action_endpoint): send the domain only to `send_domain: true` actions.
SELECTIVE_DOMAIN = "enable_selective_domain"
# rasa_sdk's answer to a call without a domain whose digest it does not know.
DOMAIN_NOT_CACHED_STATUS = 449


# One pooled client per (event loop, timeout): an httpx client belongs to the loop it
# was first used on, and a Sanic worker has one loop for its whole life.
_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def action_http_client(timeout: float) -> httpx.AsyncClient:
    """The shared, pooled client of the running loop for action calls with ``timeout``."""
    loop = asyncio.get_running_loop()
    clients = _CLIENTS.setdefault(loop, {})
    client = clients.get(timeout)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(timeout=timeout)
        clients[timeout] = client
    return client


async def close_action_clients() -> None:
    """Close the running loop's action-server clients (the agent's shutdown)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - always called from a coroutine
        return
    for client in list(_CLIENTS.pop(loop, {}).values()):
        await client.aclose()


async def warm_up_action_server(action_endpoint: Any) -> bool:
    """Open a pooled connection to the action server (``GET /health``) so the first turn doesn't.

    Returns whether the server answered; a server that is down is logged, not raised
    (it may come up later, and each action call reports its own error then).
    """
    url = getattr(action_endpoint, "url", None)
    if not url:
        return False
    health = url.rsplit("/", 1)[0] + "/health" if url.rstrip("/").endswith("/webhook") else url
    try:
        client = action_http_client(endpoint_timeout(action_endpoint))
        response = await client.get(health)
    except (httpx.HTTPError, ActionExecutionError) as e:
        logger.warning("The action server at %s is not reachable at start (%s); custom actions will fail "
                       "until it is. Fix: start it with `python -m bot actions`.", url, type(e).__name__)
        return False
    return response.status_code < 500


# id(domain) -> (domain, its JSON text, digest); the domain itself is kept, so its id stays its own.
_DOMAIN_JSON: dict[int, tuple[Any, str, str]] = {}
_DOMAIN_JSON_KEPT = 8


def _dumps(value: Any) -> str:
    """JSON as httpx sends it (``json=``): compact, UTF-8 text, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def domain_json(domain: Domain) -> tuple[str, str]:
    """(the domain's JSON text, its digest), built once per domain object.

    A loaded model's domain never changes (a new model brings a new domain), and its
    ``as_dict()`` is a deep copy: serialising it on every action call cost as much as
    the rest of the request for a large domain.
    """
    entry = _DOMAIN_JSON.get(id(domain))
    if entry is None or entry[0] is not domain:
        text = _dumps(domain.as_dict())
        entry = (domain, text, hashlib.sha256(text.encode("utf-8")).hexdigest())
        if len(_DOMAIN_JSON) >= _DOMAIN_JSON_KEPT:
            _DOMAIN_JSON.clear()
        _DOMAIN_JSON[id(domain)] = entry
    return entry[1], entry[2]


def action_request_body(
    name: str, tracker: DialogueStateTracker, domain: Domain, include_domain: bool = True,
    version: str = RASA_PROTOCOL_VERSION,
) -> bytes:
    """The JSON body of an action-server call (``action_call_payload`` plus ``domain_digest``),
    with the domain's cached JSON spliced in when ``include_domain``."""
    from bot.shared.tracker import EventVerbosity

    text, digest = domain_json(domain)
    body = _dumps({
        "next_action": name,
        "sender_id": tracker.sender_id,
        "tracker": tracker.current_state(EventVerbosity.ALL),
        "version": version,
        "domain_digest": digest,
    })
    if include_domain:
        body = body[:-1] + ',"domain":' + text + "}"
    return body.encode("utf-8")


def action_call_payload(
    name: str, tracker: DialogueStateTracker, domain: Domain, version: str = RASA_PROTOCOL_VERSION
) -> dict[str, Any]:
    """The JSON body rasa_sdk expects for running ``name``."""
    from bot.shared.tracker import EventVerbosity

    return {
        "next_action": name,
        "sender_id": tracker.sender_id,
        "tracker": tracker.current_state(EventVerbosity.ALL),
        "domain": domain.as_dict(),
        "version": version,
    }


def deserialise_events(name: str, events_json: list[Any]) -> list[Event]:
    """Events from an action result; malformed ones are logged and skipped (as Rasa)."""
    events: list[Event] = []
    for item in events_json or []:
        try:
            event = Event.from_parameters(item)
        except Exception as e:  # noqa: BLE001 - one bad event must not lose the others
            logger.error("Custom action '%s' returned an invalid event %r: %s", name, item, e)
            continue
        if event is None:
            logger.error("Custom action '%s' returned an unknown event %r.", name, item)
            continue
        events.append(event)
    return events


async def utter_responses(
    responses: list[dict[str, Any]], output_channel: Any, nlg: Any, tracker: DialogueStateTracker
) -> list[Event]:
    """``BotUttered`` events for an action's ``responses`` (named domain responses rendered)."""
    bot_messages: list[Event] = []
    for raw in responses or []:
        response = dict(raw)
        response_name = response.pop("response", None)
        template_name = response.pop("template", None)
        response_name = response_name or template_name
        if response_name:
            # extra keys (e.g. slot-like kwargs) fill the response's placeholders
            kwargs = {k: v for k, v in response.items() if k not in ("text", "buttons")}
            draft = await generate_response(nlg, response_name, tracker, output_channel, **kwargs)
            if not draft:
                logger.error(
                    "Custom action asked for response '%s' which the domain does not define.",
                    response_name,
                )
                continue
            draft["utter_action"] = response_name
        else:
            draft = {}
        buttons = response.pop("buttons", None) or []
        if buttons:
            draft.setdefault("buttons", [])
            draft["buttons"] = list(draft["buttons"] or []) + list(buttons)
        draft.update({k: v for k, v in response.items() if v})
        bot_messages.append(create_bot_utterance(draft))
    return bot_messages


async def events_from_result(
    name: str,
    result: dict[str, Any] | None,
    output_channel: Any,
    nlg: Any,
    tracker: DialogueStateTracker,
) -> list[Event]:
    """Bot messages first, then the action's events (Rasa's order)."""
    if not result:
        return []
    if not isinstance(result, dict):
        raise ActionExecutionError(
            f"Custom action '{name}' returned {type(result).__name__} instead of a JSON object "
            f"with `events` and `responses`."
        )
    bot_messages = await utter_responses(result.get("responses") or [], output_channel, nlg, tracker)
    return bot_messages + deserialise_events(name, result.get("events") or [])


def _endpoint_attr(endpoint: Any, key: str, default: Any = None) -> Any:
    value = getattr(endpoint, key, None)
    if value is None:
        kwargs = getattr(endpoint, "kwargs", None) or {}
        value = kwargs.get(key)
    return default if value is None else value


def endpoint_timeout(endpoint: Any) -> float:
    """Seconds to wait for the action server (endpoint ``timeout``, default 5)."""
    value = _endpoint_attr(endpoint, "timeout", DEFAULT_ACTION_TIMEOUT_S)
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise ActionExecutionError(
            f"Action endpoint timeout {value!r} is not a number. "
            f"Fix: set `timeout:` under `action_endpoint:` in endpoints.yml to seconds, e.g. 5."
        ) from e


class RemoteAction(Action):
    """A custom action run by an action server (rasa_sdk or compatible)."""

    def __init__(self, name: str, action_endpoint: EndpointConfig | None) -> None:
        self._name = name
        self.action_endpoint = action_endpoint

    def name(self) -> str:
        return self._name

    def _sends_domain(self, domain: Domain) -> bool:
        """Rasa 3.6: always, unless ``enable_selective_domain`` and the action lacks ``send_domain: true``."""
        if not _endpoint_attr(self.action_endpoint, SELECTIVE_DOMAIN, False):
            return True
        return self._name in (getattr(domain, "actions_which_explicitly_need_domain", None) or [])

    def _request_options(self) -> dict[str, Any]:
        endpoint = self.action_endpoint
        headers = dict(_endpoint_attr(endpoint, "headers", {}) or {})
        params = dict(_endpoint_attr(endpoint, "params", {}) or {})
        token = getattr(endpoint, "token", None)
        if token:
            params[_endpoint_attr(endpoint, "token_name", "token")] = token
        options: dict[str, Any] = {"headers": headers, "params": params}
        basic_auth = _endpoint_attr(endpoint, "basic_auth", None)
        if isinstance(basic_auth, dict) and "username" in basic_auth:
            options["auth"] = (basic_auth["username"], basic_auth.get("password", ""))
        return options

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        url = getattr(self.action_endpoint, "url", None)
        if not url:
            raise ActionExecutionError(
                f"Failed to execute custom action '{self._name}': no action endpoint is "
                f"configured. Fix: set `action_endpoint: url: http://localhost:5055/webhook` "
                f"in endpoints.yml and start `python -m bot actions`, or run actions in-process."
            )
        include_domain = self._sends_domain(domain)
        body = action_request_body(self._name, tracker, domain, include_domain)
        timeout = endpoint_timeout(self.action_endpoint)
        logger.debug("Calling action endpoint %s to run action '%s'.", url, self._name)
        try:
            client = action_http_client(timeout)
            options = self._request_options()
            options["headers"] = {"Content-Type": "application/json", **options["headers"]}
            response = await client.post(url, content=body, **options)
            if response.status_code == DOMAIN_NOT_CACHED_STATUS and not include_domain:
                logger.debug("The action server asked for the domain; calling '%s' again with it.", self._name)
                body = action_request_body(self._name, tracker, domain, include_domain=True)
                response = await client.post(url, content=body, **options)
        except httpx.TimeoutException as e:
            raise ActionExecutionError(
                f"Custom action '{self._name}' timed out after {timeout:g}s at the action "
                f"server {url}. Fix: make the action faster or raise `timeout:` under "
                f"`action_endpoint:` in endpoints.yml."
            ) from e
        except httpx.HTTPError as e:
            raise ActionExecutionError(
                f"Failed to execute custom action '{self._name}': couldn't connect to the "
                f"action server at {url} ({type(e).__name__}: {e}). Fix: start it with "
                f"`python -m bot actions` or correct `action_endpoint.url` in endpoints.yml."
            ) from e

        if response.status_code == 400:
            body = _json_or_none(response)
            if isinstance(body, dict) and body.get("action_name"):
                rejection = ActionExecutionRejection(body["action_name"], body.get("error"))
                logger.debug("Action '%s' rejected execution: %s", self._name, rejection.message)
                raise rejection
        if response.status_code >= 400:
            raise ActionExecutionError(
                f"Failed to execute custom action '{self._name}': the action server at {url} "
                f"answered HTTP {response.status_code}: {response.text[:500]}. Fix: check the "
                f"action server's log"
                + (
                    " and that the action is registered there."
                    if response.status_code == 404
                    else "."
                )
            )
        result = _json_or_none(response)
        if result is None and response.content:
            raise ActionExecutionError(
                f"Custom action '{self._name}': the action server at {url} answered with "
                f"invalid JSON: {response.text[:200]!r}."
            )
        return await events_from_result(self._name, result, output_channel, nlg, tracker)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, ValueError):
        return None
