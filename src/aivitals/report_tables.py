"""The report's tables for people, drawn by `aivitals report` and `aivitals demo` alike.

Below both (neither imports the other): the summary panel, the breakdowns, the errors and the
recent calls, over the query layer's results.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.panel import Panel
from rich.table import Table


def money(value: Decimal | None) -> str:
    """Dollars with the digits that matter: $1,234.50, $0.0441, $0.000151."""
    if value is None:
        return "—"
    if value >= 1:
        return f"${value:,.2f}"
    if value >= Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:.6f}"


def count(n: int, noun: str) -> str:
    """``1 error``, ``2 errors``, ``1,000 calls``: the nouns here all take an s."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def summary_panel(summary: Any, window: Any) -> Panel:
    """The headline figures of a window."""
    quality = ", ".join(f"{name} {value:.2f}" for name, value in sorted(summary.quality.items()))
    method = "within 1%" if summary.percentiles == "sketch" else "exact"
    lines = [
        f"[bold]{count(summary.calls, 'call')}[/], success {pct(summary.success_rate)}, "
        f"{count(summary.errors, 'error')}, {summary.cancelled:,} cancelled",
        f"spend [bold green]{money(summary.total_cost_usd)}[/] "
        f"(avg {money(summary.avg_cost_usd)} a call, "
        f"{money(summary.cost_per_1k_tokens)} per 1k tokens), {summary.unpriced_calls:,} unpriced",
        f"tokens {summary.input_tokens:,} in ({summary.cached_input_tokens:,} cached), "
        f"{summary.output_tokens:,} out; response cache hit ratio {pct(summary.cache_hit_ratio)}",
        f"latency avg {ms(summary.latency_avg_ms)} ms, p50 {ms(summary.latency_p50_ms)}, "
        f"p95 {ms(summary.latency_p95_ms)}, p99 {ms(summary.latency_p99_ms)}, "
        f"max {ms(summary.latency_max_ms)} ms ({method})",
        f"time to first token p50 {ms(summary.ttft_p50_ms)}, p95 {ms(summary.ttft_p95_ms)} ms",
        f"quality: {quality or 'no scores'}",
    ]
    if summary.skipped_rows:
        lines.append(
            f"[yellow]{summary.skipped_rows:,} stored rows left out: a value in them is out "
            "of range (written by an older version or another tool)[/]"
        )
    title = f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC"
    return Panel("\n".join(lines), title=title, title_align="left", expand=False)


def breakdown_table(rows: Sequence[Any], fields: Sequence[str]) -> Table:
    """Cost, latency, errors and quality per group, most expensive first."""
    # "ms" once in the title rather than in four headers: the table fits 80 columns better.
    table = Table(title=f"By {', '.join(fields)} (latency in ms)", title_justify="left")
    for field in fields:
        table.add_column(field, no_wrap=True)
    for column in ("calls", "cost", "p50", "p95", "p99", "max", "errors", "quality"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        quality = ", ".join(f"{v:.2f}" for _, v in sorted(row.quality.items())) or "—"
        table.add_row(
            *(str(row.group.get(field) or "(none)") for field in fields),
            f"{row.calls:,}",
            "unpriced" if row.unpriced_calls == row.calls else money(row.total_cost_usd),
            ms(row.latency_p50_ms),
            ms(row.latency_p95_ms),
            ms(row.latency_p99_ms),
            ms(row.latency_max_ms),
            pct(row.errors / row.calls if row.calls else None),
            quality,
        )
    return table


def errors_table(rows: Sequence[Any], total_calls: int) -> Table:
    """Errors by type, as counts and as a share of all calls."""
    table = Table(title="Errors by type", title_justify="left")
    table.add_column("error type", no_wrap=True)
    table.add_column("calls", justify="right")
    table.add_column("share of all calls", justify="right")
    for row in sorted(rows, key=lambda r: -r.calls):
        share = row.calls / total_calls if total_calls else None
        table.add_row(str(row.group.get("error_type") or "other"), f"{row.calls:,}", pct(share))
    return table


def calls_table(page: Sequence[Any]) -> Table:
    """Recent calls, newest first."""
    table = Table(title="Calls, newest first", title_justify="left")
    for column in (
        "time",
        "model",
        "feature",
        "user",
        "status",
        "latency ms",
        "tokens",
        "cost",
        "scores",
    ):
        table.add_column(column, no_wrap=column in ("time", "model"))
    for item in page:
        call = item.call
        status = call.status if call.error_type is None else f"{call.status}: {call.error_type}"
        table.add_row(
            f"{call.started_at:%m-%d %H:%M:%S}",
            call.model,
            call.feature or "",
            call.user or "",
            status,
            ms(call.latency_ms),
            f"{call.input_tokens:,}/{call.output_tokens:,}",
            "unpriced" if call.cost_usd is None else money(call.cost_usd),
            ", ".join(f"{s.name}={s.value:g}" for s in item.scores),
        )
    return table


def duration(ms_: float | None) -> str:
    """A time avoided: ``850 ms``, ``42.3 s``, ``1.5 h``."""
    if ms_ is None:
        return "—"
    if ms_ < 1000:
        return f"{ms_:,.0f} ms"
    if ms_ < 3_600_000:
        return f"{ms_ / 1000:,.1f} s"
    return f"{ms_ / 3_600_000:,.1f} h"


def cache_table(impact: Any) -> Table:
    """Per cache level (`aivitals.query.cache_impact.CacheImpact`): the share of calls, the spend
    and the upstream time avoided, and the latency of a hit against a miss."""
    table = Table(
        title=f"Response cache: hit ratio {pct(impact.hit_ratio)}, "
        f"{money(impact.saved_usd)} and {duration(impact.time_avoided_ms)} upstream avoided",
        caption="time avoided is estimated: each hit times the mean latency of the successful "
        "misses of its model in the window",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("level", no_wrap=True)
    for column in ("calls", "share", "spend", "avoided", "time avoided", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right", no_wrap=True)
    for level in impact.levels:
        hit = level.level in ("exact", "semantic")
        time_avoided = duration(level.time_avoided_ms) if hit else ""
        if hit and level.unestimated_hits:
            time_avoided += f" ({level.unestimated_hits:,} hits unestimated)"
        table.add_row(
            level.level,
            f"{level.calls:,}",
            pct(level.share),
            money(level.cost_usd),
            money(level.saved_usd) if hit else "",
            time_avoided,
            ms(level.latency_p50_ms),
            ms(level.latency_p95_ms),
        )
    return table


def guardrails_line(impact: Any) -> str:
    """The guardrails' actions in one line: ``guardrails acted on 12 calls: card redact 8, ...``."""
    actions = ", ".join(f"{g.guardrail} {g.action} {g.calls:,}" for g in impact.guardrails)
    line = f"guardrails acted on {count(impact.guarded_calls, 'call')}: {actions or 'none tagged'}"
    if impact.content_filter_blocks:
        line += f"; {count(impact.content_filter_blocks, 'call')} blocked (content_filter)"
    return line


def forecast_line(forecast: Any) -> str:
    """The month-end spend forecast in one line (`aivitals.query.forecast.Forecast`)."""
    if forecast.projected_usd is None:
        return (
            f"month-end spend forecast: not enough data ({count(forecast.history_days, 'day')} "
            f"of history); {money(Decimal(str(round(forecast.spent_usd, 6))))} spent this month"
        )

    def usd(value: float) -> str:
        return money(Decimal(str(round(value, 6))))

    return (
        f"month-end spend forecast [bold]{usd(forecast.projected_usd)}[/] "
        f"({forecast.coverage:.0%} interval {usd(forecast.low_usd)} to "
        f"{usd(forecast.high_usd)}); {usd(forecast.spent_usd)} spent this month "
        f"({forecast.method} rhythm over {count(forecast.history_days, 'day')})"
    )
