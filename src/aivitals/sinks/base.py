"""The two kinds of sink the recorder feeds.

An `InlineSink` runs on the caller's thread for every call, so it must be in-memory and take
microseconds (Prometheus counters, live windows). A `BatchSink` runs on the recorder's worker thread
with batches (store writes, log lines, exports): that is where I/O belongs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from aivitals.model import Call, Outcome, Score


@runtime_checkable
class InlineSink(Protocol):
    """Called on the caller's thread: in-memory work only, no I/O, no blocking."""

    name: str

    def on_call(self, call: Call) -> None: ...

    def on_score(self, score: Score) -> None: ...


@runtime_checkable
class InFlightObserver(Protocol):
    """An inline sink that also wants to know when a call starts and ends (requests in flight)."""

    def call_started(self, provider: str, model: str) -> None: ...

    def call_ended(self, provider: str, model: str) -> None: ...


@runtime_checkable
class Ticking(Protocol):
    """A sink with housekeeping (rolling windows over) that the worker runs about once a second."""

    def tick(self) -> None: ...


@runtime_checkable
class BatchSink(Protocol):
    """Called on the recorder's worker thread with batches. Raising is allowed: it is counted."""

    name: str

    def write_calls(self, calls: Sequence[Call]) -> None: ...

    def write_scores(self, scores: Sequence[Score]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class OutcomeSink(Protocol):
    """A batch sink that also keeps labelled outcomes (the store, the HTTP exporter)."""

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None: ...


@runtime_checkable
class WholeBatchSink(Protocol):
    """A batch sink that takes each batch the recorder drains whole, in one write.

    The store: a batch's calls, scores and outcomes in one transaction rather than one each.
    Behind a busy application every statement costs the writer a wait for the GIL, so the
    second transaction's fixed statements (begin, id checks, the score rollups, commit) were
    most of what let the gateway's store fall behind.
    """

    def write_batch(
        self, calls: Sequence[Call], scores: Sequence[Score], outcomes: Sequence[Outcome]
    ) -> None: ...


@runtime_checkable
class DurableSink(Protocol):
    """A batch sink that can also store a batch *now*, on the caller's thread (the store).

    ``commit`` returns only once the items are on disk, and raises otherwise; the recorder then
    leaves those items out of what it hands the sink later. This is what a 2xx from the ingest
    API waits for. It returns the calls newly stored (not those it had already, by id), and the
    recorder hands only those to the other sinks: a retried batch is counted once.
    """

    name: str

    def commit(
        self,
        calls: Sequence[Call],
        scores: Sequence[Score] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> Sequence[Call]: ...

    def health(self) -> str | None:
        """None while writes succeed; else why they fail (for ``/readyz``)."""
        ...


@runtime_checkable
class Accounted(Protocol):
    """A sink that holds items before they arrive, and can lose some: both are metrics."""

    name: str

    def buffered(self) -> Mapping[str, int]:
        """Items waiting, by buffer (``store_retry``, ``exporter_spool``, ...)."""
        ...

    def lost(self) -> Mapping[str, int]:
        """Items lost for good since start, by reason (``overflow``, ``refused``, ``shutdown``)."""
        ...
