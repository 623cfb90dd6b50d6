"""HTTP API routes through the app factory, with a fake Agent (see conftest.py)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sanic import Blueprint, response

from bot.server.app import create_app
from bot.shared.events import UserUttered
from bot.shared.message import CollectingOutputChannel
from bot.version import __version__
from connectors.base import InputChannel
from connectors.rest import RestInput

ERROR_KEYS = {"version", "status", "message", "reason", "details", "help", "code"}


async def call(app: Any, method: str, path: str, **kwargs: Any) -> Any:
    _, resp = await getattr(app.asgi_client, method)(path, **kwargs)
    return resp


def assert_error(resp: Any, status: int, reason: str | None = None) -> dict:
    assert resp.status == status, resp.text
    body = resp.json
    assert set(body) == ERROR_KEYS
    assert body["status"] == "failure"
    assert body["code"] == status
    if reason is not None:
        assert body["reason"] == reason
    return body


# --- root, version, status --------------------------------------------------------------
@pytest.mark.asyncio
async def test_root_says_hello_with_version(agent):
    resp = await call(create_app(agent), "get", "/")
    assert resp.status == 200
    assert resp.text == f"Hello from kefu: {__version__}"


@pytest.mark.asyncio
async def test_root_handler_is_replaceable(agent):
    async def demo(request):
        return response.html("<h1>demo</h1>")

    resp = await call(create_app(agent, root_handler=demo), "get", "/")
    assert resp.text == "<h1>demo</h1>"


@pytest.mark.asyncio
async def test_version_reports_kefu_and_rasa_versions(agent):
    resp = await call(create_app(agent), "get", "/version")
    assert resp.json["version"] == __version__
    assert "minimum_compatible_version" in resp.json
    assert resp.json["rasa_version"].startswith("3.")


@pytest.mark.asyncio
async def test_status_reports_model(agent):
    resp = await call(create_app(agent), "get", "/status")
    assert resp.status == 200
    assert resp.json == {
        "model_file": "20260101-000000.tar.gz",
        "model_path": "/srv/models/20260101-000000.tar.gz",
        "model_id": "model-1",
        "fingerprint": {"config": "c0ffee", "domain": "d0"},
        "num_active_training_jobs": 0,
    }


NEEDS_MODEL = [
    ("get", "/status", None),
    ("post", "/model/parse", {"text": "hi"}),
    ("get", "/conversations/u1/tracker", None),
    ("post", "/conversations/u1/tracker/events", {"event": "restart"}),
    ("post", "/conversations/u1/messages", {"text": "hi", "sender": "user"}),
    ("post", "/conversations/u1/trigger_intent", {"name": "greet"}),
    ("post", "/conversations/u1/execute", {"name": "utter_greet"}),
    ("post", "/conversations/u1/predict", None),
    ("post", "/webhooks/rest/webhook", {"sender": "u1", "message": "hi"}),
    ("get", "/domain", None),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("method,path,body", NEEDS_MODEL)
async def test_routes_needing_a_model_answer_409_conflict(unready_agent, method, path, body):
    app = create_app(unready_agent, input_channels=[RestInput()])
    kwargs = {"json": body} if body is not None else {}
    resp = await call(app, method, path, **kwargs)
    body = assert_error(resp, 409, "Conflict")
    assert "model" in body["message"]


@pytest.mark.asyncio
async def test_app_without_agent_answers_409_not_500():
    resp = await call(create_app(None), "get", "/status")
    assert_error(resp, 409, "Conflict")


# --- /model/parse ------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_parse_returns_parse_result(agent):
    resp = await call(create_app(agent), "post", "/model/parse", json={"text": "hello", "message_id": "m1"})
    assert resp.status == 200
    assert resp.json["intent"]["name"] == "greet"
    assert resp.json["text"] == "hello"
    assert resp.json["sentiment"]["label"] == "neutral"
    assert resp.json["message_id"] == "m1"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body,parameter",
    [({"message": "hi"}, "text"), ({"text": 3}, "text"), ({"text": None}, "text")],
)
async def test_parse_without_text_is_400_naming_text(agent, body, parameter):
    resp = await call(create_app(agent), "post", "/model/parse", json=body)
    error = assert_error(resp, 400, "BadRequest")
    assert error["details"] == {"parameter": parameter, "in": "body"}
    assert "text" in error["message"]


@pytest.mark.asyncio
async def test_parse_with_invalid_json_is_400_with_reason(agent):
    resp = await call(create_app(agent), "post", "/model/parse", content=b"{not json")
    error = assert_error(resp, 400, "BadRequest")
    assert "not valid JSON" in error["message"]


@pytest.mark.asyncio
async def test_parse_with_empty_body_is_400(agent):
    resp = await call(create_app(agent), "post", "/model/parse")
    error = assert_error(resp, 400, "BadRequest")
    assert "empty" in error["message"]


@pytest.mark.asyncio
async def test_parse_with_json_array_body_is_400(agent):
    resp = await call(create_app(agent), "post", "/model/parse", json=["hi"])
    error = assert_error(resp, 400)
    assert "JSON object" in error["message"]


# --- tracker -----------------------------------------------------------------------------
async def _seed(agent, sender: str = "u1") -> None:
    tracker = await agent.get_tracker(sender)
    tracker.update(UserUttered("hi", intent={"name": "greet", "confidence": 1.0}, timestamp=100.0))
    from bot.shared.events import Restarted, SlotSet

    tracker.update(SlotSet("email", "a@b.c", timestamp=200.0))
    tracker.update(Restarted(timestamp=300.0))
    tracker.update(UserUttered("bye", intent={"name": "goodbye", "confidence": 1.0}, timestamp=400.0))


@pytest.mark.asyncio
async def test_tracker_defaults_to_events_after_restart(agent):
    await _seed(agent)
    resp = await call(create_app(agent), "get", "/conversations/u1/tracker")
    assert resp.status == 200
    state = resp.json
    assert state["sender_id"] == "u1"
    assert [e["event"] for e in state["events"]] == ["user"]
    assert state["latest_message"]["intent"]["name"] == "goodbye"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "param,expected",
    [("ALL", ["user", "slot", "restart", "user"]), ("applied", ["user"]), ("NONE", None)],
)
async def test_tracker_include_events(agent, param, expected):
    await _seed(agent)
    resp = await call(create_app(agent), "get", f"/conversations/u1/tracker?include_events={param}")
    events = resp.json["events"]
    assert (None if events is None else [e["event"] for e in events]) == expected


@pytest.mark.asyncio
async def test_tracker_until_travels_back_in_time(agent):
    await _seed(agent)
    resp = await call(create_app(agent), "get", "/conversations/u1/tracker?include_events=ALL&until=250")
    assert [e["event"] for e in resp.json["events"]] == ["user", "slot"]
    assert resp.json["slots"]["email"] == "a@b.c"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query,parameter", [("include_events=SOME", "include_events"), ("until=yesterday", "until")]
)
async def test_tracker_bad_query_parameter_is_400(agent, query, parameter):
    resp = await call(create_app(agent), "get", f"/conversations/u1/tracker?{query}")
    error = assert_error(resp, 400, "BadRequest")
    assert error["details"] == {"parameter": parameter, "in": "query"}


@pytest.mark.asyncio
async def test_tracker_conversation_id_may_contain_slashes(agent):
    resp = await call(create_app(agent), "get", "/conversations/wechat/openid-1/tracker")
    assert resp.status == 200
    assert resp.json["sender_id"] == "wechat/openid-1"


# --- tracker events ----------------------------------------------------------------------
@pytest.mark.asyncio
async def test_append_single_event(agent):
    app = create_app(agent)
    resp = await call(
        app, "post", "/conversations/u1/tracker/events",
        json={"event": "slot", "name": "email", "value": "x@y.z"},
    )
    assert resp.status == 200
    assert resp.json["slots"]["email"] == "x@y.z"
    assert resp.json["events"][-1]["event"] == "slot"


@pytest.mark.asyncio
async def test_append_list_of_events(agent):
    resp = await call(
        create_app(agent), "post", "/conversations/u1/tracker/events?include_events=ALL",
        json=[
            {"event": "action", "name": "action_listen"},
            {"event": "bot", "text": "hello"},
        ],
    )
    assert [e["event"] for e in resp.json["events"]] == ["action", "bot"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body,parameter,words",
    [
        ({"event": "no_such_event"}, "event", "Unknown event type"),
        ([{"event": "bot"}, {"name": "x"}], "[1].event", "'event' key"),
        ([{"event": "bot"}, 7], "[1]", "JSON object"),
        ({"event": "action"}, "event", "action"),
    ],
)
async def test_append_invalid_event_is_400_naming_the_field(agent, body, parameter, words):
    resp = await call(create_app(agent), "post", "/conversations/u1/tracker/events", json=body)
    error = assert_error(resp, 400, "BadRequest")
    assert error["details"]["parameter"] == parameter
    assert words in error["message"]
    assert agent.trackers.get("u1") is None or not agent.trackers["u1"].events


class RecordingOutput(CollectingOutputChannel):
    @classmethod
    def name(cls) -> str:
        return "recorder"


class RecorderInput(InputChannel):
    """A channel whose output channel the tests can inspect."""

    def __init__(self) -> None:
        self.output = RecordingOutput()

    @classmethod
    def name(cls) -> str:
        return "recorder"

    def blueprint(self, on_new_message):
        return Blueprint(self.blueprint_name())

    def get_output_channel(self):
        return self.output


@pytest.mark.asyncio
async def test_append_bot_event_with_side_effects_sends_to_output_channel(agent):
    channel = RecorderInput()
    app = create_app(agent, input_channels=[channel])
    resp = await call(
        app, "post",
        "/conversations/u1/tracker/events?output_channel=recorder&execute_side_effects=true",
        json={"event": "bot", "text": "Your parcel left the warehouse."},
    )
    assert resp.status == 200
    assert [m["text"] for m in channel.output.messages] == ["Your parcel left the warehouse."]


@pytest.mark.asyncio
async def test_replace_events_resets_the_tracker(agent):
    await _seed(agent)
    resp = await call(
        create_app(agent), "put", "/conversations/u1/tracker/events?include_events=ALL",
        json=[{"event": "slot", "name": "size", "value": "42"}],
    )
    assert resp.status == 200
    assert [e["event"] for e in resp.json["events"]] == ["slot"]
    assert [e.type_name for e in agent.trackers["u1"].events] == ["slot"]


# --- messages, trigger_intent, execute, predict ------------------------------------------
@pytest.mark.asyncio
async def test_add_message_logs_user_event_without_predicting(agent):
    resp = await call(
        create_app(agent), "post", "/conversations/u1/messages",
        json={"text": "hello", "sender": "user"},
    )
    assert resp.status == 200
    assert resp.json["latest_message"]["intent"]["name"] == "greet"
    assert resp.json["events"][-1]["event"] == "user"
    assert agent.handled == []


@pytest.mark.asyncio
async def test_add_message_uses_given_parse_data(agent):
    parse_data = {"intent": {"name": "order_status", "confidence": 1.0}, "entities": [], "text": "where"}
    resp = await call(
        create_app(agent), "post", "/conversations/u1/messages",
        json={"text": "where", "sender": "user", "parse_data": parse_data},
    )
    assert resp.json["latest_message"]["intent"]["name"] == "order_status"


@pytest.mark.asyncio
async def test_add_message_from_bot_sender_is_400(agent):
    resp = await call(
        create_app(agent), "post", "/conversations/u1/messages", json={"text": "hi", "sender": "bot"}
    )
    error = assert_error(resp, 400)
    assert error["details"]["parameter"] == "sender"


@pytest.mark.asyncio
async def test_trigger_intent_returns_tracker_and_messages(agent):
    resp = await call(
        create_app(agent), "post", "/conversations/u1/trigger_intent",
        json={"name": "order_status", "entities": {"order_id": "E20261101001"}},
    )
    assert resp.status == 200
    assert resp.json["messages"] == [{"recipient_id": "u1", "text": "triggered order_status"}]
    latest = resp.json["tracker"]["latest_message"]
    assert latest["intent"]["name"] == "order_status"
    assert latest["entities"] == [{"entity": "order_id", "value": "E20261101001"}]


@pytest.mark.asyncio
async def test_trigger_unknown_intent_is_404(agent):
    resp = await call(
        create_app(agent), "post", "/conversations/u1/trigger_intent", json={"name": "fly_me_to_the_moon"}
    )
    error = assert_error(resp, 404, "NotFound")
    assert "fly_me_to_the_moon" in error["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize("route", ["trigger_intent", "execute"])
async def test_missing_name_is_400(agent, route):
    resp = await call(create_app(agent), "post", f"/conversations/u1/{route}", json={"entities": {}})
    error = assert_error(resp, 400)
    assert error["details"] == {"parameter": "name", "in": "body"}


@pytest.mark.asyncio
async def test_execute_action_returns_tracker_and_messages(agent):
    resp = await call(
        create_app(agent), "post", "/conversations/u1/execute",
        json={"name": "utter_greet", "policy": "RulePolicy", "confidence": 0.9},
    )
    assert resp.status == 200
    assert resp.json["messages"] == [{"recipient_id": "u1", "text": "ran utter_greet"}]
    action = [e for e in resp.json["tracker"]["events"] if e["event"] == "action"][-1]
    assert (action["name"], action["policy"], action["confidence"]) == ("utter_greet", "RulePolicy", 0.9)


@pytest.mark.asyncio
async def test_predict_sorts_scores_like_rasa(agent):
    resp = await call(create_app(agent), "post", "/conversations/u1/predict")
    assert resp.status == 200
    assert [s["action"] for s in resp.json["scores"]] == ["action_listen", "action_restart", "utter_greet"]
    assert resp.json["policy"] == "RulePolicy"
    assert resp.json["tracker"]["sender_id"] == "u1"


# --- model -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_put_model_loads_it_and_answers_204(unready_agent, tmp_path):
    model = tmp_path / "new.tar.gz"
    model.write_bytes(b"x")
    app = create_app(unready_agent)
    resp = await call(app, "put", "/model", json={"model_file": str(model)})
    assert resp.status == 204
    assert unready_agent.model_path == str(model)
    status = await call(app, "get", "/status")
    assert status.json["model_id"] == "model-2"


@pytest.mark.asyncio
async def test_put_model_with_missing_file_is_404(agent, tmp_path):
    resp = await call(create_app(agent), "put", "/model", json={"model_file": str(tmp_path / "nope.tar.gz")})
    error = assert_error(resp, 404, "ModelNotFound")
    assert "nope.tar.gz" in error["message"]
    assert agent.model_id == "model-1"


@pytest.mark.asyncio
async def test_put_model_without_model_file_is_400(agent):
    resp = await call(create_app(agent), "put", "/model", json={"model_server": {"url": "http://x"}})
    error = assert_error(resp, 400)
    assert error["details"]["parameter"] == "model_file"
    assert "model_server" in error["message"]


TRAINING_YAML = b"""
version: "3.1"
language: en
pipeline: []
policies: []
intents: [greet]
nlu:
- intent: greet
  examples: |
    - hi
"""


@pytest.mark.asyncio
async def test_train_yaml_returns_model_archive_with_filename_header(agent):
    resp = await call(
        create_app(agent), "post", "/model/train?force_training=true",
        content=TRAINING_YAML, headers={"Content-Type": "application/x-yaml"},
    )
    assert resp.status == 200
    assert resp.headers["filename"] == "20260102-120000-fake.tar.gz"
    assert resp.content == b"fake model archive"
    payload, kwargs = agent.train_calls[0]
    assert payload == TRAINING_YAML
    assert kwargs["force_training"] is True


@pytest.mark.asyncio
async def test_train_with_json_accept_returns_model_path(unready_agent):
    resp = await call(
        create_app(unready_agent), "post", "/model/train",
        json={"config": "pipeline: []", "nlu": "nlu: []"},
        headers={"Accept": "application/json"},
    )
    assert resp.status == 200
    assert resp.json["model"].endswith("20260102-120000-fake.tar.gz")
    assert unready_agent.train_calls[0][0] == {"config": "pipeline: []", "nlu": "nlu: []"}


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"", b"nlu: [unclosed", b"- just a list"])
async def test_train_with_bad_payload_is_400(agent, body):
    resp = await call(
        create_app(agent), "post", "/model/train",
        content=body, headers={"Content-Type": "application/x-yaml"},
    )
    assert_error(resp, 400)
    assert agent.train_calls == []


@pytest.mark.asyncio
async def test_status_counts_running_training_jobs(agent):
    agent.train_gate = asyncio.Event()
    app = create_app(agent)
    training = asyncio.create_task(
        call(app, "post", "/model/train", content=TRAINING_YAML, headers={"Content-Type": "application/x-yaml"})
    )
    for _ in range(50):
        if agent.train_calls:
            break
        await asyncio.sleep(0.01)
    during = await call(app, "get", "/status")
    agent.train_gate.set()
    await training
    after = await call(app, "get", "/status")
    assert during.json["num_active_training_jobs"] == 1
    assert after.json["num_active_training_jobs"] == 0


@pytest.mark.asyncio
async def test_domain_as_json_and_yaml(agent):
    app = create_app(agent)
    as_json = await call(app, "get", "/domain", headers={"Accept": "application/json"})
    assert as_json.json["intents"] == ["greet", "goodbye", "order_status"]
    as_yaml = await call(app, "get", "/domain", headers={"Accept": "application/x-yaml"})
    assert as_yaml.headers["content-type"].startswith("application/x-yaml")
    assert "utter_greet" in as_yaml.text and "intents:" in as_yaml.text
    bad = await call(app, "get", "/domain", headers={"Accept": "text/html"})
    assert_error(bad, 406, "NotAcceptable")


# --- errors ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_unknown_route_and_method_are_json_errors(agent):
    app = create_app(agent)
    assert_error(await call(app, "get", "/no/such/route"), 404, "NotFound")
    assert_error(await call(app, "delete", "/status"), 405)


class ExplodingAgent:
    """Every call fails with an unexpected exception that must not reach the client."""

    domain = None
    model_id = "m"
    model_path = "m"
    fingerprint: dict = {}

    def is_ready(self) -> bool:
        return True

    async def parse_message(self, text: str) -> dict:
        raise KeyError("SECRET_DB_PASSWORD=hunter2")

    async def get_tracker(self, sender_id: str) -> Any:
        raise RuntimeError("Traceback (most recent call last): SECRET")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "method,path,body",
    [("post", "/model/parse", {"text": "hi"}), ("get", "/conversations/u1/tracker", None)],
)
async def test_unexpected_errors_are_500_without_internals(method, path, body, caplog):
    kwargs = {"json": body} if body else {}
    resp = await call(create_app(ExplodingAgent()), method, path, **kwargs)
    error = assert_error(resp, 500, "ServerError")
    assert "SECRET" not in resp.text
    assert "hunter2" not in resp.text
    assert "Traceback" not in resp.text
    assert "SECRET" in caplog.text  # logged for the operator instead


@pytest.mark.asyncio
async def test_request_over_size_limit_is_413_json(agent):
    app = create_app(agent, request_max_size=1000)
    resp = await call(app, "post", "/model/parse", json={"text": "x" * 5000})
    assert_error(resp, 413, "PayloadTooLarge")


def test_request_over_size_limit_is_413_on_real_http_server(agent):
    app = create_app(agent, request_max_size=1000)
    _, resp = app.test_client.post("/model/parse", json={"text": "x" * 5000})
    assert resp.status == 413
    assert resp.json["code"] == 413 and resp.json["status"] == "failure"


@pytest.mark.asyncio
async def test_failing_conversation_does_not_stop_others(agent):
    app = create_app(agent, input_channels=[RestInput()])

    async def send(sender: str, text: str) -> Any:
        return await call(app, "post", "/webhooks/rest/webhook", json={"sender": sender, "message": text})

    results = await asyncio.gather(send("a", "slow"), send("b", "boom"), send("c", "hi"))
    assert [r.status for r in results] == [200, 500, 200]
    assert "secret" not in results[1].text
    assert results[0].json[0]["text"] == "echo: slow"
    after = await send("b", "hello again")
    assert after.status == 200 and after.json[0]["text"] == "echo: hello again"


@pytest.mark.asyncio
async def test_many_apps_can_be_created(agent):
    apps = [create_app(agent) for _ in range(3)]
    assert len({a.name for a in apps}) == 3
    for app in apps:
        assert (await call(app, "get", "/version")).status == 200


@pytest.mark.asyncio
async def test_cors_headers_and_preflight(agent):
    app = create_app(agent, cors_origins=["https://shop.example"])
    ok = await call(app, "get", "/version", headers={"Origin": "https://shop.example"})
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    other = await call(app, "get", "/version", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    pre = await call(
        app, "options", "/webhooks/rest/webhook",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204
    assert "POST" in pre.headers["access-control-allow-methods"]


@pytest.mark.asyncio
async def test_enable_api_false_serves_only_root_and_channels(agent):
    app = create_app(agent, input_channels=[RestInput()], enable_api=False)
    assert (await call(app, "get", "/")).status == 200
    assert (await call(app, "get", "/webhooks/rest/")).status == 200
    assert_error(await call(app, "get", "/status"), 404)
