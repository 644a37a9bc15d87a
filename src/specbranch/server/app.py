"""The HTTP layer: an OpenAI-compatible FastAPI app over a `Scheduler`.

Routes (module-level handlers on `router`, reading what they share from `app.state`, see
`create_app`): GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health,
GET /metrics (Prometheus text; GET /v1/metrics or /metrics?format=json: the JSON counters and
rates). A handler validates the body, tokenizes the prompt (its own tokenizer copy: the decode
thread uses the engine's), submits a job and waits for its first event, so every error found
before generation starts gets a proper status code (400 bad input, 404 unknown model, 503 queue
full or engine down, 504 timeout). Streams are server-sent events in OpenAI's chunk
format ending with `data: [DONE]`; an error after the stream began is sent as a final
`data: {"error": ...}` event. A client that disconnects cancels its job. Where a request's
answer is decided (`_api_error`, `_serve`, `_stream`) it is counted in the app's `ServerMonitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from specbranch.config import option
from specbranch.engine import Chunk, Engine, encode_prompt
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair
from specbranch.server import protocol
from specbranch.server.monitoring import DISCONNECTED, ServerMonitor, status_of
from specbranch.server.protocol import (
    APIError,
    ChatCompletionChunk,
    ChatRequest,
    CompletionChunk,
    CompletionRequest,
    Endpoint,
)
from specbranch.server.scheduler import Job, QueueFull, Scheduler

DISCONNECT_POLL_SECONDS = 0.25

router = APIRouter()  # the routes below; `create_app` mounts them


@dataclass(frozen=True)
class ServerConfig:
    """Server settings.

    model_name: the id clients pass as `model` (and /v1/models lists).
    max_queue: requests that may wait beside those being decoded (more get 503).
    max_batch: requests decoded together, their rounds sharing target forwards (1: one at a time).
    request_timeout: seconds from arrival until a request is abandoned (504).
    default_max_tokens: max_tokens of a chat request that gives none (completions: 16, as OpenAI).
    """

    model_name: str
    method: str
    max_queue: int = option(32, "requests that may wait beside those being decoded")
    max_batch: int = option(
        4, "requests decoded together, joining and leaving between rounds (1: one at a time)"
    )
    request_timeout: float = option(300.0, "seconds from arrival after which a request is abandoned with 504")
    default_max_tokens: int = option(
        256, "max_tokens of chat requests that give none (completions default to 16, as OpenAI's)"
    )

    def __post_init__(self) -> None:
        if min(self.max_queue, self.max_batch, self.default_max_tokens) < 1 or self.request_timeout <= 0:
            raise SpecBranchError(
                "--max-queue, --max-batch and --default-max-tokens must be >= 1, --request-timeout > 0"
            )


def create_app(pair: ModelPair, make_engine: Callable[[], Engine], config: ServerConfig) -> FastAPI:
    """The app; the scheduler (and with it the engine and any worker) starts with the app.

    app.state holds what the handlers share: `config`, `pair` (with the handlers' own tokenizer
    copy), `make_engine`, `started` (the time /v1/models reports), `monitor` (its Prometheus
    metrics) and, while the app runs, `scheduler`.
    """
    if pair.tokenizer is None:
        raise SpecBranchError("the server needs a model with a tokenizer")
    app = FastAPI(title="specbranch", lifespan=_lifespan)
    app.state.config = config
    app.state.pair = dataclasses.replace(pair, tokenizer=copy.deepcopy(pair.tokenizer))
    app.state.make_engine = make_engine
    app.state.started = int(time.time())
    app.state.monitor = ServerMonitor(config.model_name, lambda: app.state.scheduler.health())
    app.add_exception_handler(APIError, _api_error)
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: ServerConfig = app.state.config
    app.state.scheduler = await asyncio.to_thread(
        Scheduler, app.state.make_engine, config.max_queue, config.request_timeout, max_batch=config.max_batch
    )
    yield
    await asyncio.to_thread(app.state.scheduler.close)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    """The error answer of a generation request (only those raise APIError), counted here."""
    request.app.state.monitor.finished(status_of(exc))
    return JSONResponse(exc.body(), status_code=exc.status)


@router.get("/v1/models")
async def models(request: Request) -> dict:
    state = request.app.state
    card = {"id": state.config.model_name, "object": "model", "created": state.started,
            "owned_by": "specbranch"}
    return {"object": "list", "data": [card]}


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    config: ServerConfig = request.app.state.config
    state = request.app.state.scheduler.health()
    state.update(method=config.method, model=config.model_name)
    return JSONResponse(state, status_code=200 if state["status"] == "ok" else 503)


@router.get("/metrics")
async def metrics(request: Request, format: Literal["prometheus", "json"] = "prometheus") -> Response:
    """Prometheus' text exposition (monitoring.py defines the metrics), or with ?format=json the JSON."""
    if format == "json":
        return JSONResponse(_metrics_json(request))
    return Response(request.app.state.monitor.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/metrics")
async def metrics_json(request: Request) -> dict:
    """The counters and rates since start-up as JSON (the scheduler's `ServerStats`)."""
    return _metrics_json(request)


def _metrics_json(request: Request) -> dict:
    config: ServerConfig = request.app.state.config
    return {"method": config.method, "model": config.model_name, **request.app.state.scheduler.metrics()}


@router.post("/v1/completions")
async def completions(request: Request):
    arrived = time.monotonic()
    body = protocol.parse_request(await request.body(), CompletionRequest)
    prompt_ids = _encode(request.app.state.pair, body.prompt_input(), chat=False)
    return await _serve(request, protocol.COMPLETIONS, body, prompt_ids, arrived)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    arrived = time.monotonic()
    body = protocol.parse_request(await request.body(), ChatRequest)
    prompt_ids = _encode(request.app.state.pair, body.chat_messages(), chat=True)
    return await _serve(request, protocol.CHAT_COMPLETIONS, body, prompt_ids, arrived)


async def _serve(
    request: Request,
    endpoint: Endpoint,
    body: CompletionRequest | ChatRequest,
    prompt_ids: list[int],
    arrived: float,
) -> dict | StreamingResponse:
    """Submit the request's job; its response body, or its stream once the first event arrived.

    arrived: `time.monotonic()` when the request arrived (time to first token counts from it).
    """
    config: ServerConfig = request.app.state.config
    monitor: ServerMonitor = request.app.state.monitor
    if body.model != config.model_name:
        raise APIError(404, f"model {body.model!r} is not served here; use {config.model_name!r}",
                       param="model", code="model_not_found")
    default = endpoint.default_max_tokens
    default = default if default is not None else config.default_max_tokens
    generation = body.generation_config(default, random.getrandbits(31))
    try:
        job = request.app.state.scheduler.submit(prompt_ids, generation)
    except QueueFull:
        raise APIError(503, "the server is busy: the request queue is full; retry later",
                       "server_error", code="queue_full") from None
    first = await _next_event(request, job)  # raises on an early error or a disconnect
    monitor.first_token(time.monotonic() - arrived)
    rid = endpoint.new_id()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream(request, job, first, endpoint.chunk, rid, include_usage)
        return StreamingResponse(events, media_type="text/event-stream")
    item = first
    while item.result is None:
        item = await _next_event(request, job)
    monitor.finished("ok", item.result)
    return endpoint.response.of(rid, config.model_name, item.result, config.method).model_dump()


async def _stream(
    request: Request,
    job: Job,
    first: Chunk,
    chunk: type[CompletionChunk] | type[ChatCompletionChunk],
    rid: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The server-sent events of a streamed response, from the job's first event on.

    The request is counted when its result or error arrives, or as cancelled if the stream is
    closed before (the client went away).
    """
    config: ServerConfig = request.app.state.config
    monitor: ServerMonitor = request.app.state.monitor
    model = config.model_name
    counted = False
    try:
        item, opened = first, False
        while True:
            if item.result is not None:
                monitor.finished("ok", item.result)
                counted = True
            if item.text or not opened:
                yield _event(chunk.of_text(rid, model, item.text, first=not opened).model_dump())
                opened = True
            if item.result is not None:
                yield _event(chunk.of_text(rid, model, None, item.result.finish_reason).model_dump())
                if include_usage:
                    yield _event(chunk.usage_chunk(rid, model, item.result, config.method).model_dump())
                break
            try:  # here Starlette itself notices a disconnect and closes this generator
                item = await _next_event(request, job, poll_disconnect=False)
            except APIError as exc:
                monitor.finished(status_of(exc))
                counted = True
                yield _event(exc.body())
                break
        yield "data: [DONE]\n\n"
    finally:  # normal end, or the client went away (the generator is closed or cancelled)
        if not counted:
            monitor.finished("cancelled")
        job.cancelled.set()


def _encode(pair: ModelPair, prompt: str | list, chat: bool) -> list[int]:
    try:
        return encode_prompt(pair, prompt, chat)
    except SpecBranchError as exc:
        code = "context_length_exceeded" if "context window" in str(exc) else None
        raise APIError(400, str(exc), param="messages" if chat else "prompt", code=code) from None


async def _next_event(request: Request, job: Job, poll_disconnect: bool = True) -> Chunk:
    """The job's next chunk; APIError if it failed; cancels the job if the client disconnects."""
    while True:
        try:
            timeout = DISCONNECT_POLL_SECONDS if poll_disconnect else None
            item = await asyncio.wait_for(job.events.get(), timeout)
        except TimeoutError:
            if await request.is_disconnected():
                job.cancelled.set()
                raise APIError(DISCONNECTED, "client disconnected") from None
            continue
        if isinstance(item, APIError):
            raise item
        return item


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"
