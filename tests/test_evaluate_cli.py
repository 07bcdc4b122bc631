"""``aivitals evaluate``: evaluators and the judge run later on stored calls whose content was
captured, as a subprocess against a store filled through the real capture path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa

import aivitals
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.sdk.runtime import reset
from aivitals.store.schema import calls, scores
from aivitals.store.sql import SqlStore


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(time_scale=0)) as server:
        yield server


def fill(
    upstream: MockServer, db: Path, headers: list[dict[str, str]], *, evaluators: bool = True
) -> list[str]:
    """One instrumented openai call per headers, captured; returns the call ids."""
    runtime = aivitals.configure(
        store=db, endpoint=False, flush_interval_s=0.05, capture_content=True, evaluators=evaluators
    )
    ids = []
    try:
        client = aivitals.instrument(
            openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
        )
        for extra in headers:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Capital of France?"}],
                extra_headers=extra,
            )
            ids.append(aivitals.last_call_id() or "")
        client.close()
        assert runtime.recorder.flush(timeout_s=10)
    finally:
        reset()
    return ids


def evaluate(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("aivitals")), "evaluate", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_scores(db: Path) -> list[tuple[str, str, float, str]]:
    store = SqlStore.open(db)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(scores.c.call_id, scores.c.name, scores.c.value, scores.c.source)
            ).all()
        return sorted((str(r[0]), str(r[1]), float(r[2]), str(r[3])) for r in rows)
    finally:
        store.close()


def test_stored_calls_are_scored_once(upstream: MockServer, tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    refused, polite, cut = fill(
        upstream,
        db,
        [
            {"X-Mock-Answer": "refusal"},
            {"X-Mock-Answer": "polite"},
            {"X-Mock-Answer": "polite", "X-Mock-Finish-Reason": "length"},
        ],
        evaluators=False,
    )
    assert stored_scores(db) == []  # evaluators were off: nothing scored live
    done = evaluate(db)
    assert done.returncode == 0, done.stderr
    assert "pii_leak" in done.stdout  # says why it did not run
    found = {(c, n): v for c, n, v, s in stored_scores(db) if s == "evaluator"}
    assert found[(refused, "refusal")] == 1.0
    assert found[(polite, "refusal")] == 0.0
    assert found[(cut, "truncated")] == 1.0
    assert found[(polite, "truncated")] == 0.0
    assert found[(polite, "empty")] == 0.0
    assert not any(name == "pii_leak" for _, name in found)
    before = stored_scores(db)
    again = evaluate(db)
    assert again.returncode == 0, again.stderr
    assert stored_scores(db) == before  # idempotent: no duplicate score


def test_live_scores_are_not_doubled(upstream: MockServer, tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    fill(upstream, db, [{"X-Mock-Answer": "refusal"}])  # evaluators on: scored live
    before = stored_scores(db)
    assert ("refusal", 1.0) in [(n, v) for _, n, v, _ in before]
    done = evaluate(db, "--json")
    assert done.returncode == 0, done.stderr
    assert stored_scores(db) == before


def test_user_evaluator_from_a_file_and_dry_run(upstream: MockServer, tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    (call_id,) = fill(upstream, db, [{"X-Mock-Answer": "polite"}], evaluators=False)
    module = tmp_path / "myevals.py"
    module.write_text(
        "import aivitals\n\n"
        "@aivitals.evaluator('cheerful')\n"
        "def cheerful(call, content):\n"
        "    return 1.0 if 'happy' in (content.output_text or '') else 0.0\n"
    )
    dry = evaluate(db, "--evaluators-from", str(module), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "cheerful: would write 1 scores" in dry.stdout
    assert stored_scores(db) == []  # a dry run writes nothing
    done = evaluate(db, "--evaluators-from", str(module), "--evaluator", "cheerful")
    assert done.returncode == 0, done.stderr
    assert stored_scores(db) == [(call_id, "cheerful", 1.0, "evaluator")]


def test_judge_against_mock_llm(upstream: MockServer, tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    (call_id,) = fill(
        upstream, db, [{"X-Mock-Text": "Paris. [mock-judge score=0.25]"}], evaluators=False
    )
    config = tmp_path / "judge.toml"
    config.write_text(
        f'[judge]\nbase_url = "{upstream.base_url}"\nmodel = "gpt-4o-mini"\n'
        "sample_rate = 1.0\nmax_attempts = 1\n"
    )
    done = evaluate(db, "--judge-config", str(config), "--no-evaluators")
    assert done.returncode == 0, done.stderr
    judged = [(c, n, v) for c, n, v, s in stored_scores(db) if s == "judge"]
    assert (call_id, "judge.relevance", 0.25) in judged
    store = SqlStore.open(db)
    try:
        with store.engine.connect() as connection:
            judge_calls = connection.scalar(
                sa.select(sa.func.count()).where(calls.c.feature == "aivitals-judge")
            )
    finally:
        store.close()
    assert judge_calls == 1  # the judge's own call is recorded and attributed
    again = evaluate(db, "--judge-config", str(config), "--no-evaluators")
    assert again.returncode == 0, again.stderr
    assert [(c, n, v) for c, n, v, s in stored_scores(db) if s == "judge"] == judged
    assert "already judged" in again.stdout  # and not sent to the judge again


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--evaluator", "pii_leak"], "redacted"),
        (["--evaluator", "nosuch"], "unknown evaluator"),
        (["--no-evaluators"], "nothing to run"),
        (["--since", "soon"], "since"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    upstream: MockServer, tmp_path: Path, args: list[str], says: str
) -> None:
    db = tmp_path / "calls.db"
    fill(upstream, db, [{"X-Mock-Answer": "polite"}], evaluators=False)
    done = evaluate(db, *args)
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_no_store_or_no_content_exits_2(upstream: MockServer, tmp_path: Path) -> None:
    missing = evaluate(tmp_path / "none.db")
    assert missing.returncode == 2 and "no store" in missing.stderr
    db = tmp_path / "calls.db"
    aivitals.configure(store=db, endpoint=False, flush_interval_s=0.05)
    try:
        client = aivitals.instrument(
            openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
        )
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
        client.close()
    finally:
        reset()
    done = evaluate(db)
    assert done.returncode == 2
    assert "no captured content" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
