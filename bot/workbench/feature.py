"""The trainer workbench as a server feature: the page at ``/workbench``, its API under
``/workbench/api`` (with ``--enable-api``), and a task per worker that follows the registry's
active model (activation and roll-back reach every worker without a restart).

Scopes: reading the inbox and conversations ``conversations:read`` (transcript reads are
audited), writing training data ``training:annotate``, training a candidate and reading the
registry ``model:train``, activating or rolling back ``model:write`` (overriding a failed
gate: admin only).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any, Sequence

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.feature import BackgroundTask, BaseFeature, FeatureContext, FeatureHealth, ProjectSettings
from bot.shared.concurrency import run_blocking
from bot.shared.masking import mask_event
from bot.web.audit import audit_read
from bot.web.auth import principal_of, public, requires_scope
from bot.web.errors import ErrorResponse, bad_request
from bot.web.principals import Principal, Scope
from bot.web.requests import int_arg, json_body
from bot.workbench import conversations as conv
from bot.workbench.annotate import AnnotationRejected, Annotator, conversation_steps
from bot.workbench.config import SECTION, WorkbenchConfig
from bot.workbench.inbox import REASONS, collect_items, group_items
from bot.workbench.registry import ModelRegistry, RegistryError, data_version
from bot.workbench.registry_sql import WorkbenchState, default_state_url

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parents[2] / "connectors" / "static" / "workbench"


class WorkbenchService:
    """What the routes, the CLI and the benchmark call: one project, its tracker store, its agent."""

    def __init__(self, root: Path, config: WorkbenchConfig, agent: Any = None, audit: Any = None,
                 notifier: Any = None) -> None:
        self.root = Path(root).resolve()
        self.notifier = notifier  # bot/workbench/notify.py RedisActivations, or None (polling only)
        self.config = config
        self.agent = agent
        self.audit = audit
        # registry, handled messages, jobs: SQL shared by every host (the tracker store's database by default)
        self.state = WorkbenchState(default_state_url(self.root, getattr(agent, "tracker_store", None),
                                                      config.state_url))
        self.annotator = Annotator(self.root, config, self.state)
        self.registry = ModelRegistry(self.root, self.state)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # who holds a job's lease
        self._followed: str | None = None  # the registry's active name this worker last acted on

    @property
    def models_dir(self) -> Path:
        path = Path(self.config.models_dir)
        return path if path.is_absolute() else self.root / path

    # -- reading traffic -------------------------------------------------------------------
    async def _conversations(self, mask: bool, ids: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Event dicts per conversation; for anyone but an admin with phones, names, ... masked."""
        store = getattr(self.agent, "tracker_store", None)
        if store is None:
            return {}
        keys = ids if ids is not None else sorted(await store.keys())[: self.config.max_conversations]
        data = await store.export_conversations(keys)
        if mask:
            data = {cid: [mask_event(e) for e in events] for cid, events in data.items()}
        return {cid: events for cid, events in data.items() if events}

    async def inbox(self, reason: str | None = None, limit: int = 50, mask: bool = True) -> dict[str, Any]:
        conversations = await self._conversations(mask)
        handled = await run_blocking(self.annotator.handled)
        items = collect_items(conversations, self.config.low_confidence, handled)
        if reason:
            items = [i for i in items if reason in i.reasons]
        from bot.embeddings import get_encoder

        def build() -> list[dict[str, Any]]:
            encoder = get_encoder(None, root_dir=self.root)
            return group_items(items, encoder.encode, self.config.cluster_distance)

        groups = await run_blocking(build) if items else []
        await self._suggest_faq(groups[:limit])
        return {"groups": groups[:limit], "total_groups": len(groups), "total_messages": len(items),
                "conversations_scanned": len(conversations), "reasons": list(REASONS)}

    async def _suggest_faq(self, groups: list[dict[str, Any]]) -> None:
        holder = getattr(self.agent, "knowledge", None)
        if holder is None or not hasattr(holder, "asearch"):
            return
        for g in groups:
            if g["suggested_faq"]:
                continue
            try:
                _, result = await holder.asearch(g["representative"], None)
            except Exception:  # a suggestion is optional; the inbox must still load
                logger.debug("FAQ suggestion failed", exc_info=True)
                continue
            options = list(getattr(result, "options", None) or [])
            top = getattr(result, "top", None)
            ids = [c.entry_id for c in ([top] if top is not None else []) + options]
            g["suggested_faq"] = [{"id": i, "score": round(float(getattr(result, "score", 0.0)), 3)}
                                  for i in dict.fromkeys(ids)][:3]

    async def conversations(self, flt: conv.ConversationFilter, limit: int, offset: int,
                            mask: bool = True) -> dict[str, Any]:
        data = await self._conversations(mask)
        return conv.filter_conversations(data, flt, self.config.low_confidence, limit, offset)

    async def conversation(self, conversation_id: str, mask: bool = True) -> dict[str, Any] | None:
        events = (await self._conversations(mask, [conversation_id])).get(conversation_id)
        if not events:
            return None
        summary = conv.summarize(conversation_id, events, self.config.low_confidence)
        return {"summary": summary.as_dict(), "messages": conv.transcript(events)}

    # -- writing training data --------------------------------------------------------------
    async def annotate_intent(self, actor: Principal, text: str, intent: str, entities: list[dict[str, Any]]
                              ) -> dict[str, Any]:
        result = await run_blocking(self.annotator.add_example, text, intent, entities)
        await self._audit(actor, "workbench.annotate_intent", intent, {"file": result.file, "line": result.line})
        return result.as_dict()

    async def annotate_faq(self, actor: Principal, text: str, entry_id: str, language: str) -> dict[str, Any]:
        result = await run_blocking(self.annotator.add_faq_phrasing, text, entry_id, language)
        await self._audit(actor, "workbench.annotate_faq", entry_id, {"file": result.file, "line": result.line})
        return result.as_dict()

    async def save_story(self, actor: Principal, conversation_id: str, name: str | None,
                         steps: list[dict[str, Any]] | None) -> dict[str, Any]:
        if steps is None:  # masked: no phone or name goes into the project's files
            events = (await self._conversations(True, [conversation_id])).get(conversation_id)
            if not events:
                raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No conversation '{conversation_id}'.")
            steps = conversation_steps(events)
        name = name or f"workbench {conversation_id[:12]} {time.strftime('%Y-%m-%d')}"
        result = await run_blocking(self.annotator.save_test_story, name, steps)
        await self._audit(actor, "workbench.save_story", conversation_id, {"file": result.file, "line": result.line})
        return result.as_dict()

    async def dismiss(self, actor: Principal, texts: list[str], reason: str) -> dict[str, Any]:
        count = await run_blocking(self.annotator.dismiss, texts, reason)
        await self._audit(actor, "workbench.dismiss", None, {"count": count, "reason": reason[:200]})
        return {"dismissed": count}

    async def _audit(self, actor: Principal, action: str, target: str | None, detail: dict[str, Any]) -> None:
        if self.audit is not None:
            await self.audit.record(actor, action, target, detail=detail)
        else:
            logger.warning("AUDIT %s by %s target=%s %s", action, actor.subject, target or "-", detail)

    # -- training, gate, registry ------------------------------------------------------------
    def train_and_gate(self, trained_by: str) -> dict[str, Any]:
        """Train a candidate, compare it with the active model, record both in the registry (blocking)."""
        from bot.workbench.gate import gate_candidate, train_candidate

        version = data_version(self.root)
        # only a workbench-trained model is fine-tuned from: it never saw the held-out examples
        current = self.registry.active() if self.config.finetune_epoch_fraction > 0 else None
        base = Path(current["path"]) if current else None
        trained = train_candidate(self.root, self.models_dir, self.config.gate, base,
                                  self.config.finetune_epoch_fraction)
        active = self.registry.active()
        active_path = Path(active["path"]) if active else None
        saw_holdout = False
        if active_path is None and self.agent is not None and getattr(self.agent, "model_path", None):
            active_path, saw_holdout = Path(self.agent.model_path), True  # not trained by the workbench
        if active_path is not None and active_path.resolve() == Path(trained["model_path"]).resolve():
            active_path = None if active is None else active_path
        comparison = gate_candidate(self.root, Path(trained["model_path"]), active_path, self.config.gate,
                                    active_saw_holdout=saw_holdout)
        entry = self.registry.add(trained["model_path"], trained_by, version, comparison,
                                  detail={k: v for k, v in trained.items() if k != "model_path"},
                                  holdout=self.config.gate.holdout)
        return entry

    async def start_training(self, actor: Principal) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:12]
        lease = self.config.job_lease_s
        await run_blocking(self.state.start_job, job_id, actor.subject, self.worker, lease)
        jobs = getattr(self.agent, "heavy_jobs", None)

        async def renew() -> None:  # the lease says "this worker is alive and training"
            while True:
                await asyncio.sleep(lease / 3)
                try:
                    await run_blocking(self.state.renew_job, job_id, lease)
                except Exception:  # the database is away: the next renewal may make it
                    logger.warning("Workbench: could not renew the lease of training job %s.", job_id, exc_info=True)

        async def run() -> None:
            renewing = asyncio.get_running_loop().create_task(renew(), name=f"workbench-lease-{job_id}")
            try:
                if jobs is not None:
                    entry = await jobs.run("training", self.train_and_gate, actor.subject)
                else:
                    entry = await run_blocking(self.train_and_gate, actor.subject)
                renewing.cancel()
                await run_blocking(self.state.finish_job, job_id, "done", model=entry["name"],
                                   gate_passed=entry["gate_passed"])
                await self._audit(actor, "workbench.train", entry["name"], {"gate_passed": entry["gate_passed"]})
            except Exception as e:  # reported through the job, not lost in a task
                logger.exception("Workbench training failed")
                renewing.cancel()
                await run_blocking(self.state.finish_job, job_id, "failed", error=str(e)[:2000])
            finally:
                renewing.cancel()

        asyncio.get_running_loop().create_task(run(), name=f"workbench-train-{job_id}")
        return {"job": job_id, "status": "running"}

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The job as any host sees it; one whose worker's lease ran out reads as failed."""
        if not job_id.isalnum() or len(job_id) > 32:
            return None
        return self.state.job(job_id)

    async def activate(self, actor: Principal, name: str, override: bool, rollback: bool = False) -> dict[str, Any]:
        if rollback:
            record = await run_blocking(self.registry.rollback, actor.subject)
        else:
            record = await run_blocking(self.registry.activate, name, actor.subject, actor.is_admin, override)
        await self.follow_once()  # this worker now; the others on the message, or within follow_interval_s
        if self.notifier is not None:
            await self.notifier.publish(record["model"])
        await self._audit(actor, f"workbench.{record['action']}", record["model"],
                          {"previous": record["previous"], "override": record["override"]})
        return record

    async def follow_once(self) -> bool:
        """Load the registry's active model into this worker's agent when the registry changed.

        Only a change of the registry's ``active`` acts (and the first look after a start), so a
        model loaded by ``PUT /model`` stays until the next activation.
        """
        if self.agent is None:
            return False
        active = await run_blocking(self.registry.active)
        if active is None or active["name"] == self._followed:
            return False
        self._followed = active["name"]
        if getattr(self.agent, "model_id", None) == active["name"]:
            return False
        logger.info("Workbench: loading model %s (registry's active model).", active["name"])
        await self.agent.load_model(active["path"])
        return True


def _actor(request: Request) -> Principal:
    principal = principal_of(request)
    assert principal is not None  # requires_scope let the request through
    return principal



def _time_arg(request: Request, name: str) -> float | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    import datetime as dt

    try:
        if len(raw) == 10:  # a date (UTC): `until` includes the whole day
            start = dt.datetime.fromisoformat(raw).replace(tzinfo=dt.timezone.utc).timestamp()
            return start + 86399.999 if name == "until" else start
        return dt.datetime.fromisoformat(raw).timestamp()
    except ValueError as e:
        raise bad_request(f"Query parameter '{name}' must be a date (2026-12-01) or a Unix time.", name) from e


def _rejected(e: AnnotationRejected) -> ErrorResponse:
    return ErrorResponse(HTTPStatus.UNPROCESSABLE_ENTITY, "AnnotationRejected", str(e), {"findings": e.findings})


class WorkbenchFeature(BaseFeature):
    name = "workbench"

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings  # root None (an embedding without a project): routes answer 503
        self.config = WorkbenchConfig.from_section(settings.section(SECTION))
        self.service: WorkbenchService | None = None
        self.notifier: Any = None

    async def start(self, context: FeatureContext) -> None:
        if self.settings.root is None:
            return
        from bot.stores._common import redis_url_from_endpoints
        from bot.workbench.notify import RedisActivations

        url = self.config.notify_url or redis_url_from_endpoints(Path(self.settings.root) / "endpoints.yml")
        self.notifier = RedisActivations(url) if url else None
        self.service = WorkbenchService(Path(self.settings.root), self.config, context.agent,
                                        getattr(context, "audit", None), self.notifier)

    async def stop(self) -> None:
        if self.service is not None:
            self.service.state.close()
        self.service = None
        if self.notifier is not None:
            await self.notifier.close()
            self.notifier = None

    def health(self) -> FeatureHealth:
        return FeatureHealth(detail={"low_confidence": self.config.low_confidence,
                                     "activation_messages": "redis" if self.notifier is not None else "polling"})

    def tasks(self) -> Sequence[BackgroundTask]:
        return (self._follow, self._listen) if self.notifier is not None else (self._follow,)

    async def _listen(self, stop: asyncio.Event) -> None:
        async def changed() -> None:
            if self.service is not None:
                try:
                    await self.service.follow_once()
                except Exception:  # a bad archive must not end listening
                    logger.exception("Loading the newly activated model failed")

        await self.notifier.listen(stop, changed)

    async def _follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self.service is not None:
                    await self.service.follow_once()
            except Exception:  # a bad archive must not end following for good
                logger.exception("Following the registry's active model failed")
            try:
                await asyncio.wait_for(stop.wait(), self.config.follow_interval_s)
            except asyncio.TimeoutError:
                pass

    def blueprints(self) -> Sequence[Blueprint]:
        bp = Blueprint("kefu_workbench")
        feature = self

        def service() -> WorkbenchService:
            if feature.service is None:
                raise ErrorResponse(503, "NotReady", "The workbench has not started yet; retry shortly.")
            return feature.service

        @bp.get("/workbench")
        @public
        async def page(request: Request) -> HTTPResponse:
            return await response.file(STATIC_DIR / "index.html", mime_type="text/html; charset=utf-8",
                                       headers={"Cache-Control": "no-cache"})

        @bp.get("/workbench/static/<name:path>")
        @public
        async def static_file(request: Request, name: str) -> HTTPResponse:
            path = (STATIC_DIR / name).resolve()
            if STATIC_DIR not in path.parents or not path.is_file():
                raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No workbench file '{name}'.")
            return await response.file(path, headers={"Cache-Control": "no-cache"})

        if not self.settings.enable_api:
            return (bp,)

        @bp.get("/workbench/api/inbox")
        @requires_scope(Scope.CONVERSATIONS_READ)
        async def inbox(request: Request) -> HTTPResponse:
            reason = request.args.get("reason")
            if reason and reason not in REASONS:
                raise bad_request(f"Unknown reason '{reason}'; valid: {', '.join(REASONS)}.", "reason")
            result = await service().inbox(reason, int_arg(request, "limit", 50, 1, 500),
                                           mask=not _actor(request).is_admin)
            await service()._audit(_actor(request), "workbench.inbox_read", None,
                                   {"messages": result["total_messages"]})
            return response.json(result)

        @bp.get("/workbench/api/conversations")
        @requires_scope(Scope.CONVERSATIONS_READ)
        async def conversations(request: Request) -> HTTPResponse:
            csat = request.args.get("csat_max")
            handoff = request.args.get("handoff")
            flt = conv.ConversationFilter(
                intent=request.args.get("intent") or None, channel=request.args.get("channel") or None,
                since=_time_arg(request, "since"), until=_time_arg(request, "until"),
                csat_max=int_arg(request, "csat_max", 5, 1, 5) if csat else None,
                handoff=None if handoff in (None, "") else handoff.lower() == "true",
                customer=request.args.get("customer") or None, text=request.args.get("q") or None)
            result = await service().conversations(flt, int_arg(request, "limit", 50, 1, 500),
                                                   int_arg(request, "offset", 0, 0, 10**6),
                                                   mask=not _actor(request).is_admin)
            return response.json(result)

        @bp.get("/workbench/api/conversations/<cid>")
        @requires_scope(Scope.CONVERSATIONS_READ)
        async def conversation(request: Request, cid: str) -> HTTPResponse:
            result = await service().conversation(cid, mask=not _actor(request).is_admin)
            if result is None:
                raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No conversation '{cid}'.")
            await audit_read(request, "workbench.transcript_read", cid)
            return response.json(result)

        @bp.get("/workbench/api/project")
        @requires_scope(Scope.STATUS_READ)
        async def project(request: Request) -> HTTPResponse:
            agent = service().agent
            domain = getattr(agent, "domain", None)
            holder = getattr(agent, "knowledge", None)
            kb = getattr(holder, "current", None) if holder is not None else None
            entries = []
            for entry in (getattr(kb, "entries", None) or [])[:1000] if kb is not None else []:
                entries.append({"id": entry.id, "title": entry.title_for("zh") if hasattr(entry, "title_for") else entry.id})
            return response.json({"intents": list(getattr(domain, "intents", []) or []),
                                  "entities": list(getattr(domain, "entities", []) or []),
                                  "faq": entries, "model": getattr(agent, "model_id", None)})

        @bp.post("/workbench/api/annotate/intent")
        @requires_scope(Scope.TRAINING_ANNOTATE)
        async def annotate_intent(request: Request) -> HTTPResponse:
            body = json_body(request, dict)
            text, intent = body.get("text"), body.get("intent")
            if not isinstance(text, str) or not isinstance(intent, str):
                raise bad_request('Send {"text": "...", "intent": "...", "entities": [...]}.', "text")
            entities = body.get("entities") or []
            if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
                raise bad_request("'entities' must be a list of {start, end, entity, value?}.", "entities")
            try:
                return response.json(await service().annotate_intent(_actor(request), text, intent, entities),
                                     status=201)
            except AnnotationRejected as e:
                raise _rejected(e) from e

        @bp.post("/workbench/api/annotate/faq")
        @requires_scope(Scope.TRAINING_ANNOTATE)
        async def annotate_faq(request: Request) -> HTTPResponse:
            body = json_body(request, dict)
            text, entry, language = body.get("text"), body.get("entry_id"), body.get("language") or "zh"
            if not all(isinstance(x, str) for x in (text, entry, language)):
                raise bad_request('Send {"text": "...", "entry_id": "...", "language": "zh"}.', "entry_id")
            try:
                return response.json(await service().annotate_faq(_actor(request), text, entry, language), status=201)
            except AnnotationRejected as e:
                raise _rejected(e) from e

        @bp.post("/workbench/api/annotate/story")
        @requires_scope(Scope.TRAINING_ANNOTATE)
        async def annotate_story(request: Request) -> HTTPResponse:
            body = json_body(request, dict)
            cid = body.get("conversation_id")
            if not isinstance(cid, str) or not cid:
                raise bad_request('Send {"conversation_id": "...", "name": "..."}.', "conversation_id")
            steps = body.get("steps")
            if steps is not None and (not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps)):
                raise bad_request("'steps' must be a list of story steps.", "steps")
            try:
                result = await service().save_story(_actor(request), cid, body.get("name"), steps)
            except AnnotationRejected as e:
                raise _rejected(e) from e
            return response.json(result, status=201)

        @bp.post("/workbench/api/annotate/dismiss")
        @requires_scope(Scope.TRAINING_ANNOTATE)
        async def dismiss(request: Request) -> HTTPResponse:
            body = json_body(request, dict)
            texts = body.get("texts")
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise bad_request('Send {"texts": ["...", ...], "reason": "..."}.', "texts")
            return response.json(await service().dismiss(_actor(request), texts[:1000], str(body.get("reason") or "")))

        @bp.post("/workbench/api/train")
        @requires_scope(Scope.MODEL_TRAIN)
        async def train(request: Request) -> HTTPResponse:
            return response.json(await service().start_training(_actor(request)), status=202)

        @bp.get("/workbench/api/train/<job_id>")
        @requires_scope(Scope.MODEL_TRAIN)
        async def train_job(request: Request, job_id: str) -> HTTPResponse:
            job = await run_blocking(service().job, job_id)
            if job is None:
                raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No training job '{job_id}'.")
            return response.json(job)

        @bp.get("/workbench/api/models")
        @requires_scope(Scope.MODEL_TRAIN)
        async def models(request: Request) -> HTTPResponse:
            data = await run_blocking(service().registry.read)
            data["loaded"] = getattr(service().agent, "model_id", None)
            return response.json(data)

        @bp.post("/workbench/api/models/<name>/activate")
        @requires_scope(Scope.MODEL_WRITE)
        async def activate(request: Request, name: str) -> HTTPResponse:
            body = json_body(request, dict) if request.body else {}
            try:
                record = await service().activate(_actor(request), name, bool(body.get("override")))
            except RegistryError as e:
                raise ErrorResponse(e.status, "Forbidden" if e.status == 403 else "Conflict"
                                    if e.status == 409 else "NotFound", str(e)) from e
            return response.json(record)

        @bp.post("/workbench/api/models/rollback")
        @requires_scope(Scope.MODEL_WRITE)
        async def rollback(request: Request) -> HTTPResponse:
            try:
                record = await service().activate(_actor(request), "", False, rollback=True)
            except RegistryError as e:
                raise ErrorResponse(e.status, "Conflict", str(e)) from e
            return response.json(record)

        return (bp,)


def workbench_feature(settings: ProjectSettings) -> WorkbenchFeature | None:
    """Built for every project folder: the page and API need no configuration."""
    if settings.root is None:
        return None
    return WorkbenchFeature(settings)
