"""`aivitals demo`: a self-contained tour through the real pieces.

It starts the fake upstream, sends the planned workload through an instrumented official ``openai``
client (threads, streams, injected errors, quality scores), and prints what aivitals saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

import openai
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import aivitals
from aivitals.demo.workload import PlannedCall, plan_workload
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.windows import LiveWindows, WindowView

# A planned timeout hangs in the fake upstream longer than the client waits for it.
_TIMEOUT_CLIENT_S = 1.0
_TIMEOUT_HANG_S = 2.0
_PROMPT = "Summarise the quarterly report in three bullet points."


@dataclass(frozen=True, slots=True)
class DemoResult:
    planned: list[PlannedCall]
    elapsed_s: float
    windows: LiveWindows


def run_demo(*, calls: int, seed: int, concurrency: int, console: Console) -> DemoResult:
    """Run the workload and return what the live windows hold afterwards."""
    planned = plan_workload(calls, seed=seed)
    # The report says which calls are unpriced; the once-per-model warning would only repeat it.
    logging.getLogger("aivitals.pricing").setLevel(logging.ERROR)
    runtime = aivitals.configure(environment="demo", flush_interval_s=0.2)
    started = time.perf_counter()
    with MockServer(MockConfig(seed=seed, hang_s=_TIMEOUT_HANG_S)) as upstream:
        client = aivitals.instrument(
            openai.OpenAI(
                base_url=upstream.base_url, api_key="sk-demo-not-a-real-key", max_retries=0
            )
        )
        with _progress(console, len(planned)) as advance, ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(lambda item: _send(client, item), planned):
                advance()
    aivitals.flush()
    assert runtime.windows is not None  # configure() always builds the live windows
    return DemoResult(
        planned=planned, elapsed_s=time.perf_counter() - started, windows=runtime.windows
    )


def _send(client: openai.OpenAI, item: PlannedCall) -> None:
    timeout = _TIMEOUT_CLIENT_S if item.error == "timeout" else 30.0
    with aivitals.context(user=item.user, feature=item.feature, team=item.team):
        try:
            if item.stream:
                stream = client.chat.completions.create(
                    model=item.model,
                    messages=[{"role": "user", "content": _PROMPT}],
                    stream=True,
                    extra_headers=item.headers,
                    timeout=timeout,
                )
                for _ in stream:
                    pass
            else:
                client.chat.completions.create(
                    model=item.model,
                    messages=[{"role": "user", "content": _PROMPT}],
                    extra_headers=item.headers,
                    timeout=timeout,
                )
        except openai.OpenAIError:
            return  # injected on purpose; aivitals has recorded it
    call_id = aivitals.last_call_id()
    if item.score is not None and call_id is not None:
        aivitals.score(call_id, "relevance", item.score, model=item.model, feature=item.feature)


@contextmanager
def _progress(console: Console, total: int) -> Iterator[Callable[[], None]]:
    progress = Progress(
        TextColumn("sending calls"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("calls", total=total)
        yield lambda: progress.advance(task)


def render(result: DemoResult, console: Console) -> None:
    """Print the tour's findings: spend, per-model latency, attribution and errors."""
    windows = result.windows
    total = windows.read(period="today")
    console.print()
    console.print(
        f"[bold]{total.calls} calls[/] in {result.elapsed_s:.1f} s — "
        f"spend [bold green]${_money(total.cost_usd)}[/], "
        f"{total.input_tokens:,} tokens in ({total.cached_input_tokens:,} cached), "
        f"{total.output_tokens:,} out, "
        f"error rate {_pct(total.error_rate)}, {total.unpriced_calls} unpriced"
    )
    keys = windows.keys(period="today")
    console.print(_by_model(windows, sorted({k[1] for k in keys})))
    console.print(_by(windows, "feature", sorted({k[2] for k in keys})))
    console.print(_by(windows, "team", sorted({k[3] for k in keys})))
    console.print(_errors(total))
    if total.unpriced_calls:
        console.print(
            f"{total.unpriced_calls} calls went to a model no price catalog knows: they are "
            "recorded with cost null, never guessed (add prices with a price override file)."
        )


def _by_model(windows: LiveWindows, models: list[str]) -> Table:
    table = Table(title="By model (latency percentiles within 1%)", title_justify="left")
    table.add_column("model", no_wrap=True)
    for column in ("calls", "cost $", "p50 ms", "p95 ms", "p99 ms", "ttft p50", "errors"):
        table.add_column(column, justify="right")
    for model in models:
        view = windows.read(period="today", model=model)
        cost = "unpriced" if view.unpriced_calls == view.calls else _money(view.cost_usd)
        table.add_row(
            model,
            str(view.calls),
            cost,
            _ms(view.latency_p50_ms),
            _ms(view.latency_p95_ms),
            _ms(view.latency_p99_ms),
            _ms(view.ttft_p50_ms),
            _pct(view.error_rate),
        )
    return table


def _by(windows: LiveWindows, field: str, values: list[str]) -> Table:
    table = Table(title=f"By {field}", title_justify="left")
    for column in (field, "calls", "cost $", "mean relevance"):
        table.add_column(column, justify="left" if column == field else "right")
    for value in values:
        if field == "feature":
            view = windows.read(period="today", feature=value)
        else:
            view = windows.read(period="today", team=value)
        quality = view.quality.get("relevance")
        table.add_row(
            value or "(none)",
            str(view.calls),
            _money(view.cost_usd),
            "—" if quality is None else f"{quality:.2f}",
        )
    return table


def _errors(total: WindowView) -> Table:
    table = Table(title="Errors by type", title_justify="left")
    table.add_column("error type")
    table.add_column("calls", justify="right")
    table.add_column("share of calls", justify="right")
    for error_type, count in sorted(total.errors_by_type.items(), key=lambda kv: -kv[1]):
        table.add_row(error_type, str(count), _pct(count / total.calls if total.calls else None))
    return table


def _money(value: Decimal) -> str:
    return f"{value:.6f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
