"""The metric schema against what is scraped, what is documented, and what is queried.

`aivitals.metric_schema` declares every metric once. These tests hold the other places to it:
what one scrape of a server carries (sink, recorder health, gateway, server, process), what
docs/metrics.md documents, and what the Grafana dashboard and the Prometheus rule export query.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from aivitals.alerts import default_rules_text, export_prometheus, parse_rules
from aivitals.dashboards import build_dashboard
from aivitals.gateway.metrics import GatewayMetrics
from aivitals.metric_schema import BY_NAME, METRICS, MetricSpec
from aivitals.model import Call, Score
from aivitals.quality.judge import JudgeStats
from aivitals.quality.judge_budget import DailySpend
from aivitals.quality.judge_metrics import JudgeCollector
from aivitals.recorder import Recorder
from aivitals.sdk.handoff import HandOff
from aivitals.sdk.handoff_metrics import HandOffCollector
from aivitals.server.metrics import ServerMetrics
from aivitals.server.system_metrics import SystemMetrics
from aivitals.shared.metrics import SharedMetrics
from aivitals.sinks.prometheus import PrometheusSink

from .support.fake_gpu import L4, FakeGpus
from .support.helpers import make_call

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "metrics.md"
SCHEMA_FILE = ROOT / "src" / "aivitals" / "metric_schema.py"


def test_the_schema_module_imports_no_prometheus_client_nor_web_framework() -> None:
    # Loaded as a lone file, without the aivitals package (whose SDK needs prometheus_client).
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('metric_schema', {str(SCHEMA_FILE)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['metric_schema'] = module\n"
        "spec.loader.exec_module(module)\n"
        "heavy = ('prometheus_client', 'starlette', 'fastapi', 'sqlalchemy', 'aivitals')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "print(len(module.METRICS))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    imported, count = done.stdout.splitlines()
    assert imported == "[]"
    assert int(count) == len(METRICS)


def test_names_are_unique_and_follow_the_conventions() -> None:
    assert len(BY_NAME) == len(METRICS)
    for spec in METRICS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.name), spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert bool(spec.buckets) == (spec.kind == "histogram"), spec.name
        assert list(spec.buckets) == sorted(set(spec.buckets)), spec.name
        assert set(spec.values) <= set(spec.labels), spec.name
        assert spec.help.strip(), spec.name
        assert spec.external == (not spec.name.startswith("aivitals_")), spec.name


class FailingSink:
    """A batch sink that refuses every batch: the recorder counts its failures."""

    name = "failing"

    def write_calls(self, calls: Sequence[Call]) -> None:
        raise OSError("refused")

    def write_scores(self, scores: Sequence[Score]) -> None:
        raise OSError("refused")

    def close(self) -> None:
        pass


def scrape() -> list[Metric]:
    """One scrape of everything a server exposes, each part having seen one of everything."""
    sink = PrometheusSink(registry=CollectorRegistry(auto_describe=True))
    recorder = Recorder(inline_sinks=[sink], batch_sinks=[FailingSink()], flush_interval_s=0.05)
    sink.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
    recorder.record(
        make_call(
            ttft_ms=100.0,
            input_tokens=2000,
            cached_input_tokens=500,
            output_tokens=200,
            reasoning_tokens=50,
            cost_usd=Decimal("0.01"),
            saved_usd=Decimal("0.01"),
            cache="hit",
            cache_level="exact",
            context_window=128_000,
            quantization="q4_K_M",
        )
    )
    recorder.record(make_call(model="unpriced-model-x"))
    recorder.record_score(Score(call_id="c", name="helpfulness", value=0.5, model="gpt-4o-mini"))
    for verdict in (0.0, 1.0):
        recorder.record_score(
            Score(call_id="c", name="refusal", value=verdict, source="evaluator", model="m")
        )
    recorder.call_started("openai", "gpt-4o-mini")
    gateway = GatewayMetrics(CollectorRegistry(auto_describe=True))
    gateway.refused("auth")
    for streamed in (False, True):
        gateway.spent("/v1/chat/completions", streamed, 0.0005)
    gateway.watch_guardrails(
        ("cards", on, action)
        for on in ("input", "output")
        for action in ("redact", "block", "flag")
    )
    server = ServerMetrics(registry=CollectorRegistry())
    server.expose(sink.registry)
    server.expose(gateway.registry)
    server.expose(SystemMetrics(gpu=FakeGpus([L4])).registry)
    server.expose(SharedMetrics().registry)
    server.observe(method="GET", route="/healthz", status=200, seconds=0.01)
    server.in_flight.inc()
    judge_stats = JudgeStats()
    judge_stats.count("judged")
    budget = DailySpend(Decimal("1"))
    sink.registry.register(JudgeCollector(judge_stats, budget, lambda: 0))
    sink.registry.register(HandOffCollector(HandOff()))  # as `aivitals.configure` does
    assert recorder.flush(timeout_s=10)
    try:
        return list(server.registry.collect())
    finally:
        recorder.close()


def label_names(family: Metric) -> set[str]:
    return {
        name
        for sample in family.samples
        if not sample.name.endswith("_created")
        for name in sample.labels
        if name != "le"
    }


def bucket_bounds(family: Metric) -> list[float]:
    return sorted(
        {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
        - {float("inf")}
    )


@pytest.fixture(scope="module")
def scraped() -> dict[str, Metric]:
    families = scrape()
    by_name = {family.name: family for family in families}
    assert len(by_name) == len(families), "a family twice in one scrape"
    return by_name


def test_one_scrape_carries_exactly_the_schema(scraped: dict[str, Metric]) -> None:
    assert sorted(scraped) == sorted(spec.family for spec in METRICS)


@pytest.mark.parametrize("spec", METRICS, ids=[spec.name for spec in METRICS])
def test_each_scraped_family_is_as_declared(spec: MetricSpec, scraped: dict[str, Metric]) -> None:
    family = scraped[spec.family]
    assert family.type == spec.kind
    assert family.documentation == spec.help
    assert label_names(family) == set(spec.labels)
    assert bucket_bounds(family) == list(spec.buckets)
    for label, values in spec.values.items():
        seen = {s.labels[label] for s in family.samples if label in s.labels}
        assert seen == set(values), (spec.name, label)


def documented_rows() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every row of docs/metrics.md's metric tables: name -> (type, labels)."""
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    in_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("| metric | type | labels |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        if not in_table or line.startswith("| ---"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is documented twice"
        labels = tuple(label.strip() for label in cells[2].split(",") if label.strip())
        rows[name] = (cells[1], labels)
    return rows


def test_the_doc_documents_every_metric_with_its_type_and_labels() -> None:
    rows = documented_rows()
    assert set(rows) == set(BY_NAME)
    for name, (kind, labels) in rows.items():
        spec = BY_NAME[name]
        assert kind == spec.kind, name
        assert labels == spec.labels, name


def named_metrics(text: str) -> set[str]:
    """The metric names written in ``text``, a histogram's series named by its family."""
    found = set()
    for name in re.findall(r"(?<![\w.])((?:aivitals|process|python)_[a-z0-9_]*[a-z0-9])", text):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        found.add(base if BY_NAME.get(base, _NONE).kind == "histogram" else name)
    return found


_NONE = MetricSpec("none", "gauge", "none")


def test_the_doc_names_no_metric_the_schema_lacks() -> None:
    text = DOC.read_text()
    # `metric` label values that are not exported families (docs/metrics.md says so).
    for unexported in ("live_windows_quality", "live_windows"):
        text = text.replace(f"`{unexported}`", "")
    assert named_metrics(text) - set(BY_NAME) == set()


def test_the_token_change_is_documented() -> None:
    text = DOC.read_text()
    changed = text[text.index("## Changed") :]
    for old in ("cached_input", "cache_write", "reasoning"):
        assert f'type="{old}"' in changed, old


def queries_of_the_dashboard() -> list[str]:
    return [
        target["expr"]
        for panel in build_dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def queries_of_the_default_rules() -> list[str]:
    exported = export_prometheus(parse_rules(default_rules_text()))
    return [rule["expr"] for rule in exported.rules]


SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|ignoring|without)\s*\(([^)]*)\)")


@pytest.mark.parametrize(
    "queries",
    [queries_of_the_dashboard(), queries_of_the_default_rules()],
    ids=["grafana", "rules"],
)
def test_exports_query_schema_metrics_with_their_labels_and_values(queries: list[str]) -> None:
    assert queries
    for expr in queries:
        metrics = named_metrics(expr) - {"ALERTS"}
        assert metrics <= set(BY_NAME), expr
        labels_of_query: set[str] = {"le", "score", "alertname", "alertstate", "severity"}
        for name in metrics:
            labels_of_query |= set(BY_NAME[name].labels)
        for metric, body in SELECTOR.findall(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            spec = BY_NAME.get(base) or BY_NAME.get(metric)
            if spec is None:
                continue  # ALERTS
            for label, op, value in re.findall(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"', body):
                allowed = {*spec.labels, "le"} if spec.kind == "histogram" else set(spec.labels)
                assert label in allowed, f"{spec.name} has no {label}: {expr}"
                closed = spec.values.get(label)
                if closed and op == "=":
                    assert value in closed, f"{spec.name}{{{label}}} is never {value!r}: {expr}"
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in grouping.split(","))):
                assert label in labels_of_query, f"no metric of {expr} has {label}"
