"""Where the proxy asks its guardrails: a request before it goes upstream, a whole answer before
the client gets it, a stream as it passes (`guarded_stream`). Each records what acted on the
exchange (the ``guardrail`` tag, the span attribute, the counter) and says whether it blocked.

A block answers 400 in OpenAI's error shape, ``code: "content_filter"``, naming the guardrail and
(on input) where the match is in ``param``; the native routes reshape it as their clients expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec
from starlette.responses import JSONResponse

from aivitals.bounds import MAX_TAGS
from aivitals.errors import ErrorInfo
from aivitals.gateway.body_text import answer_slots, request_slots
from aivitals.gateway.exchange import Exchange
from aivitals.gateway.guarded_stream import StreamGuard
from aivitals.gateway.guardrail_settings import Side
from aivitals.gateway.guardrails import TAG, Guardrails, Verdict, check, tag_value
from aivitals.gateway.metrics import GatewayMetrics
from aivitals.gateway.replies import openai_error

SPAN_ATTRIBUTE = "aivitals.guardrail"
"""On the gateway's request span: the same value as the ``guardrail`` tag."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Blocked:
    """A guardrail blocked: what the client gets, and the error the call is recorded with."""

    response: JSONResponse
    error: ErrorInfo


def route_of(exchange: Exchange) -> str:
    """The route's name as ``[[guardrails]] routes`` spell it."""
    if exchange.dialect is not None:
        return exchange.dialect.name
    return "completions" if exchange.operation == "text_completion" else exchange.operation


def guard_input(
    guardrails: Guardrails, exchange: Exchange, raw: bytes, metrics: GatewayMetrics
) -> bytes | Blocked:
    """The body to send upstream (``raw``, or re-encoded when redacted), or the block."""
    tags = exchange.attribution.tags
    if TAG in tags:
        # Only the gateway says which guardrails acted: a client's own tag of that name goes.
        kept = {key: value for key, value in tags.items() if key != TAG}
        exchange.attribution = replace(exchange.attribution, tags=kept)
    rails = guardrails.for_side("input", route_of(exchange), exchange.model or "")
    if not rails:
        return raw
    body: Any = exchange.body
    verdict = check(rails, request_slots(route_of(exchange), body))
    if not verdict.acted:
        return raw
    _record(verdict, exchange, metrics, "input")
    if verdict.blocked is not None:
        return _blocked(verdict, "input")
    if "redact" in verdict.acted.values():
        return _encode(body)
    return raw


def guard_whole(
    guardrails: Guardrails, exchange: Exchange, parsed: Mapping[str, Any], metrics: GatewayMetrics
) -> Blocked | bool | None:
    """A whole answer checked: the block, True when it was redacted in place, else None."""
    route = route_of(exchange)
    rails = guardrails.for_side("output", route, exchange.model or "")
    if not rails:
        return None
    verdict = check(rails, answer_slots(route, parsed))
    if not verdict.acted:
        return None
    _record(verdict, exchange, metrics, "output")
    if verdict.blocked is not None:
        return _blocked(verdict, "output")
    return True if "redact" in verdict.acted.values() else None


def guard_stream(guardrails: Guardrails, exchange: Exchange) -> StreamGuard | None:
    """The guard of one streamed answer; None when no output guardrail applies to it."""
    route = route_of(exchange)
    rails = guardrails.for_side("output", route, exchange.model or "")
    return StreamGuard(rails, route) if rails else None


def stream_verdict(
    guard: StreamGuard, exchange: Exchange, metrics: GatewayMetrics, status: int
) -> ErrorInfo | None:
    """At a stream's end: record what acted; the error to record when a guardrail blocked."""
    verdict = guard.verdict()
    if not verdict.acted:
        return None
    _record(verdict, exchange, metrics, "output")
    if verdict.blocked is None:
        return None
    return ErrorInfo("content_filter", status, verdict.message("output"))


def _blocked(verdict: Verdict, side: Side) -> Blocked:
    message = verdict.message(side)
    response = openai_error(
        400,
        message,
        type_="invalid_request_error",
        code="content_filter",
        param=verdict.param if side == "input" else None,
    )
    return Blocked(response, ErrorInfo("content_filter", 400, message))


def _record(verdict: Verdict, exchange: Exchange, metrics: GatewayMetrics, side: Side) -> None:
    tags = dict(exchange.attribution.tags)
    acted = dict(verdict.acted)
    earlier = tags.pop(TAG, "")
    for pair in filter(None, earlier.split(",")):  # the input side's, when output acts too
        name, _, action = pair.partition(":")
        acted.setdefault(name, action)
    if len(tags) >= MAX_TAGS:
        # The gateway's own tag wins over the client's last one: the call must stay storable.
        tags.pop(next(reversed(tags)))
    tags[TAG] = tag_value(acted.items())
    exchange.attribution = replace(exchange.attribution, tags=tags)
    exchange.trace.root.set_attribute(SPAN_ATTRIBUTE, tags[TAG])
    for name, action in verdict.acted.items():
        metrics.guardrail_acted(name, side, action)
