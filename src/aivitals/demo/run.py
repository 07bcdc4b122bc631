"""`aivitals demo`: a self-contained tour through the real pieces.

It starts the fake upstream, sends the planned workload through an instrumented official ``openai``
client (threads, streams, injected errors, quality scores), dates the calls over the past day
(`aivitals.demo.history`), stores them, and prints what aivitals saw.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import openai
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import aivitals
from aivitals.bounds import EARLIEST_TIME
from aivitals.demo.history import spread
from aivitals.demo.workload import PlannedCall, plan_workload
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call, Score, utc_now
from aivitals.query import Queries, Window
from aivitals.query.errors import QueryError
from aivitals.query.window import parse_since
from aivitals.sinks.memory import MemorySink
from aivitals.store.sql import SqlStore

# A planned timeout hangs in the fake upstream longer than the client waits for it.
_TIMEOUT_CLIENT_S = 1.0
_TIMEOUT_HANG_S = 2.0
_PROMPT = "Summarise the quarterly report in three bullet points."
_WRITE_CHUNK = 1000
# The report window reaches a little past the last call, which may end just after "now".
_MARGIN = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class DemoResult:
    planned: list[PlannedCall]
    elapsed_s: float
    db: str
    window: Window
    history: str | None
    """The span the calls are dated over, as ``--since`` reads it (``24h``); None: as sent."""
    earlier_calls: int
    """Calls of earlier runs already in ``db`` inside the window, and so in the figures."""


def run_demo(
    *,
    calls: int,
    seed: int,
    concurrency: int,
    db: str,
    console: Console,
    history: str | None = "24h",
) -> DemoResult:
    """Run the workload and store every call in ``db``; returns where and when.

    With ``history`` (anything ``--since`` reads: ``24h``, ``7d``, an ISO date), the calls are
    dated over that span before now, in the planned order (`aivitals.demo.history.spread`), and
    their scores move with them; with None they keep the times they were sent. A ``history``
    that cannot be read raises `ValueError` (see `history_span`) before anything is sent.
    """
    span = None if history is None else history_span(history)
    planned = plan_workload(calls, seed=seed)
    # The report says which calls are unpriced; the once-per-model warning would only repeat it.
    logging.getLogger("aivitals.pricing").setLevel(logging.ERROR)
    # Recorded into memory first: a call's time is only known to be moved once it is recorded,
    # and the store's rollups are folded at write time, from the time the call has then.
    sink = MemorySink()
    aivitals.configure(
        environment="demo", store=False, endpoint=False, sinks=[sink], flush_interval_s=0.2
    )
    began = utc_now()
    started = time.perf_counter()
    slots: dict[str, int] = {}
    with MockServer(MockConfig(seed=seed, hang_s=_TIMEOUT_HANG_S)) as upstream:
        # max_retries=0: every injected error is a call of its own. With the client's default
        # retries, one recorded call is one client request, its retries folded in (README).
        client = aivitals.instrument(
            openai.OpenAI(
                base_url=upstream.base_url, api_key="sk-demo-not-a-real-key", max_retries=0
            )
        )
        with _progress(console, len(planned)) as advance, ThreadPoolExecutor(concurrency) as pool:
            for index, call_id in pool.map(lambda item: _send(client, item), planned):
                # A call that was somehow not recorded leaves the thread's previous id behind:
                # that id keeps its first slot.
                if call_id is not None:
                    slots.setdefault(call_id, index)
                advance()
    aivitals.shutdown()  # flushes every call and score into the sink
    ended = utc_now()
    recorded, scores = sink.calls, sink.scores
    if span is not None:
        window = Window(start=ended - span, end=ended + _MARGIN)
        recorded, scores = _backdate(
            recorded, scores, slots, spread(len(planned), end=ended, span=span)
        )
    else:
        window = Window(start=began - _MARGIN, end=ended + _MARGIN)
    earlier = _store(db, recorded, scores, window)
    return DemoResult(
        planned=planned,
        elapsed_s=time.perf_counter() - started,
        db=db,
        window=window,
        history=history,
        earlier_calls=earlier,
    )


def history_span(history: str) -> timedelta:
    """The span ``--history`` names; raises `ValueError` with a one-line message if none."""
    now = utc_now()
    try:
        window = parse_since(history, now=now)
    except QueryError as exc:
        raise ValueError(str(exc).replace("--since", "--history", 1)) from None
    if window.start < EARLIEST_TIME:
        raise ValueError(
            f"--history: {history!r} reaches before {EARLIEST_TIME:%Y-%m-%d}, the earliest "
            "time a call may have; use 24h, 7d or a later date"
        )
    return window.end - window.start


def _send(client: openai.OpenAI, item: PlannedCall) -> tuple[int, str | None]:
    """Make one planned request; returns its index and the id aivitals recorded it under."""
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
            return item.index, aivitals.last_call_id()  # injected on purpose; recorded
    call_id = aivitals.last_call_id()
    if item.score is not None and call_id is not None:
        aivitals.score(call_id, "relevance", item.score, model=item.model, feature=item.feature)
    return item.index, call_id


def _backdate(
    calls: Sequence[Call],
    scores: Sequence[Score],
    slots: dict[str, int],
    times: Sequence[datetime],
) -> tuple[list[Call], list[Score]]:
    """The calls moved to their planned times, and each score by as much as its call."""
    moved: list[Call] = []
    shifts: dict[str, timedelta] = {}
    for call in calls:
        slot = slots.get(call.id)
        if slot is None:
            moved.append(call)
            continue
        shifts[call.id] = times[slot] - call.started_at
        moved.append(msgspec.structs.replace(call, started_at=times[slot]))
    rescored = [
        msgspec.structs.replace(score, created_at=score.created_at + shifts[score.call_id])
        if score.call_id in shifts
        else score
        for score in scores
    ]
    return moved, rescored


def _store(db: str, calls: Sequence[Call], scores: Sequence[Score], window: Window) -> int:
    """Write the run into ``db``; returns how many calls of earlier runs the window holds."""
    store = SqlStore.open(db)
    try:
        earlier = Queries(store.engine).summary(window, quality=False).calls
        for first in range(0, len(calls), _WRITE_CHUNK):
            store.write(calls[first : first + _WRITE_CHUNK], [])
        store.write([], scores)
    finally:
        store.close()
    return earlier


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


def program() -> str:
    """How to type this ``aivitals`` from where it was started, for the commands the demo prints.

    ``aivitals`` when the PATH finds this very program; otherwise the path it was started by,
    such as ``.venv/bin/aivitals`` after ``make demo`` outside an activated virtual environment.
    """
    invoked = sys.argv[0] if sys.argv else ""
    if Path(invoked).name != "aivitals" or "/" not in invoked:
        return "aivitals"  # started some other way (python -c, a test runner): the usual name
    found = shutil.which("aivitals")
    if found is not None and Path(found).resolve() == Path(invoked).resolve():
        return "aivitals"
    return invoked


def explore_commands(result: DemoResult, program: str = "aivitals") -> tuple[list[str], str]:
    """The commands that read this run back, and the one that serves the dashboard."""
    name, db = shlex.quote(program), shlex.quote(result.db)
    since = shlex.quote(result.history or "1h")
    return [
        f"{name} report --db {db} --since {since} --by feature,team",
        f"{name} calls --db {db} --since {since} --where status=error",
        f"{name} export --db {db} --since {since} --format csv -o calls.csv",
        f"{name} alerts check --db {db}",
    ], f"{name} serve --db {db}"


def render(result: DemoResult, console: Console, *, program: str = "aivitals") -> None:
    """Print the tour's findings from the store: spend, latency per model, attribution, errors."""
    from aivitals.query import Filters  # noqa: PLC0415
    from aivitals.report_tables import (  # noqa: PLC0415
        breakdown_table,
        errors_table,
        summary_panel,
    )

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
    sent = len(result.planned)
    if result.history is not None:
        console.print(
            f"The {sent:,} calls were sent just now, in {result.elapsed_s:.0f} s, and dated "
            f"back over --history {result.history} with a day's rhythm (--history none keeps "
            "the times they were sent).",
            highlight=False,
        )
    if result.earlier_calls:
        console.print(
            f"[yellow]{result.db} already held {result.earlier_calls:,} calls of earlier runs in "
            "this window: the figures count them too (a new --db starts afresh).[/]",
            highlight=False,
        )
    if any(item.model == "acme-internal-7b" for item in result.planned):
        console.print(
            "acme-internal-7b is a model no price catalog knows: its calls are recorded with cost "
            "null and counted as unpriced, never guessed (price it with a price override file)."
        )
    if fired:
        console.print("\nDefault alert rules that fire on this store now (aivitals alerts check):")
        for line in fired:
            console.print(f"  [bold red]{escape(line)}[/]", highlight=False)
    else:
        console.print("\nNo default alert rule fires on this store now (aivitals alerts check).")
    reads, serve = explore_commands(result, program)
    lines = [f"\nThe calls are stored in [bold]{escape(result.db)}[/] (SQLite). Explore them:"]
    lines += [f"  {escape(command)}" for command in reads]
    lines.append("See them in the dashboard: run this, then open http://127.0.0.1:8700/")
    lines.append(f"  {escape(serve)}")
    activate = Path(program).parent / "activate"
    if program != "aivitals" and activate.is_file():
        lines.append(
            f"(aivitals is not on your PATH: `source {escape(shlex.quote(str(activate)))}` "
            "puts it there.)"
        )
    # soft_wrap: a command stays on one line, to copy whole, whatever the terminal's width.
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


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
