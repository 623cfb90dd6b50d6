"""Bad input to POST /model/parse with a real Agent: well-formed result or a 400 with a reason."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.agent import Agent
from bot.server.app import create_app

TINYSHOP = Path(__file__).resolve().parents[1] / "data" / "nlu" / "tinyshop"
RESULT_KEYS = {"text", "intent", "intent_ranking", "entities", "sentiment", "urgency", "language"}


async def _post(app: Any, path: str, **kwargs: Any) -> Any:
    _, resp = await app.asgi_client.post(path, **kwargs)
    return resp


def _check_result(body: dict, text: str) -> None:
    assert RESULT_KEYS <= set(body), body
    assert isinstance(body["entities"], list) and isinstance(body["intent_ranking"], list)
    assert body["sentiment"]["label"] in ("negative", "neutral", "positive")
    assert -1.0 <= body["sentiment"]["score"] <= 1.0
    assert isinstance(body["urgency"]["flag"], bool)
    assert body["language"] in ("zh", "en")
    assert len(body["text"]) == len(text)
    for e in body["entities"]:
        assert 0 <= e["start"] <= e["end"] <= len(text)


@pytest.mark.asyncio
async def test_parse_bad_inputs_through_http(tinyshop_model: Path) -> None:
    agent = Agent(project_root=TINYSHOP)
    await agent.load_model(tinyshop_model)
    app = create_app(agent, name="nlu_bad_input")
    try:
        texts = ["", "   \n\t ", "订单" * 10000, "😀🙏🔥", "\x00\x01\x07\x1b[31m\x7f你好", "[]{}()/\\", "/"]
        for text in texts:
            resp = await _post(app, "/model/parse", json={"text": text})
            assert resp.status == 200, (text[:20], resp.text)
            _check_result(resp.json, text)
        # empty and whitespace-only text: no intent guessed
        resp = await _post(app, "/model/parse", json={"text": "  "})
        assert resp.json["intent"]["name"] is None
        # an invalid lone surrogate, sent as a raw JSON escape
        resp = await _post(app, "/model/parse", content=b'{"text": "\\ud800 hi"}',
                           headers={"content-type": "application/json"})
        assert resp.status == 200, resp.text
        assert resp.json["text"] == "\ufffd hi"
        _check_result(resp.json, "\ufffd hi")
        # bodies without text: 400 with a reason
        for body in ({}, {"txt": "hi"}, {"text": None}, {"text": 42}):
            resp = await _post(app, "/model/parse", json=body)
            assert resp.status == 400, (body, resp.text)
            assert resp.json["reason"] and "text" in resp.json["message"].lower()
        resp = await _post(app, "/model/parse", content=b"{not json", headers={"content-type": "application/json"})
        assert resp.status == 400 and resp.json["reason"]
        resp = await _post(app, "/model/parse", content=json.dumps(["hi"]).encode(),
                           headers={"content-type": "application/json"})
        assert resp.status == 400
        # the server is still up and parses normally
        resp = await _post(app, "/model/parse", json={"text": "where is my order"})
        assert resp.status == 200 and resp.json["intent"]["name"] == "order_status"
    finally:
        await agent.close()
