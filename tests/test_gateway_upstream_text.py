"""An upstream's odd text (a NUL in its model name, an overlong finish reason or error message)
never keeps the gateway from answering and recording the call: it is cut or cleaned to fit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aivitals.bounds import CALL_TEXT_CHARS, MAX_LONG_TEXT_CHARS
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.model import Call, clean_text
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink

from .support.servers import serve_in_thread

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def odd_upstream(request: Request) -> Response:
    if request.headers.get("x-odd") == "error":
        body = {"error": {"message": "no\u0000pe " + "x" * 20_000, "type": "server_error"}}
        return Response(json.dumps(body), 500, media_type="application/json")
    answer = {
        "id": "chatcmpl-odd",
        "object": "chat.completion",
        "model": "m\u0000" + "o" * 300,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop-" + "x" * 100,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    return Response(json.dumps(answer), media_type="application/json")


@pytest.fixture
def served() -> Iterator[tuple[str, MemorySink, Recorder]]:
    upstream_app = Starlette(routes=[Route("/v1/chat/completions", odd_upstream, methods=["POST"])])
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory], flush_interval_s=0.05)
    with serve_in_thread(upstream_app) as upstream:
        gateway = Gateway(
            recorder=recorder,
            upstreams=Upstreams([Upstream(name="odd", base_url=f"{upstream}/v1", timeout_s=5)]),
        )

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await gateway.start()
            yield
            await gateway.stop()

        with serve_in_thread(Starlette(routes=gateway.routes, lifespan=lifespan)) as origin:
            yield origin, memory, recorder
    recorder.close()


def recorded(memory: MemorySink, recorder: Recorder) -> Call:
    assert recorder.flush(timeout_s=10)
    (call,) = memory.calls
    return call


@pytest.mark.parametrize("odd", ["answer", "error"])
def test_odd_upstream_text_is_cut_and_cleaned_and_the_call_recorded(
    served: tuple[str, MemorySink, Recorder], odd: str
) -> None:
    origin, memory, recorder = served
    answer = httpx.post(
        f"{origin}/v1/chat/completions", json=CHAT, headers={"x-odd": odd}, timeout=30
    )
    assert answer.status_code == (200 if odd == "answer" else 500)
    assert "\\u0000" in answer.text  # the client gets the upstream's body as it came
    call = recorded(memory, recorder)
    texts: dict[str, Any] = {
        "response_model": call.response_model,
        "finish_reason": call.finish_reason,
        "error_message": call.error_message,
    }
    for field, text in texts.items():
        if text is not None:
            assert clean_text(text), field
            limit = MAX_LONG_TEXT_CHARS if field == "error_message" else CALL_TEXT_CHARS[field]
            assert len(text) <= limit, field
    if odd == "answer":
        assert call.status == "ok"
        assert call.finish_reason == ("stop-" + "x" * 100)[: CALL_TEXT_CHARS["finish_reason"]]
        assert call.response_model is not None and call.response_model.startswith("m")
    else:
        assert call.status == "error" and call.error_message is not None
        assert call.error_message.startswith("no")
