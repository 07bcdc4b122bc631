"""Defence in depth: rows already stored with values the door now refuses never make a read fail.

Each bad row here is what an older version wrote, put into a real SQLite store with SQL (raw
call and rollup rows both, the rollup as that writer built it: its sums and a sketch holding the
value), bypassing `Call`'s validation, and the model rollups then filled from the rollups as the
upgrade to schema 9 fills them. Every read must then answer, leave the bad row out, and
count it in ``skipped_rows``, while the good call beside it is counted as before. The expected
figures are worked out here from the rows as written.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from aivitals.alerts import AlertEngine, parse_rules
from aivitals.alerts.rules import default_rules_text
from aivitals.cli import app as cli_app
from aivitals.query import Queries, Window
from aivitals.store import model_rollup, schema
from aivitals.store.rollup import rollup_rows
from aivitals.store.rows import call_row
from aivitals.store.sql import SqlStore
from tests.support.helpers import make_call
from tests.support.server_app import NOW, Served, get_ok, serve_app

# DDSketch's bins at 1% relative accuracy: value v falls in bin ceil(log(v) / log(gamma)).
GAMMA = (1 + 0.01) / (1 - 0.01)
GOOD_COST = Decimal("0.25")


def sketch_of(*values: float) -> bytes:
    """A stored sketch holding ``values``, in the store's format, built by hand as the old writer did."""
    keys = [math.ceil(math.log(v) / math.log(GAMMA)) for v in values]
    low, high = min(keys), max(keys)
    counts = [keys.count(k) for k in range(low, high + 1)]
    return struct.pack("<iI", low, 0) + struct.pack(f"<{len(counts)}I", *counts)


@dataclass(frozen=True)
class Bad:
    """A bad call: the columns an older version stored it with.

    ``summed``: its numbers are in range, so aggregates count it (only listings cannot show
    it). ``in_window``: it started within the last hour (else in a year no datetime holds).
    """

    name: str
    columns: dict[str, Any]
    summed: bool = False
    in_window: bool = True

    @property
    def calls(self) -> int:
        """Calls an aggregate counts: the good one, and the two bad ones if summed."""
        return 3 if self.summed else 1

    @property
    def skipped(self) -> int:
        """Rows an aggregate over the last hour leaves out."""
        return 2 if self.in_window and not self.summed else 0


BAD = [
    Bad("latency 1.8e308", {"latency_ms": 1.7976931348623157e308}),
    Bad("latency 1e16", {"latency_ms": 1e16}),
    Bad("tokens near 2^63", {"input_tokens": 2**63 - 1, "output_tokens": 2**62}),
    Bad("cost 1e300", {"cost_usd": "1e300", "cost_nusd": 2**63 - 1}),
    Bad("surrogate tag key", {"tags": '{"\\ud800":"x"}'}, summed=True),
    Bad("start in year 318,857", {"started_ms": 10**16}, in_window=False),
]


def poison(store: SqlStore, now: datetime, bad: Bad, *, copies: int = 2) -> list[str]:
    """A good call, and ``copies`` bad calls (two: their sums overflow together), 20 minutes
    before ``now``, written the way an older version wrote them. Returns the bad ids."""
    started = now - timedelta(minutes=20, seconds=30)
    good = make_call(id="good", started_at=started, cost_usd=GOOD_COST, user="ann", feature="x")
    store.write([good], [])
    ids = []
    with store.engine.begin() as connection:
        for i in range(copies):
            # A model of its own each, so each rollup row holds what one bad call stored.
            template = make_call(
                id=f"bad-{i}", model=f"old-{i}", started_at=started, user="bob", feature="x"
            )
            row = {**call_row(template), **bad.columns}
            connection.execute(schema.calls.insert(), [row])
            ids.append(template.id)
            for rolled in rollup_rows([template]):
                if "started_ms" in bad.columns:
                    seconds = bad.columns["started_ms"] // 1000
                    rolled["bucket_start"] = seconds - seconds % rolled["granularity"]
                for name in ("input_tokens", "output_tokens", "cost_nusd"):
                    if name in bad.columns:
                        rolled[name] = bad.columns[name]
                if "latency_ms" in bad.columns:
                    rolled["latency_sum_ms"] = bad.columns["latency_ms"]
                    rolled["latency_sketch"] = sketch_of(bad.columns["latency_ms"])
                connection.execute(schema.rollups.insert(), [rolled])
        # What the schema-9 upgrade makes of the rollups that older writer left.
        model_rollup.backfill(connection)
    return ids


@pytest.fixture(params=BAD, ids=[bad.name for bad in BAD])
def bad(request: pytest.FixtureRequest) -> Bad:
    param: Bad = request.param
    return param


@pytest.fixture
def target(store_target: str) -> str:
    """Where the store is: a SQLite file, or a fresh PostgreSQL database."""
    return store_target


@pytest.fixture
def served(target: str, bad: Bad) -> Iterator[tuple[Served, list[str]]]:
    store = SqlStore.open(target)
    ids = poison(store, NOW, bad)
    with serve_app(store) as served:
        yield served, ids


def test_summary_breakdown_and_series_leave_the_bad_rows_out_and_count_them(
    served: tuple[Served, list[str]], bad: Bad
) -> None:
    app, _ = served
    models = ["gpt-4o-mini", *(["old-0", "old-1"] if bad.summed else [])]
    for since in ("1h", "0001-01-01"):
        body = get_ok(app, "/api/v1/summary", since=since)
        summary = body["summary"]
        assert summary["calls"] == bad.calls
        assert summary["total_cost_usd"] == 0.25
        assert summary["latency_p99_ms"] == pytest.approx(250.0, rel=0.01)
        assert summary["input_tokens"] == 1000 * bad.calls
        assert summary["skipped_rows"] == body["skipped_rows"] == bad.skipped
    rows = get_ok(app, "/api/v1/breakdown", since="1h", by="model")
    assert [(r["group"]["model"], r["calls"]) for r in rows["rows"] if r["calls"]] == [
        (model, 1) for model in models
    ]
    assert rows["skipped_rows"] == bad.skipped
    for step, since in (("minute", "1h"), ("hour", "24h"), ("day", "2000-01-01")):
        series = get_ok(app, "/api/v1/timeseries", since=since, step=step)
        assert sum(p["calls"] for p in series["points"]) == bad.calls
        assert series["skipped_rows"] == bad.skipped


def test_reads_of_raw_calls_leave_the_bad_rows_out_and_count_them(
    served: tuple[Served, list[str]], bad: Bad
) -> None:
    # By user with a feature: no rollup keeps both (the user rollups keep user and model), so
    # these read the raw calls themselves.
    app, _ = served
    bob = bad.calls - 1
    body = get_ok(app, "/api/v1/breakdown", since="0001-01-01", by="user", where="feature=x")
    assert [(r["group"]["user"], r["calls"]) for r in body["rows"] if r["calls"]] == [
        ("ann", 1),
        *([("bob", bob)] if bob else []),
    ]
    assert body["skipped_rows"] == bad.skipped
    summary = get_ok(app, "/api/v1/summary", since="1h", where=["user=bob", "feature=x"])["summary"]
    assert (summary["calls"], summary["skipped_rows"]) == (bob, bad.skipped)
    # An answer leaves a row out for a value it reads: the histogram reads only latencies, the
    # list of values only that calls exist.
    histogram = get_ok(app, "/api/v1/histogram", since="1h")
    latency_bad = "latency_ms" in bad.columns
    in_window = 2 if bad.in_window else 0
    assert sum(s["calls"] for s in histogram["series"]) == 1 + (0 if latency_bad else in_window)
    assert histogram["skipped_rows"] == (in_window if latency_bad else 0)
    models = ["gpt-4o-mini", *(["old-0", "old-1"] if bad.in_window else [])]
    assert get_ok(app, "/api/v1/values", since="1h")["values"]["model"] == [
        {"value": model, "calls": 1} for model in models
    ]


def test_the_calls_listing_skips_and_counts_a_row_it_cannot_read(
    served: tuple[Served, list[str]], bad: Bad
) -> None:
    app, ids = served
    listed = 2 if bad.in_window else 0
    for since in ("1h", "0001-01-01"):
        body = get_ok(app, "/api/v1/calls", since=since)
        assert [c["call"]["id"] for c in body["calls"]] == ["good"]
        assert body["skipped_rows"] == listed
    reply = app.client.get(f"/api/v1/calls/{ids[0]}")
    assert reply.status_code == 404
    assert "cannot be read" in reply.json()["error"]
    assert get_ok(app, "/api/v1/calls/good")["call"]["id"] == "good"


def test_after_retention_the_rollups_alone_still_answer(target: str, bad: Bad) -> None:
    # The rollup sketch kept the value, so the minute stayed broken once the raw call was gone.
    store = SqlStore.open(target)
    poison(store, NOW, bad)
    store.delete_calls_before(NOW)
    queries = Queries(store.engine)
    window = Window(start=NOW - timedelta(hours=1), end=NOW)
    summary = queries.summary(window)
    assert (summary.calls, summary.skipped_rows) == (bad.calls, bad.skipped)
    assert summary.latency_p50_ms == pytest.approx(250.0, rel=0.01)
    assert queries.calls_page(window).calls == []
    store.close()


def test_aivitals_report_and_calls_answer(target: str, bad: Bad) -> None:
    path = target
    store = SqlStore.open(path)
    # The CLI reads up to the wall clock: place the rows before it.
    poison(store, datetime.now(UTC), bad)
    store.close()
    runner = CliRunner()
    result = runner.invoke(
        cli_app, ["report", "--db", str(path), "--since", "0001-01-01", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["summary"]["calls"] == bad.calls
    assert document["summary"]["skipped_rows"] == bad.skipped
    table = runner.invoke(cli_app, ["report", "--db", str(path), "--since", "0001-01-01"])
    assert table.exit_code == 0, table.output
    listing = runner.invoke(cli_app, ["calls", "--db", str(path), "--since", "2h", "--json"])
    assert listing.exit_code == 0, listing.output
    assert [c["call"]["id"] for c in json.loads(listing.stdout)] == ["good"]
    exported = runner.invoke(cli_app, ["export", "--db", str(path), "--since", "2h"])
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["id"] for line in exported.stdout.splitlines()] == ["good"]


def test_the_default_alert_rules_read_a_poisoned_store(target: str, bad: Bad) -> None:
    # latency_ms 1e16 once made the daily spend and token rules fail on every evaluation.
    store = SqlStore.open(target)
    poison(store, NOW, bad)
    engine = AlertEngine(
        parse_rules(default_rules_text()),
        queries=Queries(store.engine),
        notifiers={},
        clock=NOW.timestamp,
    )
    findings = {finding.rule.name: finding.value for finding in engine.check()}
    assert engine.rule_errors == {}
    spend = [f for f in engine.rules.rules if f.signal == "spend" and f.window == "today"]
    tokens = [f for f in engine.rules.rules if f.signal == "tokens"]
    assert spend and tokens
    for rule in spend:
        assert findings[rule.name] == 0.25
    for rule in tokens:
        assert findings[rule.name] == 1100 * bad.calls  # 1,000 in and 100 out each
    store.close()
