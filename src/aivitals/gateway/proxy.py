"""The gateway's OpenAI-compatible routes: forward, pass the answer through, record the call.

Streams pass through event by event as they arrive (never buffered whole). For a stream whose
client did not ask for usage, the gateway asks the upstream for the final usage chunk and strips
it again. A client that goes away mid-stream is recorded as ``cancelled`` and the upstream request
is closed. Upstream errors reach the client with the upstream's status and body; a timeout is a
504 and a refused connection a 502, each in OpenAI's error shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import anyio
import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aivitals.errors import INVALID_RESPONSE, ErrorInfo, classify_error, classify_response
from aivitals.estimate import estimate_prompt_tokens
from aivitals.gateway.attribution import read_attribution
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.limits import Limit, LimitPolicy, RateLimiter
from aivitals.gateway.sse import StreamRelay
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.model import Call, Operation, utc_now
from aivitals.recorder import Recorder
from aivitals.sdk.context import Attribution
from aivitals.usage import TokenUsage, usage_from_openai

MAX_BODY_BYTES = 10 * 1024 * 1024
_HOP_HEADERS = {"authorization", "host", "content-length", "connection", "accept-encoding"}
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def openai_error(status: int, message: str, *, type_: str, code: str | None = None) -> JSONResponse:
    """An error in the shape OpenAI clients parse."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status_code=status,
    )


class _Exchange:
    """One proxied request: what is known about it so far, and how to record it."""

    __slots__ = (
        "attribution",
        "body",
        "limits",
        "model",
        "operation",
        "started_at",
        "t0",
        "ttft_ms",
        "upstream",
    )

    def __init__(
        self,
        *,
        operation: Operation,
        model: str,
        upstream: Upstream,
        attribution: Attribution,
        body: Mapping[str, Any],
    ) -> None:
        self.operation = operation
        self.model = model
        self.upstream = upstream
        self.attribution = attribution
        self.body = body
        self.started_at = utc_now()
        self.t0 = time.perf_counter()
        self.ttft_ms: float | None = None
        self.limits: list[Limit] = []

    def call(
        self,
        *,
        usage: TokenUsage | None = None,
        estimated: bool = False,
        status: str = "ok",
        error: ErrorInfo | None = None,
        response_model: str | None = None,
        finish_reason: str | None = None,
        http_status: int | None = None,
    ) -> Call:
        who = self.attribution
        usage = usage or TokenUsage()
        return Call(
            provider=self.upstream.provider,
            model=self.model,
            operation=self.operation,
            latency_ms=(time.perf_counter() - self.t0) * 1000.0,
            started_at=self.started_at,
            ttft_ms=self.ttft_ms,
            response_model=response_model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            tokens_estimated=estimated,
            status="error" if error is not None else status,  # type: ignore[arg-type]  # a Status
            error_type=error.error_type if error is not None else None,
            error_message=error.message if error is not None else None,
            http_status=http_status
            if http_status is not None
            else (error.http_status if error else None),
            finish_reason=finish_reason,
            endpoint=f"/v1/{_PATHS[self.operation]}",
            user=who.user,
            feature=who.feature,
            team=who.team,
            prompt_version=who.prompt_version,
            environment=who.environment,
            tags=dict(who.tags),
        )

    def estimated_usage(self, output_tokens: int) -> TokenUsage:
        prompt = estimate_prompt_tokens(
            self.body.get("messages"), self.body.get("prompt") or self.body.get("input")
        )
        return TokenUsage(input_tokens=prompt, output_tokens=output_tokens)


_PATHS: dict[Operation, str] = {
    "chat": "chat/completions",
    "text_completion": "completions",
    "embeddings": "embeddings",
    "other": "",
}


class Gateway:
    """The proxy: give it the recorder, the upstreams and an ``httpx.AsyncClient``; mount `routes`."""

    def __init__(
        self,
        *,
        recorder: Recorder,
        upstreams: Upstreams,
        client: httpx.AsyncClient,
        keys: KeyRing | None = None,
        limiter: RateLimiter | None = None,
        policy: LimitPolicy | None = None,
    ) -> None:
        self.recorder = recorder
        self.upstreams = upstreams
        self.client = client
        self.keys = keys or KeyRing()
        self.limiter = limiter or RateLimiter()
        self.policy = policy or LimitPolicy()

    def _record(self, exchange: _Exchange, call: Call) -> None:
        self.recorder.record(call)
        if exchange.limits:
            self.limiter.spend_tokens(exchange.limits, call.input_tokens + call.output_tokens)

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    async def chat_completions(self, request: Request) -> Response:
        return await self._proxy(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._proxy(request, "text_completion")

    async def embeddings(self, request: Request) -> Response:
        return await self._proxy(request, "embeddings")

    async def models(self, request: Request) -> Response:
        listed = self.upstreams.models()
        if listed:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "aivitals"} for m in listed
            ]
            return JSONResponse({"object": "list", "data": data})
        upstream = self.upstreams.all[0]
        try:
            answer = await self.client.get(
                upstream.url("models"), headers=self._headers(request, upstream)
            )
        except httpx.HTTPError as exc:
            return _unreachable(upstream, classify_error(exc))
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def _proxy(self, request: Request, operation: Operation) -> Response:
        key: GatewayKey | None = None
        if self.keys.enforced:
            key = self.keys.authenticate(request.headers.get("authorization"))
            if key is None:
                return openai_error(
                    401,
                    "missing or unknown gateway key: send Authorization: Bearer <your gateway key>",
                    type_="invalid_request_error",
                    code="invalid_api_key",
                )
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return openai_error(
                413,
                f"request body is over {MAX_BODY_BYTES // 1024 // 1024} MB",
                type_="invalid_request_error",
            )
        try:
            body = _decode(raw)
        except msgspec.DecodeError as exc:
            return openai_error(
                400, f"request body is not valid JSON: {exc}", type_="invalid_request_error"
            )
        if not isinstance(body, dict):
            return openai_error(
                400, "request body must be a JSON object", type_="invalid_request_error"
            )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return openai_error(
                400,
                "missing required field: model",
                type_="invalid_request_error",
                code="missing_model",
            )
        required = {"chat": "messages", "text_completion": "prompt", "embeddings": "input"}[
            operation
        ]
        if not body.get(required):
            return openai_error(
                400, f"missing required field: {required}", type_="invalid_request_error"
            )
        upstream = self.upstreams.route(model)
        if upstream is None:
            return openai_error(
                404,
                f"no configured upstream serves model {model!r}",
                type_="invalid_request_error",
                code="model_not_found",
            )
        attribution = read_attribution(request.headers, body)
        if key is not None:
            # A key's binding wins over what the request says about itself.
            attribution = attribution.merged(team=key.team, user=key.user)
        exchange = _Exchange(
            operation=operation, model=model, upstream=upstream, attribution=attribution, body=body
        )
        exchange.limits = self.policy.limits(
            key_name=key.name if key else None,
            key_limits=(key.requests_per_minute, key.tokens_per_minute) if key else (None, None),
            user=attribution.user,
            team=attribution.team,
        )
        if exchange.limits:
            decision = self.limiter.admit(exchange.limits)
            if not decision.allowed:
                limited = openai_error(
                    429,
                    f"rate limit: {decision.reason}",
                    type_="requests",
                    code="rate_limit_exceeded",
                )
                limited.headers["retry-after"] = str(decision.retry_after_s)
                return limited
        stream = body.get("stream") is True
        injected = (
            stream
            and operation != "embeddings"
            and not isinstance(body.get("stream_options"), dict)
        )
        if injected:
            body["stream_options"] = {"include_usage": True}
            raw = _encode(body)
        outgoing = self.client.build_request(
            "POST",
            upstream.url(_PATHS[operation]),
            content=raw,
            headers=self._headers(request, upstream, pass_client_key=not self.keys.enforced),
            timeout=upstream.timeout_s,
        )
        try:
            answer = await self.client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            info = classify_error(exc)
            self._record(exchange, exchange.call(error=info))
            return _unreachable(upstream, info)
        if answer.status_code >= 400:
            content = await answer.aread()
            await answer.aclose()
            refused = classify_response(answer.status_code, content)
            self._record(exchange, exchange.call(error=refused, http_status=answer.status_code))
            return Response(
                content, answer.status_code, media_type=answer.headers.get("content-type")
            )
        if stream:
            return StreamingResponse(
                self._relay(answer, exchange, StreamRelay(strip_usage=injected)),
                status_code=answer.status_code,
                media_type="text/event-stream",
            )
        return await self._whole(answer, exchange)

    async def _whole(self, answer: httpx.Response, exchange: _Exchange) -> Response:
        try:
            content = await answer.aread()
        except httpx.HTTPError as exc:
            info = classify_error(exc)
            self._record(exchange, exchange.call(error=info))
            return _unreachable(exchange.upstream, info)
        finally:
            await answer.aclose()
        try:
            parsed = _decode(content)
        except msgspec.DecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            # Passed through as the upstream sent it; recorded as what it is.
            error = ErrorInfo(
                INVALID_RESPONSE.error_type, answer.status_code, INVALID_RESPONSE.message
            )
            self._record(exchange, exchange.call(error=error))
        else:
            choices = parsed.get("choices")
            reason = (
                choices[0].get("finish_reason")
                if choices and isinstance(choices[0], dict)
                else None
            )
            self.recorder.record(
                exchange.call(
                    usage=usage_from_openai(parsed.get("usage")),
                    response_model=parsed.get("model")
                    if isinstance(parsed.get("model"), str)
                    else None,
                    finish_reason=reason if isinstance(reason, str) else None,
                    http_status=answer.status_code,
                )
            )
        return Response(content, answer.status_code, media_type=answer.headers.get("content-type"))

    async def _relay(
        self, answer: httpx.Response, exchange: _Exchange, relay: StreamRelay
    ) -> AsyncIterator[bytes]:
        outcome: BaseException | None = None
        try:
            async for data in answer.aiter_raw():
                if exchange.ttft_ms is None:
                    exchange.ttft_ms = (time.perf_counter() - exchange.t0) * 1000.0
                out = relay.feed(data)
                if out:
                    yield out
            rest = relay.flush()
            if rest:
                yield rest
        except BaseException as exc:  # a client gone (cancelled) or an upstream cut
            outcome = exc
            raise
        finally:
            # Record first (no await), then close the upstream shielded: a client that went away
            # cancels this task, and every unshielded await would be cancelled again.
            self._record(exchange, self._stream_call(exchange, relay, outcome, answer.status_code))
            with anyio.CancelScope(shield=True):
                await answer.aclose()

    @staticmethod
    def _stream_call(
        exchange: _Exchange, relay: StreamRelay, outcome: BaseException | None, status: int
    ) -> Call:
        if relay.usage is not None:
            usage, estimated = usage_from_openai(relay.usage), False
        else:
            usage, estimated = exchange.estimated_usage(relay.content_events), True
        common: dict[str, Any] = {
            "usage": usage,
            "estimated": estimated,
            "response_model": relay.model,
            "finish_reason": relay.finish_reason,
            "http_status": status,
        }
        if outcome is None and relay.error is not None:
            # An error event inside a 200 stream: read its body as an upstream failure would be.
            info = classify_response(502, {"error": relay.error})
            assert info is not None  # every status >= 400 is classified
            return exchange.call(error=replace(info, http_status=status), **common)
        if outcome is None and not relay.done:
            cut = ErrorInfo(
                "provider_down", status, "the upstream closed the stream before its end"
            )
            return exchange.call(error=cut, **common)
        if outcome is None:
            return exchange.call(**common)
        if isinstance(outcome, httpx.HTTPError):
            return exchange.call(error=classify_error(outcome), **common)
        return exchange.call(status="cancelled", **common)

    @staticmethod
    def _headers(
        request: Request, upstream: Upstream, *, pass_client_key: bool = True
    ) -> dict[str, str]:
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() not in _HOP_HEADERS and not key.lower().startswith("x-aivitals-")
        }
        key = upstream.api_key
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        elif pass_client_key and "authorization" in request.headers:
            # No gateway keys and no upstream key: the client's own key goes through (never
            # stored). With gateway keys, the client's header is a gateway key: never forwarded.
            headers["authorization"] = request.headers["authorization"]
        return headers


def _unreachable(upstream: Upstream, info: ErrorInfo) -> JSONResponse:
    if info.error_type == "timeout":
        return openai_error(
            504,
            f"upstream {upstream.name!r} did not answer within {upstream.timeout_s:g} s",
            type_="timeout",
        )
    return openai_error(
        502, f"upstream {upstream.name!r} cannot be reached: {info.message}", type_="upstream_error"
    )
