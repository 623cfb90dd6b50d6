"""``/model``: parse (``POST /model/parse``), NLU test (``POST /model/test/intents``),
train (``POST /model/train``) and load (``PUT /model``)."""
from __future__ import annotations

import inspect
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.server.routes.agent import get_agent, no_model_loaded
from bot.shared.concurrency import run_blocking
from bot.shared.jobs import HeavyJobsBusy
from bot.shared.yaml_io import HTTP_YAML_LIMITS, check_yaml_limits, read_yaml
from bot.web.auth import requires_scope
from bot.web.principals import Scope
from bot.web.errors import ErrorResponse, bad_request
from bot.web.requests import YAML_CONTENT_TYPE, accepts_json, bool_arg, json_body

logger = logging.getLogger(__name__)


async def _call_with_supported_kwargs(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Pass only the keyword arguments ``func`` declares (optional extensions)."""
    parameters = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in parameters}
    result = func(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


def _is_yaml_request(request: Request) -> bool:
    content_type = (request.content_type or "").lower()
    return "json" not in content_type


def create_model_blueprint() -> Blueprint:
    bp = Blueprint("kefu_model")

    @bp.post("/model/parse")
    @requires_scope(Scope.MODEL_PARSE)
    async def parse(request: Request) -> HTTPResponse:
        data = json_body(request, dict)
        text = data.get("text")
        if isinstance(text, list) and text and isinstance(text[0], str):
            text = text[0]  # Rasa's NoEmulator accepts ["text"]
        if not isinstance(text, str):
            raise bad_request(
                "No text message defined in request body. Add text message to the "
                'request body, e.g. {"text": "hello"}, to obtain the intent and '
                "extracted entities.",
                "text",
            )
        agent = get_agent(request)
        result = await agent.parse_message(text)
        if data.get("message_id") is not None:
            result = {**result, "message_id": data["message_id"]}
        return response.json(result)

    @bp.post("/model/test/intents")
    @requires_scope(Scope.MODEL_TEST)
    async def test_intents(request: Request) -> HTTPResponse:
        """Rasa's NLU evaluation over HTTP: the body is Rasa YAML NLU data."""
        from bot.nlu.evaluation import evaluate_nlu_yaml

        body = request.body.decode("utf-8", errors="replace") if request.body else ""
        if not body.strip():
            raise bad_request("The request body must be NLU training data in Rasa YAML.", "")
        agent = get_agent(request)
        processor = agent.processor
        if processor is None:
            raise no_model_loaded()
        try:
            # YAML from HTTP: size, alias and depth limits checked before the document is built.
            await run_blocking(check_yaml_limits, body, "<request body>", HTTP_YAML_LIMITS)
            result = await run_blocking(evaluate_nlu_yaml, processor._parse_sync, body)
        except ValueError as e:  # TrainingDataError / YamlError: a bad request, with file and line
            raise bad_request(str(e), "") from e
        return response.json(result)

    @bp.put("/model")
    @requires_scope(Scope.MODEL_WRITE)
    async def load_model(request: Request) -> HTTPResponse:
        data = json_body(request, dict)
        model_file = data.get("model_file")
        if not model_file or not isinstance(model_file, str):
            unsupported = [k for k in ("model_server", "remote_storage") if k in data]
            hint = (
                f" ({', '.join(unsupported)} is not supported by kefu)" if unsupported else ""
            )
            raise bad_request(
                f"No path to a model file defined in the request body{hint}. "
                'Fix: send {"model_file": "models/<name>.tar.gz"}.',
                "model_file",
            )
        agent = get_agent(request, require_ready=False)
        await agent.load_model(model_file)
        logger.info("Loaded model '%s' over HTTP.", model_file)
        return response.empty(status=204)

    @bp.post("/model/train")
    @requires_scope(Scope.MODEL_TRAIN)
    async def train(request: Request) -> HTTPResponse:
        if not request.body:
            raise bad_request(
                "You must provide training data in the request body in order to train "
                "your model (YAML with config, domain and data, Content-Type: "
                f"{YAML_CONTENT_TYPE}).",
                "",
            )
        payload: dict[str, Any] | bytes
        if _is_yaml_request(request):
            payload = request.body
            # Validate early, off the loop and within the HTTP limits (size, aliases,
            # nesting), so a YAML typo or an alias bomb is a 400 naming the line.
            parsed = await run_blocking(
                read_yaml,
                request.body.decode("utf-8", errors="replace"),
                "<request body>",
                HTTP_YAML_LIMITS,
            )
            if not isinstance(parsed, dict):
                raise bad_request(
                    "The request body must be a YAML mapping with keys like "
                    "'pipeline', 'policies', 'intents', 'nlu', 'stories', 'rules'.",
                    "",
                )
        else:
            payload = json_body(request, dict)
        agent = get_agent(request, require_ready=False)
        request.app.ctx.active_training_jobs += 1
        try:
            model_path = await _call_with_supported_kwargs(
                agent.train,
                payload,
                force_training=bool_arg(request, "force_training", False),
                save_to_default_model_directory=bool_arg(
                    request, "save_to_default_model_directory", True
                ),
            )
        except HeavyJobsBusy as e:  # another training or reload holds the heavy-jobs queue
            raise ErrorResponse(HTTPStatus.CONFLICT, "Conflict", str(e)) from e
        finally:
            request.app.ctx.active_training_jobs -= 1
        if not model_path:
            raise ErrorResponse(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "TrainingError",
                "Ran training, but it finished without a trained model.",
            )
        path = Path(str(model_path))
        filename = path.name
        if path.is_file() and not accepts_json(request):
            # Rasa answers with the archive itself.
            return await response.file(path, filename=filename, headers={"filename": filename})
        return response.json({"model": str(path)}, headers={"filename": filename})

    return bp
