"""Each built-in evaluator on answers proxied by the gateway: the real `openai` and `anthropic`
clients in front (chat completions, Anthropic's /v1/messages, the Responses API, whole and
streamed), `aivitals mock-llm` behind, told what to answer. The runtime is `build_runtime`'s,
as `aivitals serve` builds it, and the evaluators' scores are read back from its store.
The expected scores are the table's (tests/support/content_cases.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from prometheus_client import CollectorRegistry

from aivitals.gateway.proxy import Gateway
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.query import Queries
from aivitals.query.detail import CallDetail
from aivitals.runtime import Runtime, build_runtime
from aivitals.server import create_app
from aivitals.store.sql import SqlStore

from .support.content_cases import (
    Case,
    cases_for,
    chat_options,
    check,
    messages_options,
    responses_options,
)
from .support.servers import serve_in_thread

pytestmark = pytest.mark.slow

CLAUDE = "claude-haiku-4-5"
QUESTION = "What is the capital of France?"


@dataclass
class Rig:
    origin: str
    store: SqlStore
    runtime: Runtime
    gpt: openai.OpenAI
    claude: anthropic.Anthropic

    def scores_of(self, trace_id: str) -> dict[str, float]:
        """The evaluator scores stored for the call of the gateway trace ``trace_id``."""
        deadline = time.monotonic() + 10
        queries = Queries(self.store.engine)
        while True:
            assert self.runtime.recorder.flush(timeout_s=10)
            with self.store.engine.connect() as connection:
                row = connection.exec_driver_sql(
                    "SELECT id FROM calls WHERE trace_id = ?", (trace_id,)
                ).first()
            if row is not None:
                detail = queries.call(row[0])
                assert isinstance(detail, CallDetail)
                found = {s.name: s.value for s in detail.scores if s.source == "evaluator"}
                if found or time.monotonic() > deadline:
                    return found
            elif time.monotonic() > deadline:
                raise AssertionError(f"no call stored for trace {trace_id}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("content") / "calls.db"
    with MockServer(MockConfig(seed=21, time_scale=0)) as upstream:
        store = SqlStore.open(path)
        runtime = build_runtime(
            store=store, endpoint=False, registry=CollectorRegistry(), flush_interval_s=0.05
        )
        gateway = Gateway(
            recorder=runtime.recorder,
            upstreams=Upstreams(
                [
                    Upstream(name="openai", base_url=upstream.base_url),
                    Upstream(
                        name="anthropic",
                        base_url=upstream.base_url,
                        models=(CLAUDE,),
                        api="anthropic",
                        provider="anthropic",
                    ),
                ]
            ),
        )
        app = create_app(
            runtime=runtime, store=store, registry=CollectorRegistry(), gateway=gateway
        )
        with serve_in_thread(app) as origin:
            gpt = openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-client", max_retries=0)
            claude = anthropic.Anthropic(base_url=origin, api_key="sk-ant-client", max_retries=0)
            yield Rig(origin, store, runtime, gpt, claude)
            gpt.close()
            claude.close()
        runtime.recorder.close()
        store.close()


def trace_of(reply: Any, stream: bool) -> str:
    """Drain a stream; the gateway's trace id is in its answer's ``x-aivitals-trace-id``."""
    if stream:
        for _ in reply:
            pass
        return str(reply.response.headers["x-aivitals-trace-id"])
    return str(reply.headers["x-aivitals-trace-id"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", cases_for("chat"), ids=lambda case: case.id)
def test_chat(rig: Rig, case: Case, stream: bool) -> None:
    create = rig.gpt.chat.completions.with_raw_response.create
    if stream:
        create = rig.gpt.chat.completions.create  # type: ignore[assignment]
    reply = create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": QUESTION}],
        stream=stream,
        **chat_options(case),
    )
    check(case, rig.scores_of(trace_of(reply, stream)))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", cases_for("messages"), ids=lambda case: case.id)
def test_messages(rig: Rig, case: Case, stream: bool) -> None:
    create = rig.claude.messages.with_raw_response.create
    if stream:
        create = rig.claude.messages.create  # type: ignore[assignment]
    reply = create(
        model=CLAUDE,
        messages=[{"role": "user", "content": QUESTION}],
        stream=stream,
        **messages_options(case),
    )
    check(case, rig.scores_of(trace_of(reply, stream)))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", cases_for("responses"), ids=lambda case: case.id)
def test_responses(rig: Rig, case: Case, stream: bool) -> None:
    create = rig.gpt.responses.with_raw_response.create
    if stream:
        create = rig.gpt.responses.create  # type: ignore[assignment]
    reply = create(model="gpt-4o-mini", input=QUESTION, stream=stream, **responses_options(case))
    check(case, rig.scores_of(trace_of(reply, stream)))
