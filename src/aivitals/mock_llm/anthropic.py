"""Anthropic's Messages API, as the mock answers it: bodies, the SSE event stream and errors.

Anthropic counts input the other way round from OpenAI: ``input_tokens`` is only the part neither
read from nor written to the cache, and ``cache_creation_input_tokens`` is the sum of the writes by
lifetime in ``cache_creation``. A plan's ``prompt_tokens`` is the total, so the three add up to it:

>>> from aivitals.mock_llm.plan import Plan
>>> plan = Plan(None, 0.0, 0.0, 0.0, 3000, 1000, 30, 0, "stop", 1500, 500, 2)
>>> body = usage(plan, tier="standard")
>>> body["input_tokens"], body["cache_creation_input_tokens"], body["cache_creation"]
(500, 1500, {'ephemeral_5m_input_tokens': 1000, 'ephemeral_1h_input_tokens': 500})
>>> body["server_tool_use"], stop_reason("length")
({'web_search_requests': 2, 'web_fetch_requests': 0}, 'max_tokens')
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
from starlette.responses import Response

from aivitals.mock_llm import shapes
from aivitals.mock_llm.config import ErrorKind
from aivitals.mock_llm.controls import FinishReason
from aivitals.mock_llm.faults import context_window
from aivitals.mock_llm.plan import Plan
from aivitals.mock_llm.streaming import send_times

MESSAGES_PATH = "/v1/messages"

_STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "refusal": "refusal",
    # Anthropic has no filtered finish; a blocked answer stops as a refusal.
    "content_filter": "refusal",
}

_encode = msgspec.json.Encoder().encode


def stop_reason(finish: FinishReason) -> str:
    """Anthropic's ``stop_reason`` for a finish reason in the mock's (OpenAI's) words."""
    return _STOP_REASONS[finish]


def reported_tier(plan: Plan) -> str:
    """``usage.service_tier``: Anthropic answers ``standard`` for ``auto`` and ``standard_only``
    alike unless priority capacity served it, which only ``X-Mock-Service-Tier`` can say here."""
    return plan.service_tier or "standard"


def usage(
    plan: Plan, *, tier: str, output_tokens: int | None = None, searches: int | None = None
) -> dict[str, Any]:
    """The ``usage`` object; ``output_tokens`` and ``searches`` default to the plan's totals."""
    written_1h = plan.cache_write_1h_tokens
    return {
        "input_tokens": plan.uncached_tokens,
        "cache_creation_input_tokens": plan.cache_write_tokens,
        "cache_read_input_tokens": plan.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": plan.cache_write_tokens - written_1h,
            "ephemeral_1h_input_tokens": written_1h,
        },
        "output_tokens": plan.completion_tokens if output_tokens is None else output_tokens,
        "server_tool_use": {
            "web_search_requests": plan.web_search_requests if searches is None else searches,
            "web_fetch_requests": 0,
        },
        "service_tier": tier,
    }


def message(plan: Plan, *, model: str) -> dict[str, Any]:
    """A whole ``message``; refused answers carry no text, as Anthropic's do."""
    refused = plan.finish_reason in ("refusal", "content_filter")
    text = "" if refused else shapes.answer_text(plan)
    content: list[dict[str, Any]] = (
        [{"type": "text", "text": text, "citations": None}] if text else []
    )
    if plan.tool_call is not None:
        content = [_tool_use(plan.tool_call, _input(text))]
    return {
        "id": shapes.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(plan.finish_reason),
        "stop_sequence": None,
        "usage": usage(plan, tier=reported_tier(plan)),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encode({"type": kind, **data}) + b"\n\n"


def message_events(plan: Plan, *, model: str, cut: bool = False) -> Iterator[tuple[float, bytes]]:
    """The Messages stream's schedule: ``message_start`` (with the input usage and one output
    token) and the first text at the TTFT, text deltas spread to the latency, then
    ``content_block_stop``, ``message_delta`` (cumulative usage: the input counts again, so a
    reader that adds it to ``message_start``'s counts twice) and ``message_stop``. ``cut`` stops
    after about half of it."""
    tier = reported_tier(plan)
    refused = plan.finish_reason in ("refusal", "content_filter")
    pieces = [] if refused else shapes.answer_pieces(plan)
    steps = max(len(pieces), 1)
    times = send_times(plan, steps)
    limit = (steps + 1) // 2 if cut else steps + 1
    started: dict[str, Any] = {
        "id": shapes.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Searches happen after the start: only message_delta counts them.
        "usage": usage(plan, tier=tier, output_tokens=min(plan.completion_tokens, 1), searches=0),
    }
    first = _event("message_start", {"message": started})
    tool = plan.tool_call
    block = {"type": "text", "text": ""} if tool is None else _tool_use(tool, {})
    first += _event("content_block_start", {"index": 0, "content_block": block})
    first += _event("ping", {})
    if pieces:
        first += _delta(pieces[0], tool=tool is not None)
    yield next(times), first
    for index in range(1, limit):
        at_s = next(times)
        if index < len(pieces):
            yield at_s, _delta(pieces[index], tool=tool is not None)
            continue
        final = usage(plan, tier=tier)
        del final["cache_creation"], final["service_tier"]  # message_delta's usage has neither
        tail = _event("content_block_stop", {"index": 0})
        tail += _event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason(plan.finish_reason), "stop_sequence": None},
                "usage": final,
            },
        )
        yield at_s, tail + _event("message_stop", {})


def _delta(text: str, *, tool: bool = False) -> bytes:
    delta = (
        {"type": "input_json_delta", "partial_json": text}
        if tool
        else {"type": "text_delta", "text": text}
    )
    return _event("content_block_delta", {"index": 0, "delta": delta})


def _tool_use(name: str, given: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": "toolu_" + shapes.new_id("")[:24],
        "name": name,
        "input": given,
    }


def _input(text: str) -> dict[str, Any]:
    """A whole message's ``tool_use.input`` is an object, never text: an answer that is not a
    JSON object is sent as ``{}`` (only a stream's ``partial_json`` can carry broken JSON)."""
    try:
        given = json.loads(text)
    except ValueError:
        return {}
    return given if isinstance(given, dict) else {}


def error_response(
    status: int, kind: str, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    """A JSON error reply in Anthropic's shape, ``{"type": "error", "error": {type, message}}``."""
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Response(_encode(body), status, headers=headers, media_type="application/json")


_MALFORMED_JSON = b'{"id": "msg_mock", "type": "message", "role": "assistant", "cont'
_MALFORMED_EVENT = (
    b'event: message_start\ndata: {"type": "message_start", "message": {"id": "ms\n\n'
)


def injected_error(
    kind: ErrorKind, *, model: str, prompt_tokens: int, stream: bool
) -> Response | None:
    """Anthropic's reply for an injected ``kind``; None for ``timeout`` and ``stream_cut``."""
    if kind == "rate_limit":
        return error_response(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per "
            "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
            headers={"retry-after": "1"},
        )
    if kind == "context_length":
        window = context_window(model)
        return error_response(
            400,
            "invalid_request_error",
            f"prompt is too long: {window + max(prompt_tokens, 1)} tokens > {window} maximum",
        )
    if kind == "content_filter":
        return error_response(
            400, "invalid_request_error", "Output blocked by content filtering policy"
        )
    if kind == "server_error":
        return error_response(500, "api_error", "Internal server error")
    if kind == "unavailable":
        return error_response(529, "overloaded_error", "Overloaded", headers={"retry-after": "1"})
    if kind == "auth":
        return error_response(401, "authentication_error", "invalid x-api-key")
    if kind == "malformed":
        if stream:
            return Response(_MALFORMED_EVENT, media_type="text/event-stream")
        return Response(_MALFORMED_JSON, media_type="application/json")
    return None
