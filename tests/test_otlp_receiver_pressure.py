"""Back-pressure on the OTLP receiver: 503 while the store cannot be written, 429 while the
recorder is behind, each with ``Retry-After``; nothing of a refused export is recorded, and the
real exporter, retrying as told, delivers it once the store is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExportResult
from prometheus_client import CollectorRegistry

from aivitals.attribution import Attribution
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.sinks.store import StoreSink
from aivitals.store.sql import SqlStore

from .support.servers import serve_in_thread
from .test_durable_ingest import stored_ids
from .test_otlp_receiver import PROTOBUF, export, finished_spans, model_attributes
from .test_store_sink import FlakyStore

REFUSED = "aivitals_ingest_refused_items_total"


class Served:
    """A real uvicorn server over a store that fails its next ``failures`` writes."""

    def __init__(self, tmp_path: Path, *, failures: int = 0, queue_limit: int | None = None):
        self.store = FlakyStore(SqlStore.open(tmp_path / "aivitals.db"), failures=failures)
        self.prometheus = PrometheusSink()
        self.registry = CollectorRegistry()
        self.recorder = Recorder(
            inline_sinks=[self.prometheus],
            batch_sinks=[StoreSink(self.store, backoff_s=1.0)],
            flush_interval_s=0.05,
        )
        runtime = Runtime(
            recorder=self.recorder,
            prometheus=self.prometheus,
            windows=None,
            defaults=Attribution(),
        )
        self.app = create_app(
            runtime=runtime, store=self.store.inner, registry=self.registry, queue_limit=queue_limit
        )

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def requests(self) -> float:
        return sum(
            sample.value
            for family in self.prometheus.registry.collect()
            for sample in family.samples
            if sample.name == "aivitals_requests_total"
        )


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[Served, str]]:
    served = Served(tmp_path, failures=1)
    try:
        with serve_in_thread(served.app) as url:
            yield served, url
    finally:
        served.recorder.close()


def test_a_store_outage_is_a_503_with_retry_after_and_the_exporter_delivers_later(
    outage: tuple[Served, str],
) -> None:
    served, url = outage
    spans = finished_spans(model_attributes(), model_attributes(), plain=1)
    body = encode_spans(spans).SerializeToString()
    reply = httpx.post(url + "/v1/traces", content=body, headers=PROTOBUF, timeout=10)
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) >= 1
    assert "retry this export" in status_pb2.Status.FromString(reply.content).message
    assert stored_ids(served.store.engine) == []
    assert served.requests() == 0  # nothing of a refused export reached any sink
    assert served.metric(REFUSED, kind="spans", reason="unavailable") == len(spans)
    # The exporter is told to wait, waits, sends again: stored once, counted once.
    assert export(spans, endpoint=url + "/v1/traces", timeout=20) == SpanExportResult.SUCCESS
    assert len(stored_ids(served.store.engine)) == 2
    assert served.requests() == 2


def test_a_recorder_behind_its_store_is_a_429_with_retry_after(tmp_path: Path) -> None:
    served = Served(tmp_path, queue_limit=0)
    spans = finished_spans(model_attributes())
    try:
        with serve_in_thread(served.app) as url:
            reply = httpx.post(
                url + "/v1/traces",
                content=encode_spans(spans).SerializeToString(),
                headers=PROTOBUF,
                timeout=10,
            )
    finally:
        served.recorder.close()
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "1"
    assert stored_ids(served.store.engine) == []
    assert served.metric(REFUSED, kind="spans", reason="busy") == len(spans)
