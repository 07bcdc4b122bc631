from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
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

# The openai and anthropic clients each test builds, held until it ends and then closed if it left
# them open. An unclosed client's pooled socket is otherwise closed only when the garbage collector
# reaches it, often inside a reference cycle whose finalizers run in no set order, so the socket's
# ResourceWarning (an error here) fell on whichever later test happened to trigger a collection: CI
# failed in tests/test_layout.py for a socket an instrument test had opened. Held strongly, so that
# a collection between the test's end and its teardown cannot reach them first. Clients built by
# module fixtures are not held: those fixtures close their own.
_held: list[list[Any]] = []  # the running test's clients (empty between tests)


def _remember_clients(cls: type[Any]) -> None:
    built = cls.__init__

    @functools.wraps(built)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        if _held:
            _held[-1].append(self)

    cls.__init__ = __init__


for _client_class in (openai.OpenAI, anthropic.Anthropic):
    _remember_clients(_client_class)


@pytest.fixture(autouse=True)
def _close_the_clients_a_test_left_open() -> Iterator[None]:
    made: list[Any] = []
    _held.append(made)
    yield
    _held.remove(made)
    for client in made:
        if not client.is_closed():
            client.close()


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
