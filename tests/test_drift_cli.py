"""``aivitals drift`` and ``aivitals baseline pin|list|delete`` over a store written just now."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.store.sql import SqlStore
from tests.support.drift_history import Change, history

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("drift-cli") / "calls.db")
    store = SqlStore.open(path)
    now = datetime.now(UTC)
    try:
        # The command reads the hour before the real now, a moment later: m-a slowed then.
        step = Change(now - timedelta(hours=1), model="m-a", latency_factor=1.5)
        history(store, now=now, days=3, seed=31, changes=(step,))
    finally:
        store.close()
    yield path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _json(*args: str) -> dict[str, Any]:
    code, output = invoke("drift", *args, "--json")
    assert code == 0, output
    document: dict[str, Any] = json.loads(output)
    return document


def test_json_lists_every_signal_per_group_with_the_slowed_model_drifted(db: str) -> None:
    found = _json("--db", db, "--baseline", "2d", "--by", "model")["drift"]
    assert found["baseline"] == "trailing 2d, same hours"
    assert len(found["baseline_windows"]) == 2
    signals = {r["signal"] for r in found["results"]}
    assert {"latency_ms", "ttft_ms", "output_tokens", "cost_usd", "error_rate"} <= signals
    assert {"refusal_rate", "pii_leak_rate"} <= signals
    verdicts = {(r["group"]["model"], r["signal"]): r["verdict"] for r in found["results"]}
    assert verdicts[("m-a", "latency_ms")] == "significant"
    assert verdicts[("m-b", "latency_ms")] == "stable"


def test_the_table_shows_baseline_current_statistic_and_verdict(db: str) -> None:
    code, output = invoke("drift", "--db", db, "--baseline", "2d", "--by", "model")
    assert code == 0, output
    assert "against trailing 2d" in output
    assert "PSI" in output and "significant" in output and "stable" in output
    assert "latency ms p50" in output  # the one-line summary of what drifted


def test_pin_list_use_and_delete_a_baseline(db: str) -> None:
    code, output = invoke(
        "baseline", "pin", "--db", db, "--name", "before-upgrade", "--since", "3d", "--until", "2d"
    )
    assert code == 0, output
    code, output = invoke("baseline", "list", "--db", db, "--json")
    assert code == 0, output
    (pinned,) = json.loads(output)["baselines"]
    assert pinned["name"] == "before-upgrade"
    since, until = (datetime.fromisoformat(pinned[k]) for k in ("since", "until"))
    assert until - since == timedelta(days=1)
    found = _json("--db", db, "--pinned", "before-upgrade", "--signal", "latency_ms")["drift"]
    assert found["baseline"] == "pinned before-upgrade"
    assert [datetime.fromisoformat(w["start"]) for w in found["baseline_windows"]] == [since]
    assert invoke("baseline", "delete", "--db", db, "before-upgrade")[0] == 0
    code, output = invoke("baseline", "delete", "--db", db, "before-upgrade")
    assert code == 2 and "no pinned baseline 'before-upgrade'" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("drift", "--window", "soon"), "--window: cannot read 'soon'"),
        (("drift", "--pinned", "nope"), "--pinned: no pinned baseline 'nope'"),
        (("drift", "--signal", "colour"), "--signal: unknown signal 'colour'"),
        (("drift", "--baseline", "week"), "--baseline: cannot read 'week'"),
        (("baseline", "pin", "--name", "a b", "--since", "2d"), "cannot use 'a b'"),
        (("baseline", "pin", "--name", "x", "--since", "1d", "--until", "2d"), "after its --since"),
    ],
)
def test_bad_options_are_one_line_errors(db: str, args: tuple[str, ...], message: str) -> None:
    code, output = invoke(*args, "--db", db)
    assert code == 2, output
    assert message in output
