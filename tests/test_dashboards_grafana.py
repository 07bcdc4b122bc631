"""The Grafana dashboard: its JSON model, the CLI that writes it, and every query against Prometheus.

The static tests read the exported JSON as Grafana would import it. The real-server tests post a
demo-like workload (several providers, models, features and teams; errors, streams, prompt-cache
reads, response-cache hits, an unpriced model, quality scores) to a served aivitals in two equal
phases, let a real Prometheus scrape it every second, and run every query of the dashboard with
its variables substituted, once with every filter on "All" and once with one value picked for
each. Each query must run and answer at least one finite value: a panel that would show
"No data" on this workload fails the test. Rates are evaluated at a scrape holding both phases,
over a window that starts before it at a scrape holding only the first, so every rate has two
samples and a non-zero increase, whatever the timing of scrapes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.dashboards import DEFAULT_TITLE, DEFAULT_UID, build_dashboard, export_dashboard
from aivitals.dashboards.promql import FILTERS, METRIC_LABELS
from aivitals.server import create_app
from tests.support.realservers import Prometheus, need
from tests.support.server_app import build_runtime
from tests.support.servers import serve_in_thread

ROWS = ["Cost overview", "Latency", "Token usage", "Quality", "Operational health"]
DOCS = Path(__file__).resolve().parent.parent / "docs"


def panels_by_row(dashboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] | None = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            assert current is not None, f"panel {panel['title']!r} comes before any row"
            current.append(panel)
    return rows


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.panel} [{self.ref}]"


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


DASHBOARD = build_dashboard()
QUERIES = dashboard_queries(DASHBOARD)


def test_export_is_the_json_of_the_dashboard() -> None:
    text = export_dashboard()
    assert text.endswith("}\n")
    assert json.loads(text) == DASHBOARD
    assert DASHBOARD["uid"] == DEFAULT_UID
    assert DASHBOARD["schemaVersion"] >= 39


def test_five_rows_in_the_designed_order_each_with_panels() -> None:
    rows = panels_by_row(DASHBOARD)
    assert list(rows) == ROWS
    for title, panels in rows.items():
        assert len(panels) >= 4, title


def test_every_panel_has_a_titled_prometheus_target_on_the_datasource_variable() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs) and all(refs), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_charts_not_only_numbers() -> None:
    kinds = {row: {p["type"] for p in panels} for row, panels in panels_by_row(DASHBOARD).items()}
    assert {"stat", "timeseries", "bargauge"} <= kinds["Cost overview"]
    assert {"timeseries", "heatmap"} <= kinds["Latency"]
    assert {"timeseries", "bargauge", "stat"} <= kinds["Token usage"]
    assert {"timeseries", "bargauge"} <= kinds["Quality"]
    assert {"timeseries", "state-timeline", "table"} <= kinds["Operational health"]
    [distribution] = [p for p in DASHBOARD["panels"] if p["type"] == "heatmap"]
    # Prometheus' buckets as they are: Grafana must not re-bucket them.
    assert distribution["options"]["calculate"] is False
    assert distribution["targets"][0]["format"] == "heatmap"
    [alerts] = [p for p in DASHBOARD["panels"] if p["title"] == "Active alerts"]
    assert "ALERTS" in alerts["targets"][0]["expr"]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in DASHBOARD["templating"]["list"]}


def test_datasource_and_filter_variables() -> None:
    found = variables()
    assert list(found) == ["datasource", *FILTERS]
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    for name in FILTERS:
        variable = found[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert re.fullmatch(rf"label_values\(aivitals_\w+(\{{.*\}})?, {name}\)", label_query(name))
        assert variable["multi"] and variable["includeAll"]
        assert variable["allValue"] == ".*"


def label_query(name: str) -> str:
    query: str = variables()[name]["query"]["query"]
    return query


def test_every_filter_is_used_and_only_on_metrics_with_that_label() -> None:
    used: set[str] = set()
    for query in QUERIES:
        for metric, body in re.findall(r"\b([a-z_]+)\{([^}]*)\}", query.expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if base not in METRIC_LABELS:
                base = metric
            for label in re.findall(r'(\w+)=~"\$(\w+)"', body):
                assert label[0] == label[1], query.id
                assert label[0] in METRIC_LABELS[base], f"{query.id}: {base} has no {label[0]}"
                used.add(label[0])
    assert used == set(FILTERS)


def test_every_metric_queried_is_documented() -> None:
    documented = "".join(
        (DOCS / name).read_text() for name in ("metrics.md", "server.md", "gateway.md")
    )
    for query in QUERIES:
        for metric in re.findall(r"\b((?:aivitals|process)_[a-z_]+)", query.expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert f"`{base}`" in documented or f"`{base}{{" in documented, (query.id, base)


runner = CliRunner()


def test_cli_prints_the_dashboard() -> None:
    result = runner.invoke(app, ["dashboards", "export", "--grafana"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == DASHBOARD


def test_cli_writes_the_dashboard_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "aivitals.json"
    result = runner.invoke(
        app,
        ["dashboards", "export", "--grafana", "-o", str(target), "--title", "LLM", "--uid", "x-1"],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote the Grafana dashboard to {target}" in result.stdout
    written = json.loads(target.read_text())
    assert (written["title"], written["uid"]) == ("LLM", "x-1")
    assert written["panels"] == DASHBOARD["panels"]


def test_cli_help_names_the_defaults() -> None:
    result = runner.invoke(app, ["dashboards", "export", "--help"])
    assert result.exit_code == 0
    # The help is wrapped in a box: compare the words, not the layout.
    words = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout).split())
    assert f"(default: {DEFAULT_TITLE})" in words
    assert f"(default: {DEFAULT_UID})" in words


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "say which dashboard to export: --grafana"),
        (["--grafana", "--uid", "has space"], "--uid must be 1 to 40 of"),
        (["--grafana", "--uid", "x" * 41], "--uid must be 1 to 40 of"),
        (["--grafana", "--title", "  "], "--title must not be blank"),
        (["--grafana", "-o", "/nonexistent-dir/aivitals.json"], "cannot write /nonexistent-dir"),
    ],
)
def test_cli_mistakes_get_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["dashboards", "export", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert result.stdout == ""


# The workload. Both phases post the same calls, so every series exists at the first phase's
# scrape and grows by the second: every rate over the window between them is non-zero.

MINI = {"provider": "openai", "model": "gpt-4.1-mini", "feature": "search", "team": "growth"}
SONNET = {
    "provider": "anthropic",
    "model": "claude-sonnet-4-5",
    "feature": "chat",
    "team": "support",
}
PICKED = MINI
"""The values picked for each filter in the filtered run: the call mix with every kind of event.

Its model has a dot, a regex metacharacter, as many real model names do.
"""


def mini(latency_ms: float, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        **MINI,
        "latency_ms": latency_ms,
        "input_tokens": 1200,
        "cached_input_tokens": 1024,
        "output_tokens": 80,
        "cost_usd": "0.00021",
        "context_window": 128_000,
    }
    return body | extra


def sonnet(latency_ms: float, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        **SONNET,
        "latency_ms": latency_ms,
        "input_tokens": 3000,
        "output_tokens": 600,
        "cost_usd": "0.0183",
        "context_window": 200_000,
    }
    return body | extra


PHASE = [
    *(mini(200 + 40 * i) for i in range(8)),
    *(mini(300 + 50 * i, ttft_ms=90 + 10 * i) for i in range(4)),
    mini(15, cache="hit", cache_level="exact", cost_usd="0", saved_usd="0.00021"),
    mini(420, cache="miss", cache_level="exact"),
    mini(150, status="error", error_type="rate_limit", output_tokens=0, cost_usd="0"),
    mini(30_000, status="error", error_type="timeout", output_tokens=0, cost_usd="0"),
    *(sonnet(2400 + 100 * i, ttft_ms=400 + 20 * i) for i in range(6)),
    sonnet(900, status="error", error_type="provider_down", output_tokens=0, cost_usd="0"),
    # No feature or team, and a model with no known price: its cost is null, never guessed.
    {"provider": "openai", "model": "in-house-finetune-x", "latency_ms": 700, "output_tokens": 40},
]
SCORES = [("helpfulness", 0.9), ("helpfulness", 0.6), ("faithfulness", 0.8)]
VERDICTS = ("refusal", "pii_leak", "json_valid")
"""The evaluators' scores each scored call also gets (source evaluator, 0 or 1, `verdict`)."""


def verdict(name: str, index: int) -> float:
    """Every third call refused (of each model), the first one leaking, all JSON valid."""
    if name == "refusal":
        return float(index % 3 == 0)
    if name == "pii_leak":
        return float(index == 0)
    return 1.0


ALWAYS_FIRING = {
    "groups": [
        {
            "name": "dashboard-test",
            "rules": [
                {
                    "alert": "DashboardTestAlwaysFiring",
                    "expr": "vector(1)",
                    "labels": {"severity": "info"},
                    "annotations": {"summary": "fires so that the active-alerts panel has a row"},
                }
            ],
        }
    ]
}


@dataclass
class Scraped:
    prometheus: Prometheus
    at_s: float  # a scrape holding both phases: every query is evaluated here


def post_phase(client: httpx.Client, origin: str) -> None:
    reply = client.post(f"{origin}/api/v1/calls", json={"calls": PHASE})
    assert reply.status_code == 202, reply.text
    ids = reply.json()["ids"]
    scored = [call for call in zip(ids, PHASE, strict=True) if call[1].get("feature")]
    scores = [
        {
            "call_id": call_id,
            "name": name,
            "value": value,
            "model": body["model"],
            "feature": body["feature"],
        }
        for call_id, body in scored
        for name, value in SCORES
    ] + [
        {
            "call_id": call_id,
            "name": name,
            "value": verdict(name, index),
            "source": "evaluator",
            "model": body["model"],
            "feature": body["feature"],
        }
        for index, (call_id, body) in enumerate(scored)
        for name in VERDICTS
    ]
    reply = client.post(f"{origin}/api/v1/scores", json={"scores": scores})
    assert reply.status_code == 202, reply.text


def scrape_holding(prometheus: Prometheus, calls: int) -> float:
    """The time (s) of a scrape whose request counters add up to ``calls``."""
    prometheus.wait_for(
        "sum(aivitals_requests_total)", lambda s: len(s) == 1 and s[0].value == calls
    )
    # Scores travel apart from calls: wait for them too before taking the scrape's time.
    prometheus.wait_for(
        "sum(aivitals_quality_score_count)",
        lambda s: len(s) == 1 and s[0].value == calls // len(PHASE) * score_count(),
    )
    [latest] = prometheus.query("max(timestamp(aivitals_quality_score_count))")
    return latest.value


def score_count() -> int:
    return sum(1 for body in PHASE if body.get("feature")) * (len(SCORES) + len(VERDICTS))


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    binary = need("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    rules = workdir / "always-firing.yml"
    rules.write_text(json.dumps(ALWAYS_FIRING))  # JSON is YAML
    runtime = build_runtime(None)
    app_ = create_app(runtime=runtime, store=None, registry=CollectorRegistry())
    try:
        with (
            serve_in_thread(app_) as origin,
            Prometheus(
                binary, workdir, targets=[origin.removeprefix("http://")], rule_files=[rules]
            ) as prometheus,
            httpx.Client(timeout=30) as client,
        ):
            prometheus.wait_until_scraped()
            prometheus.wait_for('ALERTS{alertstate="firing"}', bool)
            post_phase(client, origin)
            first = scrape_holding(prometheus, len(PHASE))
            post_phase(client, origin)
            second = scrape_holding(prometheus, 2 * len(PHASE))
            assert 0 < second - first < 60, "both scrapes must fall in one 1m rate window"
            yield Scraped(prometheus, second)
    finally:
        runtime.recorder.close()


def substitute(expr: str, values: dict[str, str]) -> str:
    """What Grafana sends: variables replaced; the range is longer than the whole test."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
    for name in FILTERS:
        value = values[name]
        expr = expr.replace(f"${name}", value if value == ".*" else grafana_escape(value))
    assert "$" not in expr, expr
    return expr


def grafana_escape(value: str) -> str:
    """How Grafana's Prometheus data source puts a picked value into a ``=~"..."`` matcher.

    A regex metacharacter gets a backslash, itself escaped inside the PromQL string.
    """
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\\\\\"))


ALL = dict.fromkeys(FILTERS, ".*")


def test_grafana_escape_matches_only_the_value() -> None:
    escaped = grafana_escape("gpt-4.1-mini")
    assert escaped == "gpt-4\\\\.1-mini"
    pattern = json.loads(f'"{escaped}"')  # PromQL reads the string as JSON does here
    assert re.fullmatch(pattern, "gpt-4.1-mini")
    assert not re.fullmatch(pattern, "gpt-4x1-mini")


@pytest.mark.slow
@pytest.mark.parametrize("values", [ALL, PICKED], ids=["all", "picked"])
@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_every_query_answers_on_a_real_prometheus(
    scraped: Scraped, query: Query, values: dict[str, str]
) -> None:
    samples = scraped.prometheus.query(substitute(query.expr, values), at=scraped.at_s)
    assert samples, f"{query.id} answers nothing: {query.expr}"
    finite = [s for s in samples if math.isfinite(s.value)]
    assert finite, f"{query.id} answers no finite value: {samples}"


@pytest.mark.slow
def test_a_picked_filter_narrows_the_answer(scraped: Scraped) -> None:
    [spend] = [q for q in QUERIES if q.panel == "Spend by model"]
    everything = scraped.prometheus.query(substitute(spend.expr, ALL), at=scraped.at_s)
    picked = scraped.prometheus.query(substitute(spend.expr, PICKED), at=scraped.at_s)
    assert {s.labels["model"] for s in everything} == {MINI["model"], SONNET["model"]}
    assert {s.labels["model"] for s in picked} == {MINI["model"]}


@pytest.mark.slow
def test_active_alerts_panel_lists_the_firing_rule(scraped: Scraped) -> None:
    [alerts] = [q for q in QUERIES if q.panel == "Active alerts"]
    samples = scraped.prometheus.query(substitute(alerts.expr, ALL), at=scraped.at_s)
    assert {(s.labels["alertname"], s.labels["alertstate"]) for s in samples} == {
        ("DashboardTestAlwaysFiring", "firing")
    }


EXPECTED_VALUES = {
    "provider": {"openai", "anthropic"},
    "model": {MINI["model"], SONNET["model"], "in-house-finetune-x"},
    "feature": {MINI["feature"], SONNET["feature"]},
    "team": {MINI["team"], SONNET["team"]},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_variable_lists_the_workloads_values(scraped: Scraped, name: str) -> None:
    # label_values(metric{matchers}, label) is, in Grafana's Prometheus data source, the label's
    # values among the series that match: the same API call here.
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", label_query(name))
    assert match is not None
    series = substitute(match[1], ALL)
    values = scraped.prometheus.api(f"label/{match[2]}/values", **{"match[]": series})
    assert set(values) == EXPECTED_VALUES[name]


FALLBACK = " or vector(0)"
"""Where a series only appears with its first event, a panel shows 0 rather than "No data"."""

EMPTY_WITHOUT_FALLBACK = {
    "In flight [A]": "calls posted to the ingest API have finished: only the SDK and the gateway "
    "count calls in flight",
    "Dropped records and sink errors per second [C]": "no sink fails in this test",
    "Guardrail actions per second [A]": "calls posted to the ingest API pass no guardrail: only "
    "the gateway counts guardrail actions",
}
"""The queries whose fallback to 0 is what this workload shows, and why."""

WITH_FALLBACK = [q for q in QUERIES if FALLBACK in q.expr]


def test_the_fallback_list_names_real_queries() -> None:
    assert set(EMPTY_WITHOUT_FALLBACK) <= {q.id for q in WITH_FALLBACK}


@pytest.mark.slow
@pytest.mark.parametrize("query", WITH_FALLBACK, ids=[q.id for q in WITH_FALLBACK])
def test_queries_with_a_fallback_answer_without_it(scraped: Scraped, query: Query) -> None:
    # A query with `or vector(0)` always answers; without it, this shows the workload reached it.
    bare = substitute(query.expr.replace(FALLBACK, ""), ALL)
    samples = scraped.prometheus.query(bare, at=scraped.at_s)
    if query.id in EMPTY_WITHOUT_FALLBACK:
        assert samples == [], f"{query.id} now answers: drop it from EMPTY_WITHOUT_FALLBACK"
    else:
        assert [s.value > 0 for s in samples] == [True], (query.id, samples)
