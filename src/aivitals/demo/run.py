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
from datetime import UTC, datetime, timedelta

import openai
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import aivitals
from aivitals.demo.workload import PlannedCall, plan_workload
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.query import Queries, Window

# A planned timeout hangs in the fake upstream longer than the client waits for it.
_TIMEOUT_CLIENT_S = 1.0
_TIMEOUT_HANG_S = 2.0
_PROMPT = "Summarise the quarterly report in three bullet points."


@dataclass(frozen=True, slots=True)
class DemoResult:
    planned: list[PlannedCall]
    elapsed_s: float
    db: str
    window: Window


def run_demo(*, calls: int, seed: int, concurrency: int, db: str, console: Console) -> DemoResult:
    """Run the workload, storing every call in ``db``; returns where and when."""
    planned = plan_workload(calls, seed=seed)
    # The report says which calls are unpriced; the once-per-model warning would only repeat it.
    logging.getLogger("aivitals.pricing").setLevel(logging.ERROR)
    aivitals.configure(environment="demo", store=db, flush_interval_s=0.2)
    began = datetime.now(UTC)
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
    aivitals.shutdown()  # flushes every call into the store and closes it
    window = Window(
        start=began - timedelta(seconds=1), end=datetime.now(UTC) + timedelta(seconds=1)
    )
    return DemoResult(
        planned=planned, elapsed_s=time.perf_counter() - started, db=db, window=window
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
    """Print the tour's findings from the store: spend, latency per model, attribution, errors."""
    from aivitals.cli.output import breakdown_table, errors_table, summary_panel  # noqa: PLC0415
    from aivitals.query import Filters, Queries  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415

    store = SqlStore.open(result.db)
    try:
        queries = Queries(store.engine)
        window = result.window
        console.print()
        first = queries.report(window, Filters(), ["model"])
        summary = first.summary
        console.print(summary_panel(summary, window))
        console.print(breakdown_table(first.breakdown, ["model"]))
        for by in (["feature"], ["team"]):
            console.print(breakdown_table(queries.breakdown(window, Filters(), by), by))
        errors = queries.breakdown(window, Filters(status="error"), ["error_type"])
        console.print(errors_table(errors, summary.calls))
        fired = fired_alerts(queries)
    finally:
        store.close()
    if any(item.model == "acme-internal-7b" for item in result.planned):
        console.print(
            "acme-internal-7b is a model no price catalog knows: its calls are recorded with cost "
            "null and counted as unpriced, never guessed (price it with a price override file)."
        )
    if fired:
        console.print("\nDefault alert rules this workload fires (aivitals alerts check):")
        for line in fired:
            console.print(f"  [bold red]{escape(line)}[/]", highlight=False)
    else:
        console.print("\nNo default alert rule fires on this workload (aivitals alerts check).")
    console.print(
        f"\nThe calls are stored in [bold]{result.db}[/] (SQLite). Explore them:\n"
        f"  aivitals report --db {result.db} --since 1h --by feature,team\n"
        f"  aivitals calls --db {result.db} --since 1h --where status=error\n"
        f"  aivitals export --db {result.db} --since 1h --format csv -o calls.csv\n"
        f"See them in the dashboard: run `aivitals serve --db {result.db}` and open "
        f"http://127.0.0.1:8700/",
        highlight=False,
    )


def fired_alerts(queries: Queries) -> list[str]:
    """The default alert rules that breach on the store now, one line each (rule, group, value)."""
    from aivitals.alerts import AlertEngine, default_rules_text, parse_rules  # noqa: PLC0415

    engine = AlertEngine(parse_rules(default_rules_text()), queries=queries, notifiers={})
    lines = []
    for finding in engine.check():
        if not finding.breached or finding.value is None:
            continue
        rule = finding.rule
        group = ", ".join(
            f"{key}={value}"
            for key, value in finding.labels.items()
            if key not in ("alertname", "severity") and key not in rule.labels
        )
        where = f" ({group})" if group else ""
        lines.append(
            f"{rule.severity}: {rule.name}{where} is {finding.value:.4g}, "
            f"{rule.op} {rule.threshold:g} over {rule.window}"
        )
    return lines
