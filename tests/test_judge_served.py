"""The judge end to end, with real parts only: the official ``openai`` client, aivitals' SDK
wrapper or `aivitals serve`'s gateway in front of an `aivitals mock-llm` process that is both the
application's upstream and the judge."""

from __future__ import annotations

import functools
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import aivitals
from aivitals.quality.judge_config import JudgeConfig
from aivitals.query import Queries, parse_since
from aivitals.sdk.runtime import reset
from aivitals.sinks.memory import MemorySink
from aivitals.store.sql import SqlStore
from tests.support.realservers import poll
from tests.test_judge import APP_MODEL, JUDGE_MODEL, MockLlm
from tests.test_server_serve import start

pytestmark = pytest.mark.slow

QUESTION: list[Any] = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLlm]:
    with MockLlm(tmp_path_factory.mktemp("mock-llm")) as server:
        yield server


def test_an_instrumented_openai_client_gets_its_calls_judged_off_its_thread(
    mock: MockLlm,
) -> None:
    mock.reset()
    memory = MemorySink()
    judge = JudgeConfig(base_url=mock.url + "/v1", model=JUDGE_MODEL, sample_rate=1.0)
    runtime = aivitals.configure(sinks=[memory], store=False, endpoint=False, judge=judge)
    try:
        client = aivitals.instrument(
            openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test", max_retries=0),
            feature="support",
        )
        replies = [
            client.chat.completions.create(model=APP_MODEL, messages=QUESTION) for _ in range(3)
        ]
        assert all(reply.choices[0].message.content for reply in replies)
        assert runtime.recorder.flush(timeout_s=60)
        app_calls = [c for c in memory.calls if c.feature == "support"]
        judge_calls = [c for c in memory.calls if c.feature == "aivitals-judge"]
        assert len(app_calls) == 3 and len(judge_calls) == 3
        judged = {s.call_id for s in memory.scores if s.name == "judge.relevance"}
        assert judged == {c.id for c in app_calls}
        hallucination = [s for s in memory.scores if s.name == "judge.hallucination"]
        assert len(hallucination) == 3  # the system message is context
        assert mock.judge_requests() == 3
    finally:
        reset()


def test_serve_judges_what_its_gateway_proxies_and_stores_it_all(
    mock: MockLlm, tmp_path: Path
) -> None:
    mock.reset()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[[upstreams]]\nname = "mock"\nbase_url = "{mock.url}/v1"\n'
        f'[judge]\nbase_url = "{mock.url}/v1"\nmodel = "{JUDGE_MODEL}"\nsample_rate = 1.0\n'
        "max_daily_usd = 1\n"
    )
    db = tmp_path / "aivitals.db"
    process, url = start("--db", str(db), "--config", str(config))
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0)
        reply = client.chat.completions.create(
            model=APP_MODEL,
            messages=[
                *QUESTION[:1],
                {"role": "user", "content": "Capital? [mock-judge score=0.4]"},
            ],
            extra_headers={"X-Aivitals-Feature": "search"},
        )
        assert reply.choices[0].message.content
        judged = 'aivitals_judge_requests_total{outcome="judged"} 1.0'
        metrics = poll("the verdict in /metrics", lambda: _metrics(url, judged))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        if process.stderr is not None:
            process.stderr.close()
    assert "aivitals_judge_budget_usd 1.0" in metrics
    store = SqlStore.open(db)
    try:
        queries = Queries(store.engine)
        stored = [i.call for i in queries.calls(parse_since("1h", now=datetime.now(UTC)))]
        (app,) = [c for c in stored if c.feature == "search"]
        (judge_call,) = [c for c in stored if c.feature == "aivitals-judge"]
        detail = queries.call(app.id)
    finally:
        store.close()
    assert judge_call.model == JUDGE_MODEL and judge_call.cost_usd
    assert detail is not None and not isinstance(detail, str)
    assert {(s.name, s.value, s.source) for s in detail.scores if s.source == "judge"} == {
        ("judge.relevance", 0.4, "judge"),
        ("judge.hallucination", 0.4, "judge"),
    }


def _metrics(url: str, needle: str) -> str | None:
    text = httpx.get(url + "/metrics", timeout=10).text
    return text if needle in text else None


def test_a_restarted_serve_reads_the_days_judge_spend_back_from_its_store(
    mock: MockLlm, tmp_path: Path
) -> None:
    mock.reset()
    config = tmp_path / "gateway.toml"
    # One judge call costs more than this: the first one spends the day's budget.
    config.write_text(
        f'[[upstreams]]\nname = "mock"\nbase_url = "{mock.url}/v1"\n'
        f'[judge]\nbase_url = "{mock.url}/v1"\nmodel = "{JUDGE_MODEL}"\nsample_rate = 1.0\n'
        "max_daily_usd = 0.000001\n"
    )
    db = tmp_path / "aivitals.db"
    for run in range(2):
        process, url = start("--db", str(db), "--config", str(config))
        try:
            if run == 1:  # the new process knows the day is spent before judging anything
                scraped = httpx.get(url + "/metrics", timeout=10).text
                assert "aivitals_judge_budget_exhausted 1.0" in scraped
            client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0)
            client.chat.completions.create(model=APP_MODEL, messages=QUESTION)
            outcome = "judged" if run == 0 else "over_budget"
            poll(outcome, functools.partial(_metrics, url, f'{{outcome="{outcome}"}} 1.0'))
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
            if process.stderr is not None:
                process.stderr.close()
    assert mock.judge_requests() == 1
