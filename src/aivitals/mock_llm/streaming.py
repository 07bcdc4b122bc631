"""Server-sent events, sent on a schedule: `EventStream`, and the chat and text schedules.

A schedule is an iterator of ``(at_s, payload)``: send ``payload`` ``at_s`` seconds after the
stream starts. Each chunk is encoded when its turn comes, never all at once. The first content
arrives at the plan's TTFT (with the role chunk, in one write), the rest is spread evenly up to
its latency, where the finish chunk, the usage chunk (if asked for) and ``[DONE]`` go together:

>>> from aivitals.mock_llm.plan import Plan
>>> plan = Plan(None, 0.4, 0.1, 0.0, 10, 0, 2, 0, "stop")
>>> [round(at_s, 2) for at_s, _ in chat_events(plan, model="m", include_usage=False)]
[0.1, 0.25, 0.4]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import msgspec
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aivitals.mock_llm import shapes
from aivitals.mock_llm.plan import Plan

DONE = b"data: [DONE]\n\n"

_cut_on_purpose: ContextVar[bool] = ContextVar("aivitals_mock_cut_on_purpose", default=False)

_encode = msgspec.json.Encoder().encode


def cut_on_purpose() -> bool:
    """True in the server task of a request whose reply `EventStream` cut short on purpose.

    uvicorn logs "ASGI callable returned without completing response." for such a request; the
    runner reads this to drop that line, and only that one, for the cuts that were asked for.
    """
    return _cut_on_purpose.get()


async def pause(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds``, or less if the client hangs up; False when it did.

    Waiting on ``receive`` rather than sleeping blind frees the task as soon as a client gives
    up (a timeout test, a cancelled stream), so servers shut down without waiting out a hang.
    The request body must have been read already.
    """
    if seconds <= 0:
        return True
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return True
    return False


class EventStream(Response):
    """Sends a schedule as it comes due; with ``cut``, stops without ending the response.

    The response head goes out with the first payload, as a provider's does with its first
    token. A cut ends the body abruptly: the client sees the connection close mid-stream.
    """

    def __init__(
        self,
        events: Iterator[tuple[float, bytes]],
        *,
        media_type: str = "text/event-stream",
        cut: bool = False,
        on_gone: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.cut = cut
        self.on_gone = on_gone
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"cache-control": "no-cache"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        head_sent = False
        for at_s, payload in self.events:
            if not await pause(receive, started + at_s - time.monotonic()):
                # The client left; the server already knows, so nothing is logged.
                if self.on_gone is not None:
                    self.on_gone()
                return
            if not head_sent:
                head_sent = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
            await send({"type": "http.response.body", "body": payload, "more_body": True})
        if self.cut:
            _cut_on_purpose.set(True)
            return
        if not head_sent:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + _encode(chunk) + b"\n\n"


def send_times(plan: Plan, steps: int) -> Iterator[float]:
    """``steps + 1`` send times: the TTFT, then even steps up to the latency."""
    gap = (plan.latency_s - plan.ttft_s) / steps
    return (plan.ttft_s + gap * i for i in range(steps + 1))


def chat_events(
    plan: Plan,
    *,
    model: str,
    include_usage: bool,
    cut: bool = False,
    requested_tier: str | None = None,
) -> Iterator[tuple[float, bytes]]:
    """The ``chat.completion.chunk`` schedule; ``cut`` stops after about half of it. A refusal
    streams in ``delta.refusal`` instead of ``delta.content``."""
    ident, created = shapes.new_id("chatcmpl-"), int(time.time())
    tier = shapes.chat_tier(plan, requested_tier)
    key = "refusal" if plan.finish_reason == "refusal" else "content"
    pieces = shapes.answer_pieces(plan)
    steps = max(len(pieces), 1)
    times = send_times(plan, steps)
    limit = (steps + 1) // 2 if cut else steps + 1

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _event(
            shapes.chat_chunk(
                id=ident,
                created=created,
                model=model,
                delta=delta,
                finish_reason=finish_reason,
                include_usage=include_usage,
                service_tier=tier,
            )
        )

    first = chunk({"role": "assistant", "content": "", "refusal": None})
    if plan.tool_call is not None:
        pieces = pieces or ["{}"]
        first += chunk(_tool_delta(pieces[0], name=plan.tool_call))
    elif pieces:
        first += chunk({key: pieces[0]})
    yield next(times), first
    for index in range(1, limit):
        at_s = next(times)
        if index < len(pieces):
            delta = (
                _tool_delta(pieces[index]) if plan.tool_call is not None else {key: pieces[index]}
            )
            yield at_s, chunk(delta)
            continue
        tail = chunk({}, shapes.chat_finish(plan))
        if include_usage:
            usage = shapes.usage_chunk(
                plan,
                id=ident,
                created=created,
                model=model,
                object="chat.completion.chunk",
                details=True,
                service_tier=tier,
            )
            tail += _event(usage)
        yield at_s, tail + DONE


def _tool_delta(arguments: str, *, name: str | None = None) -> dict[str, Any]:
    """A delta with a piece of the one tool call's arguments; the first piece names the tool."""
    call: dict[str, Any] = {"index": 0, "function": {"arguments": arguments}}
    if name is not None:
        call.update(id=shapes.tool_call_id(), type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def text_events(
    plan: Plan, *, model: str, include_usage: bool, cut: bool = False
) -> Iterator[tuple[float, bytes]]:
    """The legacy ``text_completion`` schedule; ``cut`` stops after about half of it."""
    ident, created = shapes.new_id("cmpl-"), int(time.time())
    pieces = shapes.answer_pieces(plan) or [""]
    steps = len(pieces)
    times = send_times(plan, steps)
    limit = (steps + 1) // 2 if cut else steps + 1

    def chunk(text: str, finish_reason: str | None = None) -> bytes:
        return _event(
            shapes.text_chunk(
                id=ident,
                created=created,
                model=model,
                text=text,
                finish_reason=finish_reason,
                include_usage=include_usage,
            )
        )

    for index in range(limit):
        at_s = next(times)
        if index < steps:
            yield at_s, chunk(pieces[index])
            continue
        tail = chunk("", shapes.chat_finish(plan))
        if include_usage:
            usage = shapes.usage_chunk(
                plan,
                id=ident,
                created=created,
                model=model,
                object="text_completion",
                details=False,
            )
            tail += _event(usage)
        yield at_s, tail + DONE


def cut_json(body: bytes, plan: Plan) -> Iterator[tuple[float, bytes]]:
    """A whole JSON reply's schedule for ``stream_cut``: its first half, at the latency."""
    yield plan.latency_s, body[: len(body) // 2]
