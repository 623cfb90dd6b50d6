from __future__ import annotations

from types import SimpleNamespace

from bot.knowledge.build import load_kb

AUTH = {"Authorization": "Bearer secret"}


def _app(holder):
    """The real app factory: it mounts /knowledge and finds the KB on the agent."""
    from bot.server.app import create_app

    return create_app(SimpleNamespace(knowledge=holder, is_ready=lambda: True), auth_token="secret")


def test_server_routes_require_auth_and_serve_crud_search_export(kb_dir, encoder):
    holder = load_kb(None, kb_dir.parent, {"knowledge": {"path": "knowledge_base"}}, encoder)
    app = _app(holder)
    _, res = app.test_client.get("/knowledge/entries")
    assert res.status == 401
    _, res = app.test_client.get("/knowledge/entries", headers=AUTH)
    assert res.status == 200 and res.json["count"] == 5
    _, res = app.test_client.get("/knowledge/entries/nope", headers=AUTH)
    assert res.status == 404
    body = {"questions": {"zh": ["可以礼品包装吗"]}, "answers": {"zh": "可以。"}}
    _, res = app.test_client.put("/knowledge/entries/gift", headers=AUTH, json=body)
    assert res.status == 201 and res.json["id"] == "gift"
    _, res = app.test_client.put("/knowledge/entries/gift", headers=AUTH, json={"questions": {"zh": ["x"]}})
    assert res.status == 400 and "no answers" in res.json["message"]
    _, res = app.test_client.post("/knowledge/search", headers=AUTH, json={"text": "什么时候发货"})
    assert res.status == 200 and res.json["candidates"][0]["entry_id"] == "shipping_time"
    _, res = app.test_client.get("/knowledge/export?format=csv", headers=AUTH)
    assert res.status == 200 and res.text.startswith("id,category,language")
    _, res = app.test_client.delete("/knowledge/entries/gift", headers=AUTH)
    assert res.status == 204
    _, res = app.test_client.post("/knowledge/reload", headers=AUTH)
    assert res.status == 200 and res.json["entries"] == 5


def test_server_without_kb_answers_409(encoder):
    app = _app(None)
    _, res = app.test_client.get("/knowledge/entries", headers=AUTH)
    assert res.status == 409
