"""Fuzzing the ingest and read API from its own OpenAPI document (schemathesis), on a real store.

Every ``/api/v1/`` operation of `create_app` is driven with cases schemathesis generates from
``/openapi.json``: valid ones (within the schema) and invalid ones (outside it), a few thousand in
all. No answer may be a 5xx. The app records into a real SQLite `SqlStore`, so whatever ingest
accepted is stored and the reads that follow run over it. Afterwards every read endpoint, and
`aivitals report` over the same file, must still answer: one accepted record once broke every
summary (a latency of 1.8e308 ms) and the calls listing (a lone surrogate in a tag key).

Cases are derandomized, so a run is repeatable; a failure names the request as a curl command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from prometheus_client import CollectorRegistry
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok
from typer.testing import CliRunner

from aivitals.alerts import AlertService
from aivitals.cli import app as cli
from aivitals.query import Queries
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.store import schema as schema_
from aivitals.store.sql import SqlStore
from tests.support.server_app import build_runtime

EXAMPLES = 120
"""Cases per operation and kind (valid, invalid, and a third for reads over real windows)."""

WINDOWS = ("1h", "30d", "9500d")
"""``since`` values that read real rows: random strings are mostly refused before any query."""

Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]

RULES = """
rules:
  - {name: ErrorsAbove, signal: error_rate, window: 15m, op: ">", threshold: 0.5}
  - {name: Spend, signal: spend, window: today, op: ">", threshold: 50}
"""


@dataclass
class Fuzzed:
    app: FastAPI
    runtime: Runtime
    store: SqlStore
    path: Path
    ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cases: int = 0


@contextmanager
def fuzzed_app(tmp_path: Path) -> Iterator[Fuzzed]:
    """The server as `aivitals serve` builds it: a real store, the recorder, the alert engine."""
    path = tmp_path / "fuzz.db"
    store = SqlStore.open(path)
    runtime = build_runtime(store)
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    alerts = AlertService(
        rules, queries=Queries(store.engine), state_path=tmp_path / "alerts-state.json"
    )
    alerts.start()
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry(), alerts=alerts)
    try:
        yield Fuzzed(app=app, runtime=runtime, store=store, path=path)
    finally:
        alerts.stop()
        runtime.recorder.close()
        store.close()


def strategies(
    operation: Operation, fuzzed: Fuzzed
) -> list[tuple[str, st.SearchStrategy[AnyCase]]]:
    """What to drive ``operation`` with: the schema's valid and invalid cases, and for reads,
    valid cases over windows that hold the rows ingest stored."""
    kinds = [
        ("valid", operation.as_strategy(generation_mode=GenerationMode.POSITIVE)),
        ("invalid", operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)),
    ]
    names = {parameter.name for parameter in operation.iter_parameters()}
    if operation.method.upper() == "GET" and "since" in names:
        windows = [operation.as_strategy(query={"since": since}) for since in WINDOWS]
        kinds.append(("over stored rows", st.one_of(windows)))
    if "call_id" in names and operation.method.upper() == "GET" and fuzzed.ids:
        stored = [operation.as_strategy(path_parameters={"call_id": i}) for i in fuzzed.ids[:5]]
        kinds.append(("stored call", st.one_of(stored)))
    return kinds


def fuzz(
    operation: Operation, kind: str, strategy: st.SearchStrategy[AnyCase], fuzzed: Fuzzed
) -> None:
    """Run ``strategy``'s cases; the first 5xx (shrunk by hypothesis) is kept as a failure."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        fuzzed.cases += 1
        try:
            reply = case.call()
        except Exception as exc:  # the app raised instead of answering: a 500 on a real server
            raise AssertionError(f"raised {exc!r}\n{case.as_curl_command()}") from exc
        assert reply.status_code < 500, (
            f"{reply.status_code} {reply.text[:300]}\n{case.as_curl_command()}"
        )
        if reply.status_code == 202 and operation.path.endswith("/calls"):
            fuzzed.ids.extend(reply.json()["ids"])

    try:
        run()
    except Unsatisfiable:
        pass  # no invalid case exists for an operation without parameters
    except AssertionError as exc:
        fuzzed.failures.append(f"{operation.label} ({kind}): {exc}")


def ingest_first(operation: Operation) -> tuple[int, str]:
    return (0 if operation.method.upper() == "POST" else 1, operation.label)


def test_no_request_is_a_5xx_and_every_read_answers_afterwards(tmp_path: Path) -> None:
    with fuzzed_app(tmp_path) as fuzzed:
        loaded = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)
        operations: list[Operation] = []
        for result in loaded.include(path_regex="^/api/v1/").get_all_operations():
            assert isinstance(result, Ok), result  # an operation it cannot read goes untested
            operations.append(result.ok())
        operations.sort(key=ingest_first)
        labels = {operation.label for operation in operations}
        assert {"POST /api/v1/calls", "POST /api/v1/scores", "GET /api/v1/summary"} <= labels
        for operation in operations:
            for kind, strategy in strategies(operation, fuzzed):
                fuzz(operation, kind, strategy, fuzzed)
        assert fuzzed.failures == [], "\n\n".join(fuzzed.failures)
        assert fuzzed.cases >= 2500
        assert fuzzed.runtime.recorder.flush(timeout_s=60)
        # Whatever was acknowledged is stored: no sink refused a value that passed the door.
        stats = fuzzed.runtime.recorder.stats
        assert (dict(stats.sink_errors), stats.internal_errors) == ({}, 0)
        with fuzzed.store.engine.connect() as connection:
            stored_ids = set(connection.execute(sa.select(schema_.calls.c.id)).scalars())
        assert len(fuzzed.ids) > 20
        assert stored_ids == set(fuzzed.ids)  # ids a client repeats are stored once
        every_read_answers(fuzzed)
    the_report_answers(fuzzed.path)


def every_read_answers(fuzzed: Fuzzed) -> None:
    client = TestClient(fuzzed.app)
    reads: dict[str, dict[str, str | int]] = {
        "/api/v1/summary": {},
        "/api/v1/breakdown": {"by": "model,feature,team,environment"},
        "/api/v1/timeseries": {"step": "day"},
        "/api/v1/calls": {"limit": 10_000},
        "/api/v1/histogram": {},
        "/api/v1/quality": {"step": "day"},
        "/api/v1/values": {},
        "/api/v1/alerts": {},
        "/api/v1/alerts/silences": {},
        "/api/v1/quality/groups": {"by": "model"},
        "/api/v1/compare": {"by": "model"},
        "/api/v1/drift": {"by": "model"},
        "/api/v1/cache": {},
    }
    for path, params in reads.items():
        windows: tuple[dict[str, str], ...] = ({}, {"since": "9500d"})
        for window in windows:
            reply = client.get(path, params={**params, **window})
            assert reply.status_code == 200, (path, window, reply.text[:500])
            json.loads(reply.content.decode("utf-8"))
    listed = client.get("/api/v1/calls", params={"since": "9500d", "limit": 10_000}).json()
    assert len(listed["calls"]) > 20
    for call_id in fuzzed.ids[:20]:
        reply = client.get(f"/api/v1/calls/{call_id}")
        assert reply.status_code == 200, (call_id, reply.text[:500])


def the_report_answers(path: Path) -> None:
    runner = CliRunner()
    invoke: Callable[..., Any] = runner.invoke
    for args in (
        ["report", "--db", str(path), "--since", "9500d", "--by", "model,feature,team"],
        ["report", "--db", str(path), "--since", "9500d", "--json"],
        ["report", "--db", str(path)],
    ):
        result = invoke(cli, args)
        assert result.exit_code == 0, (args, result.output[-2000:], result.exception)
    answer = json.loads(
        invoke(cli, ["report", "--db", str(path), "--since", "9500d", "--json"]).output
    )
    assert answer["summary"]["calls"] > 20
