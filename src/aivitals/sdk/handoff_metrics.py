"""`HandOffCollector`: the SDK hand-off's back-pressure count, read at scrape time.

Registered on the runtime's Prometheus registry by `aivitals.configure`: the hand-off pays
nothing for it (the collector reads `HandOff.synchronous` when scraped). The name is declared
in `aivitals.metric_schema` (``SDK_SYNCHRONOUS_RECORDS``).

>>> from prometheus_client import CollectorRegistry
>>> from aivitals.sdk.handoff import HandOff
>>> registry = CollectorRegistry()
>>> registry.register(HandOffCollector(HandOff()))
>>> registry.get_sample_value("aivitals_sdk_synchronous_records_total")
0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from aivitals import metric_schema as schema
from aivitals.sdk.handoff import HandOff


class HandOffCollector(Collector):
    """``aivitals_sdk_synchronous_records_total`` from ``handoff``."""

    def __init__(self, handoff: HandOff) -> None:
        self._handoff = handoff

    def collect(self) -> Iterator[Metric]:
        spec = schema.SDK_SYNCHRONOUS_RECORDS
        yield CounterMetricFamily(spec.name, spec.help, value=self._handoff.synchronous)
