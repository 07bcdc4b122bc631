"""Builders for the server tests: an app over a fresh runtime and SQLite store, and a fixed clock.

No test here; the server test modules import from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from aivitals.query import Queries, parse_since
from aivitals.query.calls import CallWithScores
from aivitals.sdk import runtime
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.store.sql import SqlStore

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def build_runtime(store: SqlStore | None) -> Runtime:
    """What `aivitals.configure` builds, minus the process-wide handle: nothing global."""
    return runtime.build_runtime(
        store=store if store is not None else False,
        endpoint=False,
        log_to=None,
        flush_interval_s=0.05,
    )


@dataclass
class Served:
    client: TestClient
    runtime: Runtime
    store: SqlStore | None
    registry: CollectorRegistry

    def stored(self, since: str = "7d") -> list[CallWithScores]:
        """Every stored call of the window before `NOW`, once the recorder has delivered."""
        assert self.runtime.recorder.flush(timeout_s=10)
        assert self.store is not None
        window = parse_since(since, now=NOW)
        return Queries(self.store.engine).calls(window, limit=10_000)


@contextmanager
def serve_app(store: SqlStore | None, **options: Any) -> Iterator[Served]:
    """An app over ``store`` (closed afterwards) with a fresh runtime, its clock at `NOW`."""
    runtime = build_runtime(store)
    registry = CollectorRegistry()
    app = create_app(runtime=runtime, store=store, registry=registry, now=lambda: NOW, **options)
    try:
        yield Served(TestClient(app), runtime, store, registry)
    finally:
        runtime.recorder.close()
        if store is not None:
            store.close()


@contextmanager
def served_at(path: Path) -> Iterator[Served]:
    """An app over a fresh SQLite store at ``path``, its clock at `NOW`."""
    with serve_app(SqlStore.open(path)) as served:
        yield served


def call_json(**overrides: Any) -> dict[str, Any]:
    """A call as JSON, started 10 minutes before `NOW`."""
    body: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "latency_ms": 250.0,
        "input_tokens": 1000,
        "output_tokens": 100,
        "started_at": "2026-11-03T11:50:00+00:00",
    }
    body.update(overrides)
    return body


@contextmanager
def served_with(
    path: Path, calls: list[dict[str, Any]], scores: Sequence[dict[str, Any]] = ()
) -> Iterator[Served]:
    """`served_at` with ``calls`` and ``scores`` posted through the ingest API and stored."""
    with served_at(path) as served:
        assert served.client.post("/api/v1/calls", json={"calls": calls}).status_code == 202
        if scores:
            assert (
                served.client.post("/api/v1/scores", json={"scores": list(scores)}).status_code
                == 202
            )
        assert served.runtime.recorder.flush(timeout_s=10)
        yield served


def get_ok(served: Served, path: str, **params: Any) -> dict[str, Any]:
    """The JSON body of a GET that must answer 200."""
    reply = served.client.get(path, params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body
