"""`create_app`: the fake OpenAI-compatible upstream, as a Starlette app.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST /v1/embeddings``,
``GET /v1/models``, Anthropic's ``POST /v1/messages``, OpenAI's ``POST /v1/responses``, and for tests ``GET /mock/stats``, ``GET /mock/requests`` (the headers each
recent request arrived with) and ``POST /mock/reset``. Each request is checked (400 in OpenAI's
shape), planned once by the `Planner`, counted in `MockStats`, then answered after its planned
latency, with an ``x-request-id`` and a ``set-cookie`` as OpenAI's edge sends them:

>>> from starlette.testclient import TestClient
>>> with TestClient(create_app(MockConfig(time_scale=0))) as client:
...     reply = client.post("/v1/embeddings", json={"model": "m", "input": "hi", "dimensions": 3})
...     len(reply.json()["data"][0]["embedding"]), client.get("/mock/stats").json()["total"]
(3, 1)
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aivitals.mock_llm import anthropic, responses, shapes
from aivitals.mock_llm.anthropic import MESSAGES_PATH
from aivitals.mock_llm.config import ErrorKind, MockConfig
from aivitals.mock_llm.controls import ControlError, read_controls
from aivitals.mock_llm.faults import error_response, injected_error
from aivitals.mock_llm.judge import JudgeRequest, judge_reply, read_judge_request
from aivitals.mock_llm.plan import Plan, Planner
from aivitals.mock_llm.responses import RESPONSES_PATH
from aivitals.mock_llm.streaming import EventStream, chat_events, cut_json, pause, text_events
from aivitals.mock_llm.validation import (
    EmbeddingRequest,
    GenerateRequest,
    RequestError,
    decode_body,
    read_chat,
    read_completion,
    read_embedding,
    read_messages,
    read_response_request,
)

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"

_Operation = Literal["chat", "completions", "embeddings"]
_PATHS: dict[_Operation, str] = {
    "chat": CHAT_PATH,
    "completions": COMPLETIONS_PATH,
    "embeddings": EMBEDDINGS_PATH,
}
_READERS: dict[_Operation, Callable[[dict[str, Any]], GenerateRequest | EmbeddingRequest]] = {
    "chat": read_chat,
    "completions": read_completion,
    "embeddings": read_embedding,
}


KEPT_REQUESTS = 200
"""How many recent requests `MockStats.requests` keeps, with their headers."""


class MockStats:
    """Requests that reached the mock, bad ones included: in total, per path, model and error;
    ``gone`` counts clients that hung up before their answer was complete. The last
    `KEPT_REQUESTS` requests are kept with the headers and the body they arrived with
    (`requests`), so a test can assert what a proxy in front actually sent.

    Thread-safe, so a test can read it while the server runs in another thread.

    >>> stats = MockStats()
    >>> stats.count(CHAT_PATH, model="gpt-4o", error=None)
    >>> stats.snapshot()
    {'total': 1, 'endpoints': {'/v1/chat/completions': 1}, 'models': {'gpt-4o': 1}, 'errors': {}, 'gone': 0}
    >>> stats.receive("POST", CHAT_PATH, [(b"content-length", b"2")], b"{}")
    >>> stats.requests()
    [{'method': 'POST', 'path': '/v1/chat/completions', 'headers': [['content-length', '2']], 'body': '{}'}]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._gone = 0
        self._endpoints: Counter[str] = Counter()
        self._models: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._requests: deque[dict[str, Any]] = deque(maxlen=KEPT_REQUESTS)

    def receive(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> None:
        """Keep one request's method, path, headers (names lower-case, repeats and order kept)
        and body (as text; bytes that are not UTF-8 replaced) as they arrived."""
        kept = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
        text = body.decode("utf-8", "replace")
        with self._lock:
            self._requests.append({"method": method, "path": path, "headers": kept, "body": text})

    def requests(self) -> list[dict[str, Any]]:
        """The kept requests, oldest first, as ``GET /mock/requests`` lists them."""
        with self._lock:
            return list(self._requests)

    def hung_up(self) -> None:
        """Count a client that left before its answer was complete."""
        with self._lock:
            self._gone += 1

    def count(self, endpoint: str, *, model: str | None, error: ErrorKind | None) -> None:
        """Count one request; ``model`` is None when the body did not name one."""
        with self._lock:
            self._total += 1
            self._endpoints[endpoint] += 1
            if model is not None:
                self._models[model] += 1
            if error is not None:
                self._errors[error] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON-ready dicts (``errors`` counts injected errors by kind)."""
        with self._lock:
            return {
                "total": self._total,
                "endpoints": dict(self._endpoints),
                "models": dict(self._models),
                "errors": dict(self._errors),
                "gone": self._gone,
            }

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._gone = 0
            self._requests.clear()
            self._endpoints.clear()
            self._models.clear()
            self._errors.clear()


@dataclass(frozen=True, slots=True)
class _Dialect:
    """What differs between the generating APIs that are not OpenAI's chat and completions:
    how a body is read, how errors look, and the shapes of the answer."""

    path: str
    read: Callable[[dict[str, Any]], GenerateRequest]
    refuse: Callable[[int, str, str | None, str | None], Response]
    """(status, message, OpenAI-style code, param) -> an error reply in this API's shape."""
    injected: Callable[[ErrorKind, str, int, bool], Response | None]
    whole: Callable[[Plan, GenerateRequest], dict[str, Any]]
    events: Callable[[Plan, GenerateRequest, bool], Iterator[tuple[float, bytes]]]
    x_api_key: bool
    """The key may come in ``x-api-key`` as well as in ``Authorization: Bearer`` (Anthropic's
    API takes both; its current client sends the bearer form)."""
    missing_model: Callable[[str], str] = lambda model: (
        f"The model `{model}` does not exist or you do not have access to it."
    )
    version_header: str | None = None
    """A header the API requires on every request (Anthropic's ``anthropic-version``)."""


def _anthropic_refusal(status: int, message: str, code: str | None, param: str | None) -> Response:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(
        status, "invalid_request_error"
    )
    return anthropic.error_response(status, kind, message)


def _openai_refusal(status: int, message: str, code: str | None, param: str | None) -> Response:
    return error_response(status, message, code=code, param=param)


_MESSAGES = _Dialect(
    path=MESSAGES_PATH,
    read=read_messages,
    refuse=_anthropic_refusal,
    injected=lambda kind, model, prompt, stream: anthropic.injected_error(
        kind, model=model, prompt_tokens=prompt, stream=stream
    ),
    whole=lambda plan, parsed: anthropic.message(plan, model=parsed.model),
    events=lambda plan, parsed, cut: anthropic.message_events(plan, model=parsed.model, cut=cut),
    x_api_key=True,
    missing_model=lambda model: f"model: {model}",
    version_header="anthropic-version",
)
_RESPONSES = _Dialect(
    path=RESPONSES_PATH,
    read=read_response_request,
    refuse=_openai_refusal,
    injected=lambda kind, model, prompt, stream: injected_error(
        kind, model=model, prompt_tokens=prompt, chat=True, stream=stream
    ),
    whole=lambda plan, parsed: responses.response(
        plan, model=parsed.model, requested_tier=parsed.service_tier
    ),
    events=lambda plan, parsed, cut: responses.response_events(
        plan, model=parsed.model, requested_tier=parsed.service_tier, cut=cut
    ),
    x_api_key=False,
)


class _Upstream:
    """The handlers, sharing one config, planner and stats."""

    def __init__(self, config: MockConfig, stats: MockStats) -> None:
        self.config = config
        self.stats = stats
        self.planner = Planner(config)
        self._known_models = frozenset(config.models)
        self._models_body = msgspec.json.encode(shapes.model_list(config.models))
        self._authorization = f"Bearer {config.api_key}" if config.api_key else None

    async def chat(self, request: Request) -> Response:
        return await self._serve(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, "completions")

    async def embeddings(self, request: Request) -> Response:
        return await self._serve(request, "embeddings")

    async def messages(self, request: Request) -> Response:
        return await self._serve_dialect(request, _MESSAGES)

    async def responses(self, request: Request) -> Response:
        return await self._serve_dialect(request, _RESPONSES)

    async def _serve_dialect(self, request: Request, dialect: _Dialect) -> Response:
        # The body is read here (starlette keeps it for the handler): the kept request has it.
        body = await request.body()
        self.stats.receive(request.method, dialect.path, request.scope["headers"], body)
        reply = _stamped(await self._answer_dialect(request, dialect))
        if dialect is _MESSAGES:
            reply.headers["request-id"] = reply.headers["x-request-id"]
        return reply

    async def _answer_dialect(self, request: Request, dialect: _Dialect) -> Response:
        path, key = dialect.path, self.config.api_key
        if key is not None:
            headers = request.headers
            bearer = headers.get("authorization") == f"Bearer {key}"
            if not (bearer or (dialect.x_api_key and headers.get("x-api-key") == key)):
                self.stats.count(path, model=None, error="auth")
                refused = dialect.injected("auth", "", 0, False)
                assert refused is not None
                return refused
        version = dialect.version_header
        if version is not None and not request.headers.get(version):
            self.stats.count(path, model=None, error=None)
            return dialect.refuse(400, f"{version}: header is required", None, None)
        try:
            parsed = dialect.read(decode_body(await request.body()))
            controls = read_controls(request.scope["headers"])
        except RequestError as exc:
            self.stats.count(path, model=None, error=None)
            return dialect.refuse(400, exc.message, exc.code, exc.param)
        except ControlError as exc:
            self.stats.count(path, model=None, error=None)
            return dialect.refuse(400, str(exc), "invalid_mock_header", None)
        model = parsed.model
        if self.config.strict_models and model not in self._known_models:
            self.stats.count(path, model=model, error=None)
            return dialect.refuse(404, dialect.missing_model(model), "model_not_found", "model")
        plan = self.planner.plan(
            controls,
            prompt_tokens=parsed.prompt_tokens,
            max_tokens=parsed.max_tokens,
            cacheable=True,
        )
        self.stats.count(path, model=model, error=plan.error)
        if plan.error == "timeout":
            await self._pause(request, plan.hang_s)
        elif plan.error is not None:
            failure = dialect.injected(plan.error, model, plan.prompt_tokens, parsed.stream)
            if failure is not None:
                await self._pause(request, plan.ttft_s if parsed.stream else plan.latency_s)
                return failure
        cut = plan.error == "stream_cut"
        if parsed.stream:
            return EventStream(
                dialect.events(plan, parsed, cut), cut=cut, on_gone=self.stats.hung_up
            )
        reply = msgspec.json.encode(dialect.whole(plan, parsed))
        if cut:
            return EventStream(
                cut_json(reply, plan),
                media_type="application/json",
                cut=True,
                on_gone=self.stats.hung_up,
            )
        await self._pause(request, plan.latency_s)
        return Response(reply, media_type="application/json")

    async def models(self, request: Request) -> Response:
        self.stats.receive(request.method, MODELS_PATH, request.scope["headers"])
        self.stats.count(MODELS_PATH, model=None, error=None)
        return _stamped(Response(self._models_body, media_type="application/json"))

    async def read_stats(self, request: Request) -> Response:
        return _json(self.stats.snapshot())

    async def read_requests(self, request: Request) -> Response:
        return _json({"requests": self.stats.requests()})

    async def reset(self, request: Request) -> Response:
        self.stats.reset()
        self.planner.reset()
        return _json(self.stats.snapshot())

    async def _serve(self, request: Request, operation: _Operation) -> Response:
        path = _PATHS[operation]
        body = await request.body()
        self.stats.receive(request.method, path, request.scope["headers"], body)
        return _stamped(await self._answer(request, operation, path))

    async def _pause(self, request: Request, seconds: float) -> None:
        if not await pause(request.receive, seconds):
            self.stats.hung_up()

    async def _answer(self, request: Request, operation: _Operation, path: str) -> Response:
        if self._authorization is not None and (
            request.headers.get("authorization") != self._authorization
        ):
            self.stats.count(path, model=None, error="auth")
            refused = injected_error("auth", model="", prompt_tokens=0, chat=False)
            assert refused is not None
            return refused
        judged: JudgeRequest | None = None
        try:
            body = decode_body(await request.body())
            parsed = _READERS[operation](body)
            controls = read_controls(request.scope["headers"])
            if operation == "chat":  # aivitals' judge rubric gets a JSON verdict (mock_llm/judge)
                judged = read_judge_request(body)
        except (RequestError, ControlError) as exc:
            self.stats.count(path, model=None, error=None)
            return _bad_request(exc)
        if judged is not None:
            controls = judged.steer(controls)
        model = parsed.model
        if self.config.strict_models and model not in self._known_models:
            self.stats.count(path, model=model, error=None)
            return error_response(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        generate = parsed if isinstance(parsed, GenerateRequest) else None
        plan = self.planner.plan(
            controls,
            prompt_tokens=parsed.prompt_tokens,
            max_tokens=generate.max_tokens if generate else None,
            cacheable=operation == "chat",
        )
        self.stats.count(path, model=model, error=plan.error)
        stream = generate is not None and generate.stream
        if plan.error == "timeout":
            # Answer, eventually: the client's own timeout is what a test of this is about.
            await self._pause(request, plan.hang_s)
        elif plan.error is not None:
            chat = operation == "chat"
            failure = injected_error(
                plan.error, model=model, prompt_tokens=plan.prompt_tokens, chat=chat, stream=stream
            )
            if failure is not None:
                # An error comes when the first byte of a good answer would have.
                await self._pause(request, plan.ttft_s if stream else plan.latency_s)
                return failure
        cut = plan.error == "stream_cut"
        if generate is not None and stream:
            schedule = (
                chat_events(
                    plan,
                    model=model,
                    include_usage=generate.include_usage,
                    cut=cut,
                    requested_tier=generate.service_tier,
                )
                if operation == "chat"
                else text_events(plan, model=model, include_usage=generate.include_usage, cut=cut)
            )
            return EventStream(schedule, cut=cut, on_gone=self.stats.hung_up)
        reply = msgspec.json.encode(judge_reply(_whole_reply(operation, parsed, plan), judged))
        if cut:
            return EventStream(
                cut_json(reply, plan),
                media_type="application/json",
                cut=True,
                on_gone=self.stats.hung_up,
            )
        await self._pause(request, plan.latency_s)
        return Response(reply, media_type="application/json")


def _whole_reply(
    operation: _Operation, parsed: GenerateRequest | EmbeddingRequest, plan: Plan
) -> dict[str, Any]:
    if isinstance(parsed, EmbeddingRequest):
        return shapes.embeddings(parsed, prompt_tokens=plan.prompt_tokens)
    created = int(time.time())
    if operation == "chat":
        return shapes.chat_completion(
            plan,
            model=parsed.model,
            id=shapes.new_id("chatcmpl-"),
            created=created,
            requested_tier=parsed.service_tier,
        )
    return shapes.text_completion(
        plan, model=parsed.model, id=shapes.new_id("cmpl-"), created=created
    )


def _stamped(response: Response) -> Response:
    """Add the headers OpenAI's edge puts on every answer: a request id (end to end, which a
    proxy passes on) and a Cloudflare cookie (which a proxy should not hand its clients)."""
    response.headers["x-request-id"] = "req_" + secrets.token_hex(16)
    response.headers["set-cookie"] = (
        f"__cf_bm={secrets.token_urlsafe(24)}; path=/; HttpOnly; Secure; SameSite=None"
    )
    return response


def _json(data: dict[str, Any]) -> Response:
    return Response(msgspec.json.encode(data), media_type="application/json")


def _bad_request(exc: RequestError | ControlError) -> Response:
    if isinstance(exc, RequestError):
        return error_response(400, exc.message, param=exc.param, code=exc.code)
    return error_response(400, str(exc), code="invalid_mock_header")


async def _no_route(request: Request, exc: Exception) -> Response:
    # OpenAI's answer to an unknown path or method, so clients raise NotFoundError as they would.
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return error_response(status, f"Invalid URL ({request.method} {request.url.path})")


def create_app(config: MockConfig | None = None, *, stats: MockStats | None = None) -> Starlette:
    """Build the mock upstream; pass ``stats`` to read its counters without HTTP."""
    upstream = _Upstream(config or MockConfig(), stats or MockStats())
    routes = [
        Route(CHAT_PATH, upstream.chat, methods=["POST"]),
        Route(COMPLETIONS_PATH, upstream.completions, methods=["POST"]),
        Route(EMBEDDINGS_PATH, upstream.embeddings, methods=["POST"]),
        Route(MODELS_PATH, upstream.models, methods=["GET"]),
        Route(MESSAGES_PATH, upstream.messages, methods=["POST"]),
        Route(RESPONSES_PATH, upstream.responses, methods=["POST"]),
        Route("/mock/stats", upstream.read_stats, methods=["GET"]),
        Route("/mock/requests", upstream.read_requests, methods=["GET"]),
        Route("/mock/reset", upstream.reset, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: _no_route, 405: _no_route})
