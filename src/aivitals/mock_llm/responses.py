"""OpenAI's Responses API, as the mock answers it: the ``response`` object and its event stream.

Usage is OpenAI's convention with the Responses API's names: ``input_tokens`` includes the cached
reads and writes, ``output_tokens`` the reasoning. Web searches show as ``web_search_call`` output
items and in ``tool_usage.web_search.num_requests``. A cut answer is ``incomplete``:

>>> from aivitals.mock_llm.plan import Plan
>>> plan = Plan(None, 0.0, 0.0, 0.0, 2000, 1024, 16, 4, "length", 512, 0, 1)
>>> body = response(plan, model="gpt-4o-mini", requested_tier=None)
>>> body["status"], body["incomplete_details"], body["service_tier"]
('incomplete', {'reason': 'max_output_tokens'}, 'default')
>>> body["usage"]["input_tokens_details"], [item["type"] for item in body["output"]]
({'cached_tokens': 1024, 'cache_write_tokens': 512}, ['web_search_call', 'reasoning', 'message'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from aivitals.mock_llm import shapes
from aivitals.mock_llm.plan import Plan
from aivitals.mock_llm.streaming import send_times

RESPONSES_PATH = "/v1/responses"

_INCOMPLETE: dict[str, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}

_encode = msgspec.json.Encoder().encode


def usage(plan: Plan) -> dict[str, Any]:
    """The Responses API's ``usage`` object."""
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": plan.cached_tokens,
            "cache_write_tokens": plan.cache_write_tokens,
        },
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def _search(index: int, status: str) -> dict[str, Any]:
    return {
        "id": f"ws_mock{index:04d}",
        "type": "web_search_call",
        "status": status,
        "action": {"type": "search", "query": "mock search"},
    }


def _message(item_id: str, plan: Plan, *, status: str, text: str | None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text is not None:
        if plan.finish_reason == "refusal":
            content.append({"type": "refusal", "refusal": text})
        else:
            content.append({"type": "output_text", "text": text, "annotations": []})
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _outcome(plan: Plan) -> tuple[str, dict[str, str] | None]:
    reason = _INCOMPLETE.get(plan.finish_reason)
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _envelope(
    ident: str, plan: Plan, *, model: str, requested_tier: str | None, created: int
) -> dict[str, Any]:
    """The parts of a ``response`` that do not change while it is generated."""
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": shapes.chat_tier(plan, requested_tier),
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def _finished(body: dict[str, Any], plan: Plan, output: list[dict[str, Any]]) -> dict[str, Any]:
    status, details = _outcome(plan)
    searches = plan.web_search_requests
    return {
        **body,
        "status": status,
        "incomplete_details": details,
        "output": output,
        "usage": usage(plan),
        "tool_usage": {
            "web_search": {"num_requests": searches},
            "image_gen": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        },
    }


def _output(plan: Plan, message_id: str) -> list[dict[str, Any]]:
    status, _ = _outcome(plan)
    items = [_search(index, "completed") for index in range(plan.web_search_requests)]
    if plan.reasoning_tokens:
        items.append({"id": "rs_mock", "type": "reasoning", "summary": []})
    text = shapes.answer_text(plan)
    if plan.tool_call is not None:
        items.append(_function_call(message_id, plan.tool_call, text or "{}", status="completed"))
        return items
    items.append(_message(message_id, plan, status=status, text=text))
    return items


def _function_call(item_id: str, name: str, arguments: str, *, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": shapes.tool_call_id(),
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response(plan: Plan, *, model: str, requested_tier: str | None) -> dict[str, Any]:
    """A whole ``response``."""
    body = _envelope(
        shapes.new_id("resp_"),
        plan,
        model=model,
        requested_tier=requested_tier,
        created=int(time.time()),
    )
    return _finished(body, plan, _output(plan, shapes.new_id("msg_")))


def response_events(
    plan: Plan, *, model: str, requested_tier: str | None, cut: bool = False
) -> Iterator[tuple[float, bytes]]:
    """The stream's schedule: ``response.created`` and ``response.in_progress``, each web search's
    ``output_item.added``/``done``, the message item and its text part, ``output_text.delta`` (or
    ``refusal.delta``) events spread from the TTFT to the latency, then the ``done`` events and
    ``response.completed`` (``response.incomplete`` when cut by ``max_output_tokens``) with the
    usage. ``cut`` stops after about half of it."""
    created = int(time.time())
    body = _envelope(
        shapes.new_id("resp_"), plan, model=model, requested_tier=requested_tier, created=created
    )
    message_id = shapes.new_id("msg_")
    output = _output(plan, message_id)
    index = len(output) - 1
    refusal = plan.finish_reason == "refusal"
    delta_kind = "response.refusal.delta" if refusal else "response.output_text.delta"
    part: dict[str, Any] = (
        {"type": "refusal", "refusal": ""}
        if refusal
        else {"type": "output_text", "text": "", "annotations": []}
    )
    sequence = iter(range(1 << 30))

    def event(kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(sequence), **data}
        return b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n"

    at = {"item_id": message_id, "output_index": index, "content_index": 0}
    pieces = shapes.answer_pieces(plan)
    if plan.tool_call is not None:
        yield from _function_call_events(plan, body, output, event, pieces or ["{}"])
        return
    steps = max(len(pieces), 1)
    times = send_times(plan, steps)
    limit = (steps + 1) // 2 if cut else steps + 1

    first = event("response.created", response=body)
    first += event("response.in_progress", response=body)
    for number, item in enumerate(output[:-1]):
        if item["type"] == "web_search_call":
            first += event(
                "response.output_item.added",
                output_index=number,
                item=_search(number, "in_progress"),
            )
        else:
            first += event("response.output_item.added", output_index=number, item=item)
        first += event("response.output_item.done", output_index=number, item=item)
    first += event(
        "response.output_item.added",
        output_index=index,
        item=_message(message_id, plan, status="in_progress", text=None),
    )
    first += event("response.content_part.added", part=part, **at)
    if pieces:
        first += event(delta_kind, delta=pieces[0], logprobs=[], **at)
    yield next(times), first
    for step in range(1, limit):
        at_s = next(times)
        if step < len(pieces):
            yield at_s, event(delta_kind, delta=pieces[step], logprobs=[], **at)
            continue
        text = shapes.answer_text(plan)
        done_part: dict[str, Any]
        if refusal:
            tail = event("response.refusal.done", refusal=text, **at)
            done_part = {"type": "refusal", "refusal": text}
        else:
            tail = event("response.output_text.done", text=text, logprobs=[], **at)
            done_part = {"type": "output_text", "text": text, "annotations": []}
        tail += event("response.content_part.done", part=done_part, **at)
        tail += event("response.output_item.done", output_index=index, item=output[-1])
        finished = _finished(body, plan, output)
        kind = "response.completed" if finished["status"] == "completed" else "response.incomplete"
        yield at_s, tail + event(kind, response=finished)


def _function_call_events(
    plan: Plan,
    body: dict[str, Any],
    output: list[dict[str, Any]],
    event: Callable[..., bytes],
    pieces: list[str],
) -> Iterator[tuple[float, bytes]]:
    """A function call's stream: its item added, ``response.function_call_arguments.delta``
    events with the arguments, their ``done``, the item done, then the response completed."""
    item = output[-1]
    index = len(output) - 1
    at = {"item_id": item["id"], "output_index": index}
    times = send_times(plan, len(pieces))
    first = event("response.created", response=body)
    first += event("response.in_progress", response=body)
    first += event(
        "response.output_item.added",
        output_index=index,
        item={**item, "arguments": "", "status": "in_progress"},
    )
    for number, piece in enumerate(pieces):
        chunk = event("response.function_call_arguments.delta", delta=piece, **at)
        yield next(times), (first + chunk) if number == 0 else chunk
    tail = event("response.function_call_arguments.done", arguments=item["arguments"], **at)
    tail += event("response.output_item.done", output_index=index, item=item)
    yield next(times), tail + event("response.completed", response=_finished(body, plan, output))
