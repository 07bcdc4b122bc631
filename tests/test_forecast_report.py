"""`aivitals report` ends with the month-end spend forecast: the month's spend so far plus every
hour left at the mean spend of its hour of day over the complete days before (worked out here)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.model import Call
from aivitals.store.sql import SqlStore

runner = CliRunner()


def test_report_shows_the_month_end_forecast(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(4)
    calls = []
    start = today - timedelta(days=10)
    moment = start
    while moment < now - timedelta(minutes=2):
        calls.append(
            Call(
                provider="openai",
                model="gpt-a",
                started_at=moment,
                latency_ms=100.0,
                cost_usd=Decimal(str(round(float(rng.uniform(0.01, 0.05)) * (1 + moment.hour), 6))),
            )
        )
        moment += timedelta(minutes=float(rng.uniform(5, 25)))
    path = str(tmp_path / "calls.db")
    store = SqlStore.open(path)
    store.write(calls, [])
    store.close()

    result = runner.invoke(app, ["report", "--db", path, "--since", "24h"])
    assert result.exit_code == 0, result.output
    # The terminal wraps the line: read the output as one run of words.
    line = " ".join(result.output.split())
    assert "month-end spend forecast" in line

    month = today.replace(day=1)
    end = (month + timedelta(days=32)).replace(day=1)
    grid = np.zeros((10, 24))
    for c in calls:
        if c.started_at < today:
            grid[(c.started_at - start).days, c.started_at.hour] += float(c.cost_usd or 0)
    profile = grid.mean(axis=0)
    spent = sum(float(c.cost_usd or 0) for c in calls if c.started_at >= month)
    hour = now.replace(minute=0, second=0, microsecond=0)
    left = profile[hour.hour] * (1 - (now - hour).total_seconds() / 3600)
    hour += timedelta(hours=1)
    while hour < end:
        left += profile[hour.hour]
        hour += timedelta(hours=1)
    shown = re.search(r"forecast \$([\d,.]+) \(90% interval \$([\d,.]+) to \$([\d,.]+)\)", line)
    assert shown is not None, line
    projected, low, high = (float(g.replace(",", "")) for g in shown.groups())
    assert projected == pytest.approx(spent + left, rel=1e-3)
    assert low <= projected <= high
    assert "hour-of-day rhythm over 10 days" in line
