"""``taskfit serve``: a saved run as an HTTP service (FastAPI + uvicorn).

Endpoints: ``POST /v1/predict`` (a batch of inputs, any task); for generation runs the OpenAI-compatible
``POST /v1/chat/completions`` and ``POST /v1/completions`` (streaming included) and ``GET /v1/models``, so the
official ``openai`` client works against it; ``GET /health``; ``GET /metrics`` (Prometheus text format); the
OpenAPI spec at ``/openapi.json``.

Safe by default: binds 127.0.0.1; an API key (``TASKFIT_API_KEY``) makes every endpoint but /health answer 401
without ``Authorization: Bearer <key>``; body size (413), inputs per request (413), text length (422) and new
tokens (422) are bounded; each request has a timeout (504). Errors are JSON in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskfit.config import DecodingConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.serving.batching import Batcher
from taskfit.serving.predictor import Predictor
from taskfit.serving.schemas import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    PredictRequest,
    ServeSettings,
    TextInput,
    _OpenAIBase,
    error_body,
)

log = logging.getLogger("taskfit.serve")


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` gets 413 before the app parses it (declared or streamed)."""

    def __init__(self, app, max_bytes: int, on_reject: Callable[[str], None] = lambda path: None) -> None:
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def _reply_413(self, scope, send) -> None:
        self.on_reject(scope.get("path", ""))  # counted in /metrics like every other answer
        body = json.dumps(
            error_body(f"request body over the limit of {self.max_bytes} bytes", "request_too_large")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reply_413(scope, send)
            return
        # No declared length (a chunked body): read it here, up to the limit, then hand it on.
        chunks, received, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._reply_413(scope, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(chunks, receive), send)


def _as_json(scope) -> None:
    """Every POST endpoint takes JSON: a body sent without ``Content-Type: application/json`` (curl's ``-d``
    says form-urlencoded) is read as JSON rather than refused with 422."""
    headers = scope.get("headers") or []
    given = dict(headers).get(b"content-type", b"").split(b";")[0].strip().lower()
    if not given.endswith(b"json"):
        scope["headers"] = [(k, v) for k, v in headers if k != b"content-type"] + [
            (b"content-type", b"application/json")
        ]


def _replay(messages: list[dict], then=None):
    """An ASGI receive that returns ``messages`` first, then waits on ``then`` (e.g. for a disconnect)."""
    pending = list(messages)

    async def receive():
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


# -- the app --------------------------------------------------------------------------------------------


class Service:
    """One served run and what its routes share: the predictor, the limits, the metrics and the batcher."""

    def __init__(self, predictor: Predictor, settings: ServeSettings) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.predictor, self.settings = predictor, settings
        self.registry = CollectorRegistry()  # per app: no global state shared between services or tests
        self.requests_total = Counter(
            "taskfit_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "taskfit_request_seconds", "request latency", ["endpoint"], registry=self.registry
        )
        batch_sizes = Histogram(
            "taskfit_batch_size",
            "inputs per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.inputs_total = Counter("taskfit_inputs", "inputs predicted", registry=self.registry)
        self.tokens_total = Counter("taskfit_generated_tokens", "tokens generated", registry=self.registry)
        queue_depth = Gauge("taskfit_queue_depth", "inputs waiting for a batch", registry=self.registry)
        self.batcher = Batcher(
            self.run_batch, settings.max_batch_size, settings.max_wait_ms / 1000, batch_sizes.observe
        )
        queue_depth.set_function(lambda: self.batcher.depth)

    def run_batch(self, key, payloads: list) -> list:
        if key == "predict":
            return self.predictor.predict(payloads)
        _, decoding_json, seed = key
        completions = self.predictor.complete(
            payloads, DecodingConfig.model_validate_json(decoding_json), seed
        )
        self.tokens_total.inc(sum(c.completion_tokens for c in completions))
        return completions

    @asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        yield
        await self.batcher.stop()

    def authorised(self, request: Request) -> None:
        if self.settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given, wanted = token.strip().encode("utf-8", "replace"), self.settings.api_key.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, wanted):
            raise ApiError(
                401, "missing or wrong API key (send Authorization: Bearer <key>)", "authentication_error"
            )

    async def within_timeout(self, coro):
        try:
            return await asyncio.wait_for(coro, self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"the request took longer than {self.settings.timeout_s:g} s", "timeout"
            ) from None

    def check_texts(self, texts: list[str], param: str) -> None:
        settings = self.settings
        if len(texts) > settings.max_inputs:
            raise ApiError(
                413, f"{len(texts)} inputs in one request; the limit is {settings.max_inputs}", param=param
            )
        for i, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                raise ApiError(
                    422,
                    f"{param}[{i}] has {len(text)} characters; the limit is {settings.max_text_chars}",
                    param=f"{param}.{i}",
                )
            try:  # before it joins a batch: the tokenizer would fail the whole batch on it
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(
                    422,
                    f"{param}[{i}] is not encodable as UTF-8 (character {exc.start}: {exc.reason}, "
                    "e.g. a lone surrogate such as \\ud800)",
                    param=f"{param}.{i}",
                ) from None

    # -- generation ---------------------------------------------------------------------------------------

    def decoding_for(self, body: _OpenAIBase, max_tokens: int | None) -> DecodingConfig:
        base = self.predictor.decoding
        wanted = max_tokens or base.max_new_tokens
        if wanted > self.settings.max_new_tokens:
            raise ApiError(
                422,
                f"max_tokens {wanted} is over this server's limit of {self.settings.max_new_tokens}",
                param="max_tokens",
            )
        update: dict[str, Any] = {"max_new_tokens": wanted, "batch_size": self.settings.max_batch_size}
        if body.temperature == 0:  # OpenAI semantics: temperature 0 means greedy
            update["method"] = "greedy"
        elif body.temperature is not None:
            update.update(method="sample", temperature=body.temperature)
        if body.top_p is not None:
            update["top_p"] = body.top_p
        if body.stop is not None:
            update["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
        return DecodingConfig.model_validate({**base.model_dump(), **update})

    def streamable(self, body: _OpenAIBase, decoding: DecodingConfig, prompt: list[int]) -> None:
        if not prompt:  # e.g. prompt "": the model cannot run on zero tokens (a 500 before, found by fuzzing)
            raise ApiError(422, "the prompt is empty (0 tokens): give some text", param="prompt")
        self.predictor.check_length(prompt, decoding.max_new_tokens)
        if body.stream and decoding.method == "beam":
            raise ApiError(
                422,
                "this run decodes with beam search, which cannot stream: send temperature 0 (greedy) or > 0",
                param="stream",
            )

    async def stream_pieces(
        self, prompt: list[int], decoding: DecodingConfig, seed: int
    ) -> AsyncIterator[tuple[str, Any]]:
        """('text', piece) as the model writes, then ('done', Completion) or ('error', message). Stop strings
        are cut before sending; a client that goes away, a stop string or the timeout ends generation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        finished = threading.Event()
        deadline = time.monotonic() + self.settings.timeout_s
        job = self.batcher.call(
            self.predictor.stream,
            prompt,
            decoding,
            seed,
            lambda t: loop.call_soon_threadsafe(queue.put_nowait, t),
            lambda: finished.is_set() or time.monotonic() > deadline,
        )
        job_task = asyncio.ensure_future(job)
        job_task.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, None))
        hold = max((len(s) for s in decoding.stop), default=0)  # a stop string may arrive in pieces
        buffer, sent, stopped = "", 0, False
        try:
            while True:
                piece = await queue.get()
                if piece is None:
                    break
                if stopped:
                    continue
                buffer += piece
                cut = min((i for i in (buffer.find(s) for s in decoding.stop) if i >= 0), default=-1)
                if cut >= 0:
                    stopped = True
                    finished.set()  # nothing after a stop string is sent: stop computing it
                    if cut > sent:
                        yield "text", buffer[sent:cut]
                    sent = cut
                elif len(buffer) - hold > sent:
                    yield "text", buffer[sent : len(buffer) - hold]
                    sent = len(buffer) - hold
            try:
                completion = await job_task
            except Exception as exc:  # the response has started: report in the stream, then end it
                yield "error", str(exc) if isinstance(exc, TaskfitError) else f"generation failed: {exc}"
                return
            if not stopped and len(buffer) > sent:
                yield "text", buffer[sent:]
            self.tokens_total.inc(completion.completion_tokens)
            if stopped:
                completion.finish_reason = "stop"
            yield "done", completion
        finally:
            finished.set()  # the client went away (or we are done): the model thread stops at its next token

    async def sse_events(self, prompt, decoding, seed, text_chunk, last_chunk) -> AsyncIterator[str]:
        """Server-sent events in OpenAI's streaming shape; an error after the start is an error event."""
        async for kind, value in self.stream_pieces(prompt, decoding, seed):
            if kind == "text":
                yield sse(text_chunk(value))
            elif kind == "done":
                yield sse(last_chunk(value))
            else:
                yield sse(error_body(value, "server_error"))
        yield sse("[DONE]")


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(predictor: Predictor, settings: ServeSettings | None = None):
    """The HTTP service of a run: errors in one JSON shape, a gate on every request (key, JSON bodies, ids,
    metrics), the label routes, and for a run that writes text the OpenAI-compatible ones."""
    service = Service(predictor, settings or ServeSettings())
    app = FastAPI(
        title=f"taskfit: {predictor.name}",
        description=f"A taskfit {predictor.task} run served over HTTP.",
        version="1",
        lifespan=service.lifespan,
    )
    _error_handlers(app)
    _gate(app, service)
    _label_routes(app, service)
    if predictor.generates:  # the completion and chat endpoints serve text-writing runs only
        _chat_route(app, service)
        _completion_route(app, service)
    return app


def _error_handlers(app) -> None:
    """Every error in one JSON shape (OpenAI's), whichever layer raised it."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.message, exc.kind, exc.param), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:5]
        )
        return JSONResponse(error_body(message or "invalid request", "invalid_request_error", where), 422)

    @app.exception_handler(TaskfitError)
    async def _taskfit_error(request: Request, exc: TaskfitError):
        return JSONResponse(error_body(str(exc), "invalid_request_error"), status_code=400)


def _gate(app, service: Service) -> None:
    """The middleware every request passes, and the request counter the body-size limit reports to."""

    def endpoint_of(path: str) -> str:
        """The metrics label: a route's path, or one label for every unknown path (bounded cardinality)."""
        return path if path in {getattr(r, "path", None) for r in app.routes} else "unmatched"

    app.state.count_request = lambda path, status: service.requests_total.labels(
        endpoint_of(path), status
    ).inc()

    @app.middleware("http")
    async def _gate(request: Request, call_next):
        """Every request: an id, the API key checked first (before the body is parsed, so 401 comes before
        422; /docs and /openapi.json included), JSON bodies taken as JSON whatever their Content-Type says
        (``curl -d`` sends form-urlencoded), a logged traceback behind every 500, and the metrics."""
        started, request_id = time.perf_counter(), uuid.uuid4().hex
        try:
            if request.url.path != "/health":
                service.authorised(request)
            if request.method == "POST":
                _as_json(request.scope)
            response = await call_next(request)
        except ApiError as exc:
            response = JSONResponse(error_body(exc.message, exc.kind, exc.param), status_code=exc.status)
        except Exception:
            log.exception("request %s: %s %s failed", request_id, request.method, request.url.path)
            response = JSONResponse(
                error_body(
                    f"internal error (request id {request_id}; the server log has the details)",
                    "server_error",
                    request_id=request_id,
                ),
                status_code=500,
            )
        response.headers["x-request-id"] = request_id
        endpoint = endpoint_of(request.url.path)
        service.requests_total.labels(endpoint, str(response.status_code)).inc()
        service.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response


def _label_routes(app, service: Service) -> None:
    """/health, /metrics, /v1/predict and /v1/models: what every served run answers."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    predictor, guarded = service.predictor, [Depends(service.authorised)]

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": predictor.name, "task": predictor.task}

    @app.get("/metrics", dependencies=guarded)
    async def metrics():
        return PlainTextResponse(generate_latest(service.registry).decode(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict", dependencies=guarded)
    async def predict(body: PredictRequest) -> dict:
        inputs = [TextInput(text=i) if isinstance(i, str) else i for i in body.inputs]
        service.check_texts([i.text + (i.text_pair or "") for i in inputs], "inputs")
        examples = [
            Example(text=i.text, text_pair=i.text_pair, source=f"request:{n}") for n, i in enumerate(inputs)
        ]
        results = await service.within_timeout(service.batcher.submit(examples, "predict"))
        service.inputs_total.inc(len(examples))
        return {"model": predictor.name, "task": predictor.task, "predictions": results}

    if not predictor.generates:
        return

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": predictor.name, "object": "model", "created": 0, "owned_by": "taskfit"}],
        }


def _chat_route(app, service: Service) -> None:
    """/v1/chat/completions (OpenAI's shape; streamed as server-sent events on request)."""
    predictor = service.predictor

    @app.post("/v1/chat/completions", dependencies=[Depends(service.authorised)])
    async def chat(body: ChatRequest):
        service.check_texts([m.content for m in body.messages], "messages")
        decoding = service.decoding_for(body, body.max_completion_tokens or body.max_tokens)
        prompt = predictor.chat_prompt_ids([m.model_dump() for m in body.messages])
        service.streamable(body, decoding, prompt)
        seed = body.seed or 0
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "created": created, "model": predictor.name}
        if body.stream:
            chunk = {**head, "object": "chat.completion.chunk"}
            seen = {"first": True}

            def text_chunk(text: str) -> dict:
                delta = (
                    {"role": "assistant", "content": text} if seen.pop("first", False) else {"content": text}
                )
                return {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

            def last_chunk(c) -> dict:
                return {
                    **chunk,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": c.finish_reason}],
                    "usage": usage(c.prompt_tokens, c.completion_tokens),
                }

            events = service.sse_events(prompt, decoding, seed, text_chunk, last_chunk)
            return StreamingResponse(events, media_type="text/event-stream")
        (done,) = await service.within_timeout(
            service.batcher.submit([prompt], ("generate", decoding.model_dump_json(), seed))
        )
        return {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": usage(done.prompt_tokens, done.completion_tokens),
        }


def _completion_route(app, service: Service) -> None:
    """/v1/completions (OpenAI's shape; one prompt or several, one streamed on request)."""
    predictor = service.predictor

    @app.post("/v1/completions", dependencies=[Depends(service.authorised)])
    async def completions(body: CompletionRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise ApiError(422, "prompt: give a string or a non-empty list of strings", param="prompt")
        service.check_texts(prompts, "prompt")
        decoding = service.decoding_for(body, body.max_tokens)
        ids = [predictor.text_prompt_ids(p) for p in prompts]
        for prompt_ids in ids:
            service.streamable(body, decoding, prompt_ids)
        seed = body.seed or 0
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": predictor.name}
        if body.stream:
            if len(ids) > 1:
                raise ApiError(422, "stream: one prompt at a time", param="prompt")

            def text_chunk(text: str) -> dict:
                return {
                    **head,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}],
                }

            def last_chunk(c) -> dict:
                return {
                    **head,
                    "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": c.finish_reason}],
                    "usage": usage(c.prompt_tokens, c.completion_tokens),
                }

            events = service.sse_events(ids[0], decoding, seed, text_chunk, last_chunk)
            return StreamingResponse(events, media_type="text/event-stream")
        done = await service.within_timeout(
            service.batcher.submit(ids, ("generate", decoding.model_dump_json(), seed))
        )
        return {
            **head,
            "choices": [
                {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
                for i, c in enumerate(done)
            ],
            "usage": usage(sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done)),
        }


def build_asgi(predictor: Predictor, settings: ServeSettings):
    """The app wrapped in the body-size limit (outermost, so nothing parses an oversized body)."""
    app = create_app(predictor, settings)
    return BodyLimit(app, settings.max_body_bytes, lambda path: app.state.count_request(path, "413"))


def serve(
    run_dir: str, settings: ServeSettings, trust_remote_code: bool = False, device: str = "auto"
) -> None:
    import uvicorn

    predictor = Predictor.load(run_dir, trust_remote_code, device)
    uvicorn.run(build_asgi(predictor, settings), host=settings.host, port=settings.port, log_level="info")
