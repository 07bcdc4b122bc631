"""The gateway's routes: check, forward, pass the answer through, record the call.

OpenAI's chat completions, completions and embeddings, and two native routes, each a `Dialect`:
Anthropic's ``/v1/messages`` (`messages`) and OpenAI's ``/v1/responses`` (`responses`), which go
through the same stages and are recorded the same way.

A request goes through its stages in order, each a trace span (`tracing`): ``auth`` (gateway
keys), ``rate_limit``, ``budget``, ``cache_lookup``, ``upstream`` and ``response``. Any stage may
answer by itself (401, 429, a cache hit) and the upstream then never sees the request.

Streams pass through event by event as they arrive (never buffered whole). For a stream whose
client did not ask for usage, the gateway asks the upstream for the final usage chunk and strips
it again. A client that goes away mid-stream is recorded as ``cancelled`` and the upstream request
is closed; one that goes while the upstream is still answering (any request) is recorded as
``cancelled`` then, and the upstream request is cancelled. Upstream errors reach the client with
the upstream's status, body and end-to-end headers (``Retry-After``...); a timeout is a 504 and a
refused connection a 502, each in OpenAI's error shape. What headers cross, each way: `headers`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

import anyio
import msgspec
from opentelemetry import trace as otel
from opentelemetry.trace import Span
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Match, Route
from starlette.types import Scope

from aivitals.attribution import AttributionError, attribution_from_headers
from aivitals.bounds import CALL_TEXT_CHARS, MAX_TAGS
from aivitals.errors import INVALID_RESPONSE, ErrorInfo, classify_response
from aivitals.gateway.budgets import BudgetLedger
from aivitals.gateway.cache import CachedAnswer, ResponseCache, cache_key
from aivitals.gateway.content import Thunk, replayed_content, stream_content, whole_content
from aivitals.gateway.decoding import BodyError, decode_body
from aivitals.gateway.dialect import Dialect, NativeRelay
from aivitals.gateway.disconnect import ClientGone, unless_gone
from aivitals.gateway.exchange import PATHS, Exchange
from aivitals.gateway.gpu_time import BusyMeter
from aivitals.gateway.guardrail_hooks import (
    Blocked,
    guard_input,
    guard_stream,
    guard_whole,
    stream_verdict,
)
from aivitals.gateway.guardrails import Guardrails
from aivitals.gateway.headers import client_response_headers, upstream_request_headers
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.limits import LimitPolicy, RateLimiter
from aivitals.gateway.messages import MESSAGES
from aivitals.gateway.metrics import GatewayMetrics
from aivitals.gateway.overhead import OVERHEAD_HEADER, Overhead, header_value
from aivitals.gateway.quantization import QUANTIZATION_HEADER, quantization_of
from aivitals.gateway.replies import bad_request, openai_error, unreachable
from aivitals.gateway.reserve import admit
from aivitals.gateway.responses import RESPONSES
from aivitals.gateway.semantic_cache import Scope as CacheScope
from aivitals.gateway.semantic_cache import SemanticCache
from aivitals.gateway.sse import StreamRelay
from aivitals.gateway.streamed import Streamed
from aivitals.gateway.tracing import TRACE_HEADER, RequestTrace, gateway_tracer
from aivitals.gateway.upstream_client import UpstreamClient, UpstreamFailure, UpstreamReply
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.model import Call, Operation, Status, clean_text, utc_now
from aivitals.recorder import Recorder
from aivitals.usage import TokenUsage, usage_from_openai

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_MODEL_CHARS = CALL_TEXT_CHARS["model"]
"""A longer model name is refused (400): it would not fit the store's column, and is no model's."""
CACHE_HEADER = "x-aivitals-cache"
GONE_STATUS = 499
"""What the gateway answers a client that already left (nginx's code): only its own metrics see it."""
_INLINE_SEARCH = 20_000
"""Up to this many entries in its partition, a semantic lookup runs on the event loop."""
_REQUIRED = {"chat": "messages", "text_completion": "prompt", "embeddings": "input"}
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class Gateway:
    """The proxy: give it the recorder and the upstreams; mount `routes`.

    The upstream client is made by `start` on the serving event loop (or pass ``client``).

    Optional parts: ``keys`` (gateway keys; none means the client's own key passes through),
    ``limiter`` and ``policy`` (rate limits), ``budgets`` (a `BudgetLedger` that is also one of the
    recorder's inline sinks, so it sees every priced call), ``cache`` with ``cache_routes`` (the
    operations cached without being asked), ``tracer`` (spans; a private provider by default),
    ``metrics`` (refusal counters) and ``now`` (the clock calls start by; the budgets' clock in
    tests).
    """

    def __init__(
        self,
        *,
        recorder: Recorder,
        upstreams: Upstreams,
        client: UpstreamClient | None = None,
        keys: KeyRing | None = None,
        limiter: RateLimiter | None = None,
        policy: LimitPolicy | None = None,
        budgets: BudgetLedger | None = None,
        cache: ResponseCache | None = None,
        cache_routes: Iterable[str] = (),
        cache_scope: CacheScope = "team",
        semantic: SemanticCache | None = None,
        guardrails: Guardrails | None = None,
        tracer: otel.Tracer | None = None,
        metrics: GatewayMetrics | None = None,
        now: Callable[[], datetime] = utc_now,
        gpu_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recorder = recorder
        self.upstreams = upstreams
        self.client = client or UpstreamClient()
        self.keys = keys or KeyRing()
        self.limiter = limiter or RateLimiter()
        self.policy = policy or LimitPolicy()
        self.budgets = budgets
        self.cache = cache
        self.cache_routes = frozenset(cache_routes)
        self.cache_scope: CacheScope = cache_scope
        self.semantic = semantic if cache is not None else None
        self.tracer = tracer or gateway_tracer()
        self.metrics = metrics or GatewayMetrics()
        # None when the config has no guardrail: the hot path then tests one attribute.
        self.guardrails = guardrails if guardrails else None
        if self.guardrails is not None:
            self.metrics.watch_guardrails((g.name, g.side, g.action) for g in self.guardrails.all)
        self.now = now
        # One busy-time meter per upstream priced by the GPU-hour (`gpu_time`).
        self.gpu_meters = {
            u.name: BusyMeter(clock=gpu_clock) for u in upstreams.all if u.gpu_hour_usd is not None
        }
        # The exchanges sent upstream and not yet recorded: aivitals_requests_in_flight counts
        # them. By id, for an Exchange has slots and no weak references.
        self._flying: dict[int, tuple[str, str]] = {}
        if cache is not None:
            self.metrics.watch_cache(lambda: len(cache), lambda: cache.bytes)

    async def start(self) -> None:
        """Open the upstream client on the running loop (the app's start-up calls this)."""
        await self.client.start()
        if self.semantic is not None:
            # The embedding model loads once per process (about 0.5 s): now, on a thread,
            # rather than on the event loop under the first question.
            await anyio.to_thread.run_sync(self.semantic.warm)

    async def stop(self) -> None:
        """Close the upstream client and its connections."""
        await self.client.stop()

    def check_upstreams(self) -> None:
        """Raises `ConfigError` when an upstream's key variable is unset (``/readyz``)."""
        for upstream in self.upstreams.all:
            _ = upstream.api_key

    @property
    def routes(self) -> list[Route]:
        return [
            _Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            _Route("/v1/completions", self.completions, methods=["POST"]),
            _Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            _Route("/v1/models", self.models, methods=["GET"]),
            _Route("/v1/messages", self.messages, methods=["POST"]),
            _Route("/v1/responses", self.responses, methods=["POST"]),
        ]

    async def chat_completions(self, request: Request) -> Response:
        return await self._proxy(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._proxy(request, "text_completion")

    async def embeddings(self, request: Request) -> Response:
        return await self._proxy(request, "embeddings")

    async def messages(self, request: Request) -> Response:
        """Anthropic's Messages API, passed through natively."""
        return await self._proxy(request, "chat", MESSAGES)

    async def responses(self, request: Request) -> Response:
        """OpenAI's Responses API, passed through natively."""
        return await self._proxy(request, "chat", RESPONSES)

    async def models(self, request: Request) -> Response:
        watch = Overhead(time.perf_counter())
        response = await self._models(request, watch)
        spent = watch.spent_s()
        response.headers[OVERHEAD_HEADER] = header_value(spent)
        self.metrics.spent("/v1/models", False, spent)
        return response

    async def _models(self, request: Request, watch: Overhead) -> Response:
        if (
            self.keys.enforced
            and self.keys.authenticate(request.headers.get("authorization")) is None
        ):
            return self._no_key()
        listed = self.upstreams.models()
        if listed:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "aivitals"} for m in listed
            ]
            return JSONResponse({"object": "list", "data": data})
        upstream = self.upstreams.all[0]
        began = time.perf_counter()
        try:
            answer = await self.client.send(
                "GET",
                upstream.url("models"),
                headers=self._headers(request, upstream, pass_client_key=not self.keys.enforced),
                timeout_s=upstream.timeout_s,
            )
            try:
                content = await answer.read()
            finally:
                answer.close()
        except UpstreamFailure as failure:
            return unreachable(upstream, failure.info)
        finally:
            watch.waited += time.perf_counter() - began
        return _passed_on(Response(content, answer.status, media_type="application/json"), answer)

    # -- the stages ------------------------------------------------------------------------------

    async def _proxy(
        self, request: Request, operation: Operation, dialect: Dialect | None = None
    ) -> Response:
        watch = Overhead(time.perf_counter())
        started_at = self.now()
        scope = request.scope
        trace = RequestTrace(
            self.tracer,
            request.headers,
            f"gateway {operation}",
            method=scope["method"],
            path=scope["path"],  # what ``request.url.path`` says, without building the URL
        )
        try:
            response = await self._handle(
                request, operation, trace, watch, started_at, dialect=dialect
            )
        except BaseException as exc:
            # The request span waits for a status: it ends with this one (the client's leaving
            # cancels the task: nginx's 499, not the server's error).
            trace.abort(GONE_STATUS if isinstance(exc, asyncio.CancelledError) else 500)
            raise
        if dialect is not None and type(response) is JSONResponse:
            # Only the gateway's own answers are JSONResponses (an upstream's pass through as
            # plain Responses): its errors, in the shape this API's clients parse.
            response = dialect.reshape(response)
        trace.answered(response.status_code)
        response.headers[TRACE_HEADER] = trace.trace_id
        spent = watch.spent_s()
        response.headers[OVERHEAD_HEADER] = header_value(spent)
        if isinstance(response, StreamingResponse):
            watch.at_head = spent  # its histogram sample is taken when the stream ends
        else:
            route = "/v1/" + (dialect.path if dialect is not None else PATHS[operation])
            self.metrics.spent(route, False, spent)
        return response

    async def _handle(
        self,
        request: Request,
        operation: Operation,
        trace: RequestTrace,
        watch: Overhead,
        started_at: datetime,
        *,
        dialect: Dialect | None = None,
    ) -> Response:
        key: GatewayKey | None = None
        if self.keys.enforced:
            with trace.stage("auth"):
                key = self.keys.authenticate(_client_key(request, dialect))
            if key is None:
                return self._refuse(trace, "auth", self._no_key())
        parsed = await self._parse(request, operation, dialect)
        if isinstance(parsed, Response):
            return self._refuse(trace, "bad_request", parsed)
        body, raw = parsed
        model: str = body["model"]
        upstream = (
            self.upstreams.route(model)
            if dialect is None
            else self.upstreams.route(model, api=dialect.upstream_api)
        )
        if upstream is None:
            return self._refuse(
                trace,
                "bad_request",
                bad_request(
                    f"no configured upstream serves model {model!r}",
                    code="model_not_found",
                    status=404,
                ),
            )
        trace.root.update_name(f"{operation} {model}")
        trace.describe(body)
        try:
            attribution = attribution_from_headers(request.headers, user=body.get("user"))
        except AttributionError as exc:
            return self._refuse(trace, "bad_request", bad_request(str(exc), param=exc.param))
        if key is not None:
            # Who the call is for is the key's to say, not the request's: budgets bind to it.
            attribution = key.bind(attribution)
        exchange = Exchange(
            operation=operation,
            model=model,
            upstream=upstream,
            attribution=attribution,
            body=body,
            trace=trace,
            t0=watch.t0,
            watch=watch,
            started_at=started_at,
            price=self.recorder.price_draft,
            dialect=dialect,
        )
        if self.guardrails is not None:
            # Before budgets and the cache: they reserve by, and key on, what goes upstream.
            guarded = guard_input(self.guardrails, exchange, raw, self.metrics)
            if isinstance(guarded, Blocked):  # never sent upstream
                self._record(exchange, exchange.call(error=guarded.error, http_status=400))
                return guarded.response
            raw = guarded
        exchange.limits = self.policy.limits(
            key_name=key.name if key else None,
            key_limits=(key.requests_per_minute, key.tokens_per_minute) if key else (None, None),
            user=attribution.user,
            team=attribution.team,
        )
        if exchange.limits:
            with trace.stage("rate_limit"):
                decision = await self.limiter.admit_async(exchange.limits)
            if decision.unavailable:
                down = openai_error(
                    503,
                    decision.reason,
                    type_="service_unavailable",
                    code="limits_unavailable",
                    headers={"retry-after": str(decision.retry_after_s)},
                )
                return self._refuse(trace, "limits_unavailable", down)
            if not decision.allowed:
                limited = openai_error(
                    429,
                    f"rate limit: {decision.reason}",
                    type_="requests",
                    code="rate_limit_exceeded",
                    headers={"retry-after": str(decision.retry_after_s)},
                )
                return self._refuse(trace, "rate_limit", limited)
        if self.budgets is not None and self.budgets.budgets:
            with trace.stage("budget"):
                held = await admit(
                    self.budgets,
                    self.recorder.pricer,
                    provider=upstream.provider,
                    model=model,
                    operation=operation,
                    attribution=attribution,
                    body=body,
                    body_bytes=len(raw),
                    at=started_at,
                    output_limit=dialect.output_limit if dialect is not None else None,
                )
            if isinstance(held, Response):
                return self._refuse(trace, "budget", held)
            # Released in _record when the call ends; a request that dies before that gives
            # it back below, and one whose end is never seen when the hold is collected.
            exchange.hold = held
        if self.cache is not None:
            hit = await self._lookup(request, exchange)
            if hit is not None:
                return self._replay(exchange, hit)
        try:
            return await self._forward(request, exchange, raw)
        except BaseException:
            if exchange.hold is not None:
                exchange.hold.release()
            self._landed(exchange)
            raise

    async def _parse(
        self, request: Request, operation: Operation, dialect: Dialect | None = None
    ) -> tuple[dict[str, Any], bytes] | Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _too_large()
        parts: list[bytes] = []
        size = 0
        try:
            async for part in request.stream():
                size += len(part)
                if size > MAX_BODY_BYTES:  # counted as it arrives: never held whole
                    return _too_large()
                parts.append(part)
        except ClientDisconnect:  # gone mid-body: nobody to answer, nothing to record
            return Response(status_code=GONE_STATUS)
        except HTTPException as refused:  # from the server's body limits: a body that stalled
            return openai_error(
                refused.status_code,
                refused.detail,
                type_="invalid_request_error",
                headers=refused.headers,
            )
        raw = b"".join(parts)
        try:
            body = decode_body(raw)
        except BodyError as exc:
            return bad_request(str(exc))
        if not isinstance(body, dict):
            return bad_request("request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return bad_request("missing required field: model", code="missing_model")
        if len(model) > MAX_MODEL_CHARS:
            return bad_request(
                f"model is {len(model)} characters long; at most {MAX_MODEL_CHARS} are accepted",
                code="invalid_value",
                param="model",
            )
        if not clean_text(model):
            return bad_request(
                "model must be valid UTF-8 text: no lone surrogate, no NUL",
                code="invalid_value",
                param="model",
            )
        required = _REQUIRED[operation] if dialect is None else dialect.required
        if not body.get(required):
            return bad_request(f"missing required field: {required}", param=required)
        if dialect is not None:
            wrong = dialect.check(body)
            if wrong is not None:
                return bad_request(wrong[0], param=wrong[1])
        return body, raw

    async def _lookup(self, request: Request, exchange: Exchange) -> CachedAnswer | None:
        assert self.cache is not None
        asked = request.headers.get(CACHE_HEADER, "").strip().lower()
        # A native route is cached apart: its body could read as a chat body, not its answer.
        route = exchange.operation if exchange.dialect is None else exchange.dialect.name
        if asked in ("off", "no", "false", "0"):
            if route in self.cache_routes:
                exchange.cache = "bypass"
            return None
        if asked not in ("on", "yes", "true", "1") and route not in self.cache_routes:
            return None
        # Scoped like the semantic level: an answer is only replayed to the tenant (team by
        # default) that paid for it, even to the same body. Requests without the scope's
        # value share among themselves, as a cache without tenants does.
        scope_value = self._scope_value(request, exchange, self.cache_scope)
        exchange.cache_key = cache_key(route, exchange.body, scope=scope_value or "")
        with exchange.trace.stage("cache_lookup") as span:
            hit = await self.cache.get_async(exchange.cache_key)
            if hit is None and self.semantic is not None:
                hit = await self._ask_semantic(exchange, route, scope_value)
            span.set_attribute("aivitals.cache", "hit" if hit else "miss")
        exchange.cache = "hit" if hit is not None else "miss"
        return hit

    async def _ask_semantic(
        self, exchange: Exchange, route: str, scope_value: str | None
    ) -> CachedAnswer | None:
        """The exact cache missed: the answer to the same question in other words, if any."""
        semantic = self.semantic
        assert semantic is not None and self.cache is not None
        if not semantic.applies(route, exchange.model or ""):
            return None
        question = semantic.question(route, exchange.body, scope_value=scope_value)
        if question is None:
            return None
        exchange.cache_level = "semantic"  # a miss is recorded at the last level asked
        if semantic.index.count(question.partition) < _INLINE_SEARCH:
            # Measured: embedding about 60 us, the search 180 us at 10,000 entries in the
            # partition (benchmarks/bench_semantic.py): cheaper than a hop to a thread.
            found = semantic.lookup(question)
        else:  # about 6 ms at 100,000 entries: off the event loop
            found = await anyio.to_thread.run_sync(semantic.lookup, question)
        exchange.semantic = found.pending
        if found.match is None:
            return None
        hit = await self.cache.get_async(found.match.value.exact_key)
        if hit is None:  # evicted from the exact cache, which holds the answers
            semantic.discard(question, found.match)
            return None
        if len(exchange.attribution.tags) < MAX_TAGS or (
            "cache_similarity" in exchange.attribution.tags
        ):
            similarity = f"{found.match.similarity:.3f}"
            exchange.attribution = exchange.attribution.merged(
                tags={"cache_similarity": similarity}
            )
        return hit

    def _scope_value(self, request: Request, exchange: Exchange, scope: CacheScope) -> str | None:
        """Whose answers this request may get (``[cache] scope``); None: nobody's named."""
        if scope == "global":
            return ""
        if scope == "team":
            return exchange.attribution.team
        if scope == "user":
            return exchange.attribution.user
        presented = _client_key(request, exchange.dialect)
        if self.keys.enforced:
            key = self.keys.authenticate(presented)
            return key.name if key is not None else None
        # No gateway keys: the client's own key (who pays upstream), never kept in clear.
        return hashlib.sha256(presented.encode()).hexdigest() if presented else None

    def _keep(self, exchange: Exchange, answer: CachedAnswer) -> None:
        """Cache a fresh answer, and index its question by meaning if the semantic level asked."""
        assert self.cache is not None and exchange.cache_key is not None
        kept = self.cache.put(exchange.cache_key, answer)
        if kept and exchange.semantic is not None and self.semantic is not None:
            self.semantic.add(exchange.semantic, exchange.cache_key)

    def _replay(self, exchange: Exchange, hit: CachedAnswer) -> Response:
        span = exchange.trace.start("response")

        def content(done: Call) -> Thunk | None:
            return replayed_content(exchange.dialect, exchange.body, hit.chunks, hit.stream, done)

        if not hit.stream:
            self._record(
                exchange,
                exchange.call(
                    response_model=hit.response_model,
                    finish_reason=hit.finish_reason,
                    http_status=200,
                    saved_usd=hit.cost_usd,
                ),
                span,
                content,
            )
            return Response(hit.chunks[0], 200, media_type=hit.media_type)

        async def events() -> AsyncIterator[bytes]:
            outcome: Status = "ok"
            try:
                for index, chunk in enumerate(hit.chunks):
                    if index == 0:
                        exchange.ttft_ms = (time.perf_counter() - exchange.t0) * 1000.0
                    yield chunk
            except BaseException:
                outcome = "cancelled"
                raise
            finally:
                call = exchange.call(
                    status=outcome,
                    response_model=hit.response_model,
                    finish_reason=hit.finish_reason,
                    http_status=200,
                    saved_usd=hit.cost_usd,
                )
                self._record(exchange, call, span, content)
                # A replay's chunks are at hand: what it spends past its head is the client's
                # pace, so its sample is the overhead up to the head.
                self.metrics.spent("/v1/" + exchange.path, True, exchange.watch.streamed_s())

        return Streamed(events(), 200, media_type=hit.media_type)

    async def _forward(self, request: Request, exchange: Exchange, raw: bytes) -> Response:
        body = exchange.body
        stream = body.get("stream") is True
        # Native routes always stream their usage; only chat and completions must be asked.
        injected = (
            stream
            and exchange.operation != "embeddings"
            and exchange.dialect is None
            and not isinstance(body.get("stream_options"), dict)
        )
        if injected:
            raw = _encode({**body, "stream_options": {"include_usage": True}})
        upstream = exchange.upstream
        ours: dict[str, str] = {}
        headers = self._headers(
            request, upstream, pass_client_key=not self.keys.enforced, ours=ours
        )
        try:
            exchange.quantization = quantization_of(
                ours.get(QUANTIZATION_HEADER), upstream.quantization, exchange.model or ""
            )
        except ValueError as exc:
            if exchange.hold is not None:
                exchange.hold.release()
            wrong = bad_request(str(exc), code="invalid_value", param="X-Aivitals-Quantization")
            return self._refuse(exchange.trace, "bad_request", wrong)
        url = upstream.url(exchange.path)
        span = exchange.trace.start_upstream(upstream.name, url)
        exchange.trace.propagate(span, headers)
        flying = (upstream.provider, exchange.model or "")
        self.recorder.call_started(*flying)
        self._flying[id(exchange)] = flying
        meter = self.gpu_meters.get(upstream.name) if self.gpu_meters else None
        if meter is not None:
            exchange.gpu = (meter, meter.start())
        began = time.perf_counter()
        try:
            answer = await unless_gone(
                request.receive,
                self.client.send(
                    "POST",
                    url,
                    headers=headers,
                    body=raw,
                    timeout_s=upstream.timeout_s,
                ),
            )
        except UpstreamFailure as failure:
            exchange.trace.fail_upstream(span, failure.info)
            self._record(exchange, exchange.call(error=failure.info))
            return unreachable(upstream, failure.info)
        except ClientGone:
            span.end()
            self._record(exchange, self._gone_call(exchange))
            return Response(status_code=GONE_STATUS)
        finally:
            exchange.watch.waited += time.perf_counter() - began
        exchange.trace.end_upstream(span, answer.status)
        replying = exchange.trace.start("response")
        if answer.status >= 400:
            began = time.perf_counter()
            try:
                content = await answer.read()
            except UpstreamFailure as failure:
                content = failure.info.message.encode()
            finally:
                answer.close()
                exchange.watch.waited += time.perf_counter() - began
            refused = classify_response(answer.status, content)
            self._record(
                exchange, exchange.call(error=refused, http_status=answer.status), replying
            )
            return _passed_on(
                Response(content, answer.status, media_type=answer.content_type), answer
            )
        if stream:
            relay: StreamRelay | NativeRelay = (
                StreamRelay(strip_usage=injected)
                if exchange.dialect is None
                else exchange.dialect.relay()
            )
            streamed = Streamed(
                self._relay(answer, exchange, relay, replying),
                status_code=answer.status,
                media_type="text/event-stream",
            )
            return _passed_on(streamed, answer)
        return await self._whole(answer, exchange, replying)

    async def _whole(self, answer: UpstreamReply, exchange: Exchange, span: Span) -> Response:
        # Not watched for the client leaving: a whole answer's body comes with its head.
        began = time.perf_counter()
        try:
            content = await answer.read()
        except UpstreamFailure as failure:
            self._record(exchange, exchange.call(error=failure.info), span)
            return unreachable(exchange.upstream, failure.info)
        finally:
            answer.close()
            exchange.watch.waited += time.perf_counter() - began
        try:
            parsed = _decode(content)
        except (msgspec.DecodeError, RecursionError):  # msgspec bounds depth by recursion
            parsed = None
        media_type = answer.content_type or "application/json"
        guarded = (
            guard_whole(self.guardrails, exchange, parsed, self.metrics)
            if self.guardrails is not None and isinstance(parsed, dict)
            else None
        )
        status = answer.status
        if isinstance(guarded, Blocked):  # recorded with its cost; the client gets the 400
            status = 400
        elif guarded is not None:  # redacted in place
            content = _encode(parsed)
        if not isinstance(parsed, dict):
            # Passed through as the upstream sent it; recorded as what it is.
            error = ErrorInfo(INVALID_RESPONSE.error_type, answer.status, INVALID_RESPONSE.message)
            self._record(exchange, exchange.call(error=error), span)
            return _passed_on(Response(content, answer.status, media_type=media_type), answer)
        if exchange.dialect is not None:
            said = exchange.dialect.read(parsed)
            exchange.trace.response_id = said.response_id
            call = exchange.call(
                usage=said.usage,
                response_model=said.response_model,
                finish_reason=said.finish_reason,
                http_status=status,
                service_tier=said.service_tier,
                error=guarded.error if isinstance(guarded, Blocked) else None,
            )
        else:
            choices = parsed.get("choices")
            reason = (
                choices[0].get("finish_reason")
                if choices and isinstance(choices[0], dict)
                else None
            )
            model = parsed.get("model")
            response_id = parsed.get("id")
            tier = parsed.get("service_tier")
            exchange.trace.response_id = response_id if isinstance(response_id, str) else None
            call = exchange.call(
                usage=usage_from_openai(parsed.get("usage")),
                response_model=model if isinstance(model, str) else None,
                finish_reason=reason if isinstance(reason, str) else None,
                http_status=status,
                service_tier=tier if isinstance(tier, str) and tier else None,
                error=guarded.error if isinstance(guarded, Blocked) else None,
            )
        recorded = self._record(
            exchange,
            call,
            span,
            lambda done: whole_content(exchange.dialect, exchange.body, parsed, done),
        )
        if isinstance(guarded, Blocked):
            return guarded.response
        if exchange.cache == "miss" and exchange.cache_key is not None and self.cache is not None:
            self._keep(
                exchange,
                CachedAnswer(
                    chunks=(content,),
                    media_type=media_type,
                    stream=False,
                    cost_usd=recorded.cost_usd,
                    response_model=recorded.response_model,
                    finish_reason=recorded.finish_reason,
                ),
            )
        return _passed_on(Response(content, answer.status, media_type=media_type), answer)

    async def _relay(
        self,
        answer: UpstreamReply,
        exchange: Exchange,
        relay: StreamRelay | NativeRelay,
        span: Span,
    ) -> AsyncIterator[bytes]:
        outcome: BaseException | None = None
        kept: list[bytes] | None = [] if exchange.cache == "miss" else None
        # The bytes passed on, for the call's content (parsed later, on the quality worker).
        said: list[bytes] | None = kept if kept is not None else None
        if said is None and self.recorder.wants_content:
            said = []
        guard = guard_stream(self.guardrails, exchange) if self.guardrails is not None else None
        watch = exchange.watch
        try:
            async for data in answer.chunks():
                # The overhead counts the handling of each chunk, not the waits around it.
                began = time.perf_counter()
                if exchange.ttft_ms is None:
                    exchange.ttft_ms = (began - exchange.t0) * 1000.0
                out = relay.feed(data)
                if guard is not None and out:
                    out = guard.feed(out)
                if out and said is not None:
                    said.append(out)
                watch.busy += time.perf_counter() - began
                if out:
                    yield out
                if guard is not None and guard.blocked is not None:
                    break  # the error event is out: the upstream is closed below
            rest = relay.flush()
            if guard is not None:
                rest = guard.close(rest)
            if rest:
                if said is not None:
                    said.append(rest)
                yield rest
        except BaseException as exc:  # a client gone (cancelled) or an upstream cut
            outcome = exc
            raise
        finally:
            # Nothing here awaits: a client that went away cancels this task, and an await
            # would be cancelled again. Closing the reply mid-body drops the upstream connection.
            ending = time.perf_counter()
            answer.close()
            exchange.trace.response_id = relay.response_id
            blocked = (
                stream_verdict(guard, exchange, self.metrics, answer.status)
                if guard is not None
                else None
            )
            call = self._record(
                exchange,
                self._stream_call(exchange, relay, outcome, answer.status, blocked),
                span,
                None
                if said is None
                else lambda done: stream_content(exchange.dialect, exchange.body, said, done),
            )
            if kept is not None and call.status == "ok" and exchange.cache_key is not None:
                assert self.cache is not None
                self._keep(
                    exchange,
                    CachedAnswer(
                        chunks=tuple(kept),
                        media_type="text/event-stream",
                        stream=True,
                        cost_usd=call.cost_usd,
                        response_model=call.response_model,
                        finish_reason=call.finish_reason,
                    ),
                )
            watch.busy += time.perf_counter() - ending
            self.metrics.spent("/v1/" + exchange.path, True, watch.streamed_s())

    @staticmethod
    def _gone_call(exchange: Exchange) -> Call:
        # The upstream may have billed the prompt (and more) already: its tokens are estimated
        # and flagged, as for a stream the client left; the output is unknown.
        return exchange.call(status="cancelled", usage=exchange.estimated_usage(0), estimated=True)

    @staticmethod
    def _stream_call(
        exchange: Exchange,
        relay: StreamRelay | NativeRelay,
        outcome: BaseException | None,
        status: int,
        blocked: ErrorInfo | None = None,
    ) -> Call:
        reported: TokenUsage | None
        if isinstance(relay, StreamRelay):
            reported = usage_from_openai(relay.usage) if relay.usage is not None else None
            estimated = False
        else:
            reported, estimated = relay.usage_now(), relay.estimated
        if reported is None:
            reported, estimated = exchange.estimated_usage(relay.content_events), True
        common: dict[str, Any] = {
            "usage": reported,
            "estimated": estimated,
            "response_model": relay.model,
            "finish_reason": relay.finish_reason,
            "http_status": status,
            "service_tier": relay.service_tier,
        }
        if outcome is None and blocked is not None:  # an output guardrail ended the stream
            return exchange.call(error=blocked, **common)
        if outcome is None and relay.error is not None:
            # An error event inside a 200 stream: read its body as an upstream failure would be.
            info = classify_response(502, {"error": relay.error})
            assert info is not None  # every status >= 400 is classified
            return exchange.call(error=replace(info, http_status=status), **common)
        if outcome is None and relay.malformed:
            # Passed on as it came (the client's SDK fails on it as it would without us).
            bad = ErrorInfo(INVALID_RESPONSE.error_type, status, relay.malformed)
            return exchange.call(error=bad, **common)
        if outcome is None and not relay.done:
            cut = ErrorInfo(
                "provider_down", status, "the upstream closed the stream before its end"
            )
            return exchange.call(error=cut, **common)
        if outcome is None:
            return exchange.call(**common)
        if isinstance(outcome, UpstreamFailure):
            return exchange.call(error=outcome.info, **common)
        return exchange.call(status="cancelled", **common)

    # -- helpers ---------------------------------------------------------------------------------

    def _landed(self, exchange: Exchange) -> None:
        """The exchange is no longer in flight (once, whichever way it ended)."""
        flying = self._flying.pop(id(exchange), None)
        if flying is not None:
            self.recorder.call_ended(*flying)
        if exchange.gpu is not None and exchange.priced is None:
            # Ended without a call (an exception on the way): its busy time ends all the same.
            meter, started = exchange.gpu
            meter.end(started)
            exchange.gpu = None

    def _record(
        self,
        exchange: Exchange,
        call: Call,
        span: Span | None = None,
        content: Callable[[Call], Thunk | None] | None = None,
    ) -> Call:
        self._landed(exchange)
        # ``content`` makes the content thunk from the call (its finish reason), only when
        # something reads content: the hot path pays one attribute read otherwise.
        thunk = content(call) if content is not None and self.recorder.wants_content else None
        recorded = self.recorder.record(call, thunk)
        if exchange.hold is not None:
            # The real cost is in the ledger now (an inline sink of the recorder): settled.
            exchange.hold.release()
        if exchange.limits:
            self.limiter.spend_tokens(exchange.limits, call.input_tokens + call.output_tokens)
        if span is not None:
            span.end()
        exchange.trace.end(recorded)
        return recorded

    def _refuse(self, trace: RequestTrace, reason: str, response: Response) -> Response:
        self.metrics.refused(reason)
        trace.refuse(response.status_code, reason)
        return response

    @staticmethod
    def _no_key() -> Response:
        return openai_error(
            401,
            "missing or unknown gateway key: send Authorization: Bearer <your gateway key>",
            type_="invalid_request_error",
            code="invalid_api_key",
        )

    @staticmethod
    def _headers(
        request: Request,
        upstream: Upstream,
        *,
        pass_client_key: bool = True,
        ours: dict[str, str] | None = None,
    ) -> dict[str, str]:
        headers = upstream_request_headers(request.headers.items(), ours=ours)
        key = upstream.api_key
        if key is not None:
            if upstream.api == "anthropic":
                headers["x-api-key"] = key
            else:
                headers["authorization"] = f"Bearer {key}"
        elif pass_client_key:
            # No gateway keys and no upstream key: the client's own key goes through (never
            # stored). With gateway keys, the client's header is a gateway key: never forwarded.
            if "authorization" in request.headers:
                headers["authorization"] = request.headers["authorization"]
            elif upstream.api == "anthropic" and "x-api-key" in request.headers:
                headers["x-api-key"] = request.headers["x-api-key"]
        return headers


def _too_large() -> Response:
    return bad_request(f"request body is over {MAX_BODY_BYTES // 1024 // 1024} MB", status=413)


def _client_key(request: Request, dialect: Dialect | None) -> str | None:
    """The client's ``Authorization``; on Anthropic's route a key may come in ``x-api-key``
    instead, as Anthropic's clients (older ones) send it."""
    authorization = request.headers.get("authorization")
    if authorization is None and dialect is MESSAGES:
        key = request.headers.get("x-api-key")
        return f"Bearer {key}" if key else None
    return authorization


def _passed_on(response: Response, answer: UpstreamReply) -> Response:
    """``response`` with the upstream's end-to-end headers (`headers`), the gateway's own kept."""
    ours = set(response.headers.keys())
    for name, value in client_response_headers(answer.headers):
        if name not in ours:
            response.headers.append(name, value)
    return response


class _Route(Route):
    """A Starlette route that names itself in the request's scope, as FastAPI's routes do.

    The server's metrics label a request by ``scope["route"].path``; without it every gateway
    request counted as ``route="unmatched"``.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child
