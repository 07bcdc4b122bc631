from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import aivitals
from aivitals.sdk.runtime import Runtime, reset
from aivitals.sinks.memory import MemorySink

# Registered for every test module: a real PostgreSQL per session, a fresh database per test.
from .support.postgres import (  # noqa: F401
    module_store_targets,
    postgresql_db_url,
    postgresql_server,
    postgresql_url,
    store_target,
    store_targets,
)

# A real redis-server per session, flushed per test (shared state: tests/test_shared_*.py).
from .support.redis_server import redis_db, redis_server, redis_url  # noqa: F401


@dataclass
class Recorded:
    runtime: Runtime
    memory: MemorySink

    def calls(self) -> list[aivitals.Call]:
        assert self.runtime.recorder.flush(timeout_s=10)
        return list(self.memory.calls)

    def scores(self) -> list[aivitals.Score]:
        assert self.runtime.recorder.flush(timeout_s=10)
        return list(self.memory.scores)

    def metric(self, name: str, labels: dict[str, str]) -> float | None:
        assert self.runtime.prometheus is not None
        return self.runtime.prometheus.registry.get_sample_value(name, labels)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """A freshly configured process runtime whose batch output lands in memory."""
    memory = MemorySink()
    runtime = aivitals.configure(sinks=[memory], flush_interval_s=0.05)
    yield Recorded(runtime=runtime, memory=memory)
    reset()
