"""``/conversations/<conversation_id>/...``: tracker, events, messages,
trigger_intent, execute and predict, with Rasa's query parameters."""
from __future__ import annotations

from functools import reduce
from http import HTTPStatus
from typing import Any

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.privacy.access import sees_personal_data
from bot.server.routes.agent import get_agent
from bot.shared.events import BotUttered, Event
from bot.shared.exceptions import InvalidRequest
from bot.shared.masking import mask_tracker_state
from bot.shared.message import CollectingOutputChannel, OutputChannel, UserMessage
from bot.shared.tracker import EventVerbosity
from bot.stores.audit import TRACKER_IN_RESPONSE, TRACKER_READ
from bot.web.audit import audit_read
from bot.web.auth import principal_of, requires_scope
from bot.web.principals import Scope
from bot.web.errors import ErrorResponse, bad_request
from bot.web.requests import bool_arg, float_arg, json_body
from connectors.base import InputChannel, untrusted_metadata

OUTPUT_CHANNEL_QUERY_KEY = "output_channel"
USE_LATEST_INPUT_CHANNEL_AS_OUTPUT_CHANNEL = "latest"
EXECUTE_SIDE_EFFECTS_QUERY_KEY = "execute_side_effects"


def event_verbosity_parameter(request: Request, default: EventVerbosity) -> EventVerbosity:
    """``?include_events=ALL|APPLIED|AFTER_RESTART|NONE`` (case-insensitive)."""
    value = request.args.get("include_events", default.name).upper()
    try:
        return EventVerbosity[value]
    except KeyError as e:
        valid = ", ".join(v.name for v in EventVerbosity)
        raise bad_request(
            f"Invalid parameter value for 'include_events'. Should be one of {valid}.",
            "include_events",
            "query",
        ) from e


def events_from_body(data: Any) -> list[Event]:
    """Rasa event dicts (one or a list) to events; 400 naming the bad one."""
    items = data if isinstance(data, list) else [data]
    events: list[Event] = []
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(data, list) else ""
        label = f"Event {where}" if where else "The event"
        field = f"{where}.event" if where else "event"
        if not isinstance(item, dict):
            raise bad_request(
                f"{label} must be a JSON object like "
                '{"event": "slot", "name": "email", "value": "a@b.c"}, '
                f"got {type(item).__name__}.",
                where or "event",
            )
        if "event" not in item:
            raise bad_request(
                f"{label} has no 'event' key naming its type "
                "(e.g. 'user', 'bot', 'action', 'slot').",
                field,
            )
        try:
            event = Event.from_parameters(item)
        except InvalidRequest as e:
            raise bad_request(str(e), field) from e
        if event is not None:
            events.append(event)
    if not events:
        raise bad_request("Couldn't extract a proper event from the request body.", "")
    return events


def get_output_channel(request: Request, tracker: Any) -> OutputChannel:
    """Rasa's ``_get_output_channel``: ``?output_channel=<name>|latest`` or a collector."""
    requested = request.args.get(OUTPUT_CHANNEL_QUERY_KEY)
    if tracker is not None and requested == USE_LATEST_INPUT_CHANNEL_AS_OUTPUT_CHANNEL:
        requested = tracker.get_latest_input_channel()
    channels: list[InputChannel] = getattr(request.app.ctx, "input_channels", None) or []
    matching = [c for c in channels if c.name() == requested]
    return reduce(
        lambda so_far, channel: channel.get_output_channel() or so_far,
        matching,
        CollectingOutputChannel(),
    )


def _tracker_state(tracker: Any, verbosity: EventVerbosity) -> Any:
    return tracker.current_state(verbosity) if hasattr(tracker, "current_state") else tracker


def create_conversations_blueprint() -> Blueprint:
    bp = Blueprint("kefu_conversations")

    @bp.get("/conversations/<conversation_id:path>/tracker")
    @requires_scope(Scope.CONVERSATIONS_READ)
    async def retrieve_tracker(request: Request, conversation_id: str) -> HTTPResponse:
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        until = float_arg(request, "until")
        agent = get_agent(request)
        tracker = await agent.get_tracker(conversation_id)
        if until is not None:
            tracker = tracker.travel_back_in_time(until)
        await audit_read(request, TRACKER_READ, conversation_id)
        state = tracker.current_state(verbosity)
        if not sees_personal_data(request):  # only admins see phones, addresses, names, openids
            state = mask_tracker_state(state)
        return response.json(state)

    @bp.post("/conversations/<conversation_id:path>/tracker/events")
    @requires_scope(Scope.CONVERSATIONS_WRITE)
    async def append_events(request: Request, conversation_id: str) -> HTTPResponse:
        events = events_from_body(json_body(request, (dict, list)))
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        tracker = await agent.append_events(conversation_id, events)
        if bool_arg(request, EXECUTE_SIDE_EFFECTS_QUERY_KEY, False):
            output_channel = get_output_channel(request, tracker)
            for event in events:
                if isinstance(event, BotUttered):
                    await output_channel.send_response(conversation_id, event.message())
        await audit_read(request, TRACKER_IN_RESPONSE, conversation_id)
        return response.json(tracker.current_state(verbosity))

    @bp.put("/conversations/<conversation_id:path>/tracker/events")
    @requires_scope(Scope.CONVERSATIONS_WRITE)
    async def replace_events(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, (dict, list))
        events = events_from_body(data) if data != [] else []
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        tracker = await agent.replace_events(conversation_id, events)
        await audit_read(request, TRACKER_IN_RESPONSE, conversation_id)
        return response.json(tracker.current_state(verbosity))

    @bp.post("/conversations/<conversation_id:path>/messages")
    @requires_scope(Scope.CONVERSATIONS_WRITE)
    async def add_message(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, dict)
        sender = data.get("sender")
        if sender != "user":
            raise bad_request(
                "Currently, only user messages can be passed to this endpoint. "
                f"Messages of sender '{sender}' cannot be handled.",
                "sender",
            )
        text = data.get("text")
        if not isinstance(text, str):
            raise bad_request("The message needs a 'text' string.", "text")
        parse_data = data.get("parse_data")
        if parse_data is not None and not isinstance(parse_data, dict):
            raise bad_request("'parse_data' must be a JSON object (a parse result).", "parse_data")
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        metadata = data.get("metadata")
        principal = principal_of(request)
        if isinstance(metadata, dict) and not (principal is not None and principal.is_admin):
            # identity keys are a verified channel's word (docs/channels.md); only an admin may set them here
            metadata = untrusted_metadata(metadata, "api")
        message = UserMessage(
            text,
            None,
            conversation_id,
            parse_data,
            input_channel=data.get("input_channel"),
            message_id=data.get("message_id"),
            metadata=metadata,
        )
        log_message = getattr(agent, "log_message", None)
        if log_message is not None:
            tracker = await log_message(message)
        else:
            # Agents without log_message: parse, then append the user event.
            if parse_data is None:
                parse_data = await agent.parse_message(message.text or "")
            event = Event.from_parameters(
                {
                    "event": "user",
                    "text": message.text,
                    "parse_data": parse_data,
                    "input_channel": message.input_channel,
                    "message_id": message.message_id,
                    "metadata": message.metadata,
                }
            )
            tracker = await agent.append_events(conversation_id, [event])
        await audit_read(request, TRACKER_IN_RESPONSE, conversation_id)
        return response.json(tracker.current_state(verbosity))

    @bp.post("/conversations/<conversation_id:path>/trigger_intent")
    @requires_scope(Scope.CONVERSATIONS_WRITE)
    async def trigger_intent(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, dict)
        intent = data.get("name")
        if not intent or not isinstance(intent, str):
            raise bad_request("Name of the intent not provided in request body.", "name")
        entities = data.get("entities") or {}
        if not isinstance(entities, dict):
            raise bad_request(
                "'entities' must be a JSON object mapping entity names to values.", "entities"
            )
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        domain = agent.domain
        if domain is not None and intent not in domain.intents:
            raise ErrorResponse(
                HTTPStatus.NOT_FOUND,
                "NotFound",
                f"The intent {intent} does not exist in the domain.",
            )
        tracker = await agent.get_tracker(conversation_id)
        output_channel = get_output_channel(request, tracker)
        tracker = await agent.trigger_intent(conversation_id, intent, entities, output_channel)
        body: dict[str, Any] = {"tracker": tracker.current_state(verbosity)}
        if isinstance(output_channel, CollectingOutputChannel):
            body["messages"] = output_channel.messages
        await audit_read(request, TRACKER_IN_RESPONSE, conversation_id)
        return response.json(body)

    @bp.post("/conversations/<conversation_id:path>/execute")
    @requires_scope(Scope.CONVERSATIONS_WRITE)
    async def execute_action(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, dict)
        action = data.get("name")
        if not action or not isinstance(action, str):
            raise bad_request("Name of the action not provided in request body.", "name")
        confidence = data.get("confidence")
        if confidence is not None and not isinstance(confidence, (int, float)):
            raise bad_request("'confidence' must be a number.", "confidence")
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        tracker = await agent.get_tracker(conversation_id)
        output_channel = get_output_channel(request, tracker)
        tracker = await agent.execute_action(
            conversation_id, action, output_channel, data.get("policy"), confidence
        )
        body: dict[str, Any] = {"tracker": tracker.current_state(verbosity)}
        if isinstance(output_channel, CollectingOutputChannel):
            body["messages"] = output_channel.messages
        await audit_read(request, TRACKER_IN_RESPONSE, conversation_id)
        return response.json(body)

    @bp.post("/conversations/<conversation_id:path>/predict")
    @requires_scope(Scope.CONVERSATIONS_WRITE)
    async def predict(request: Request, conversation_id: str) -> HTTPResponse:
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        result = dict(await agent.predict_next(conversation_id))
        result["scores"] = sorted(
            result.get("scores") or [], key=lambda s: (-s["score"], s["action"])
        )
        if "tracker" in result:
            result["tracker"] = _tracker_state(result["tracker"], verbosity)
            await audit_read(request, TRACKER_IN_RESPONSE, conversation_id)
        return response.json(result)

    return bp
