"""HTTP routes for the knowledge base (a Sanic blueprint, auth from bot/web/auth.py).

``create_knowledge_blueprint(get_holder)``: ``get_holder(request)`` returns the
worker's ``KnowledgeHolder`` (or ``None``: 409). Routes: POST /knowledge/reload,
GET /knowledge/entries, GET|PUT|DELETE /knowledge/entries/<id>,
GET /knowledge/export?format=yaml|csv, POST /knowledge/search.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any, Callable

from sanic import Blueprint, Request, response

from bot.knowledge.loader import entries_to_csv, entries_to_yaml
from bot.knowledge.store import KnowledgeStore
from bot.web.auth import requires_scope
from bot.web.principals import Scope
from bot.web.errors import ErrorResponse, bad_request
from bot.web.requests import json_body
from bot.shared.exceptions import ConfigError
from bot.shared.jobs import HeavyJobsBusy

HolderGetter = Callable[[Request], Any]


def _busy(error: HeavyJobsBusy) -> ErrorResponse:
    return ErrorResponse(HTTPStatus.CONFLICT, "Conflict", str(error))


def _no_kb() -> ErrorResponse:
    return ErrorResponse(HTTPStatus.CONFLICT, "Conflict",
                         "No knowledge base is loaded. Fix: add FAQ files under knowledge_base/ and train or reload.")


def create_knowledge_blueprint(get_holder: HolderGetter, url_prefix: str = "/knowledge") -> Blueprint:
    bp = Blueprint("knowledge", url_prefix=url_prefix)
    stores: dict[int, KnowledgeStore] = {}

    def holder_of(request: Request) -> Any:
        holder = get_holder(request)
        if holder is None:
            raise _no_kb()
        return holder

    def store_of(request: Request) -> KnowledgeStore:
        holder = holder_of(request)
        store = stores.get(id(holder))
        if store is None or store.holder is not holder:
            try:
                store = stores[id(holder)] = KnowledgeStore(holder)
            except ConfigError as e:
                raise bad_request(str(e)) from e
        return store

    @bp.post("/reload")
    @requires_scope(Scope.KNOWLEDGE_WRITE)
    async def reload(request: Request) -> Any:
        try:
            info = await holder_of(request).reload(strict=True)
        except HeavyJobsBusy as e:
            raise _busy(e) from e
        except ConfigError as e:
            raise bad_request(f"Reload refused, the old knowledge base keeps serving: {e}") from e
        return response.json({k: v for k, v in info.items() if k != "metadata"} | {"metadata": info.get("metadata")})

    @bp.get("/entries")
    @requires_scope(Scope.KNOWLEDGE_READ)
    async def list_entries(request: Request) -> Any:
        entries = store_of(request).list(request.args.get("category"), request.args.get("tag"))
        return response.json({"entries": [e.as_dict() for e in entries], "count": len(entries)})

    @bp.get("/entries/<entry_id>")
    @requires_scope(Scope.KNOWLEDGE_READ)
    async def get_entry(request: Request, entry_id: str) -> Any:
        entry = holder_of(request).current.get(entry_id)
        if entry is None:
            raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No knowledge entry '{entry_id}'.")
        return response.json(entry.as_dict())

    @bp.put("/entries/<entry_id>")
    @requires_scope(Scope.KNOWLEDGE_WRITE)
    async def put_entry(request: Request, entry_id: str) -> Any:
        body = json_body(request, None) if request.body else None
        if not isinstance(body, dict):
            raise bad_request("Body must be a JSON entry with questions and answers.", "body")
        try:
            entry, created = await store_of(request).put(entry_id, body)
        except HeavyJobsBusy as e:
            raise _busy(e) from e
        except ConfigError as e:
            raise bad_request(str(e), "body") from e
        return response.json(entry.as_dict(), status=201 if created else 200)

    @bp.delete("/entries/<entry_id>")
    @requires_scope(Scope.KNOWLEDGE_WRITE)
    async def delete_entry(request: Request, entry_id: str) -> Any:
        try:
            deleted = await store_of(request).delete(entry_id)
        except HeavyJobsBusy as e:
            raise _busy(e) from e
        if not deleted:
            raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No knowledge entry '{entry_id}'.")
        return response.empty(status=204)

    @bp.get("/export")
    @requires_scope(Scope.KNOWLEDGE_READ)
    async def export(request: Request) -> Any:
        fmt = (request.args.get("format") or "yaml").lower()
        entries = holder_of(request).current.entries
        if fmt == "yaml":
            return response.text(entries_to_yaml(entries), content_type="application/x-yaml; charset=utf-8")
        if fmt == "csv":
            return response.text(entries_to_csv(entries), content_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": "attachment; filename=knowledge.csv"})
        raise bad_request("format must be yaml or csv.", "format", "query")

    @bp.post("/search")
    @requires_scope(Scope.KNOWLEDGE_READ)
    async def search(request: Request) -> Any:
        body = json_body(request, None) if request.body else None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise bad_request("Body must be {\"text\": <question>, \"language\": \"zh\"|\"en\"}.", "text")
        lang = body.get("language")
        _, result = await holder_of(request).asearch(body["text"], lang if lang in ("zh", "en") else None,
                                                      int(body.get("top_k") or 5))
        return response.json(result.as_dict())

    return bp
