"""``aivitals drift`` (the last hour against its baseline) and ``aivitals baseline pin|list|delete``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from aivitals.cli.app import app, console, fail
from aivitals.cli.history import DbOption, JsonOption, WhereOption, _reading
from aivitals.cli.output import emit

if TYPE_CHECKING:
    from aivitals.query.drift import Drift, DriftResult
    from aivitals.store.baselines import Pin

_VERDICTS = {
    "significant": "bold red",
    "moderate": "yellow",
    "stable": "green",
    "not enough data": "dim",
}


@app.command()
def drift(
    baseline: Annotated[
        str,
        typer.Option(
            help="The trailing baseline: the same hours of this many days before, e.g. 7d."
        ),
    ] = "7d",
    pinned: Annotated[
        str | None,
        typer.Option(help="Compare with a pinned baseline instead (aivitals baseline pin)."),
    ] = None,
    window: Annotated[
        str, typer.Option(help="The current window, ending now: 30m, 1h, 24h.")
    ] = "1h",
    by: Annotated[
        list[str] | None,
        typer.Option(help="Group by a field (repeatable): model, feature, prompt_version..."),
    ] = None,
    where: WhereOption = None,
    signal: Annotated[
        list[str] | None,
        typer.Option(help="Only these signals (repeatable): latency_ms, output_tokens, ..."),
    ] = None,
    min_samples: Annotated[
        int, typer.Option(help="Fewer calls (or scores) a side: not enough data.", min=2)
    ] = 200,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    """Every signal (latency, TTFT, tokens, cost per call, error rates, refusal and the other
    evaluator rates) of the current window against its baseline: the baseline's and current
    value, PSI or Cohen's h, the adjusted p-value and a verdict (docs/drift.md).

    Examples: `aivitals drift --by model`, `aivitals drift --pinned before-upgrade --window 24h`.
    """
    from aivitals.query import Queries, parse_where  # noqa: PLC0415
    from aivitals.query.drift import current_window  # noqa: PLC0415

    with _reading(db) as store:
        current = current_window(window, now=datetime.now(UTC))
        filters = parse_where(where or [])
        reference = f"pinned:{pinned}" if pinned is not None else baseline

        found = Queries(store.engine).drift(
            current,
            filters,
            by or (),
            baseline=reference,
            signals=signal,
            min_samples=min_samples,
        )
        if json_:
            document = {"filters": dict(filters.items()), "drift": found}
            emit("json", document, [])
            return
        console.print(_table(found, window))
        for line in _footer(found):
            console.print(line)


def _table(found: Drift, window: str) -> Table:
    table = Table(
        title=f"last {window} against {found.baseline} (distributions: p50)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    if found.by:
        table.add_column(", ".join(found.by), no_wrap=True)
    for name, justify in (
        ("signal", "left"),
        ("baseline", "right"),
        ("current", "right"),
        ("calls", "right"),
        ("stat.", "right"),
        ("p adj.", "right"),
        ("verdict", "left"),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]  # the literals above
            no_wrap=True,
            min_width=len("significant") if name == "verdict" else None,
        )
    for result in _shown(found):
        cells: list[str | Text] = [
            *([", ".join(v or "(none)" for v in result.group.values())] if found.by else []),
            result.signal,
            _value(result, result.baseline),
            _value(result, result.current),
            f"{result.baseline_n:,} / {result.current_n:,}",
            _statistic(result),
            "–" if result.p_adjusted is None else _p(result.p_adjusted),
            Text(result.verdict, style=_VERDICTS[result.verdict]),
        ]
        table.add_row(*cells)
    return table


def _shown(found: Drift) -> list[DriftResult]:
    """Signals with data on either side (the rest are named in the footer)."""
    return [r for r in found.results if r.baseline_n or r.current_n]


def _value(result: DriftResult, value: float | None) -> str:
    if value is None:
        return "–"
    if result.kind == "rate":
        return f"{value:.1%}"
    if result.signal == "cost_usd":
        return f"${value:.2g}"
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


def _statistic(result: DriftResult) -> str:
    if result.value is None:
        return "–"
    if result.statistic == "psi":
        return f"PSI {result.value:.2f}"
    return f"h {result.value:+.2f}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _footer(found: Drift) -> list[Text]:
    lines: list[Text] = []
    drifted = found.drifted
    if drifted:
        lines.extend(Text(r.summary, style=_VERDICTS[r.verdict]) for r in drifted)
    else:
        lines.append(Text("no drift", style="green"))
    from aivitals.query.baseline import RAW_CAP  # noqa: PLC0415  # keeps `aivitals --help` fast

    sampled = sorted({r.signal for r in found.results if r.sampled})
    if sampled:
        shown = f"from a sample of the raw calls (over {RAW_CAP:,}): {', '.join(sampled)}"
        lines.append(Text(shown, style="dim"))
    empty = sorted({r.signal for r in found.results if not (r.baseline_n or r.current_n)})
    if empty:
        lines.append(Text(f"no data on either side: {', '.join(empty)}", style="dim"))
    lines.append(
        Text(
            f"drifted: PSI >= 0.1 (distributions) or |h| >= 0.05 (rates) with p below "
            f"{found.alpha} adjusted (Benjamini-Hochberg); under {found.min_samples} a side: "
            "not enough data",
            style="dim",
        )
    )
    return lines


baselines_app = typer.Typer(
    name="baseline",
    help="Pinned baselines: named periods `aivitals drift --pinned NAME` compares with.",
    no_args_is_help=True,
)
app.add_typer(baselines_app)


@baselines_app.command("pin")
def pin(
    name: Annotated[str, typer.Option(help="The baseline's name, e.g. before-upgrade.")],
    since: Annotated[str, typer.Option(help="Its start: an ISO date or time, or 14d (ago).")],
    until: Annotated[str, typer.Option(help="Its end: an ISO date or time, or 7d (ago).")] = "0m",
    db: DbOption = None,
) -> None:
    """Pin the period from --since to --until under --name (replacing one of that name)."""
    from aivitals.query import QueryError, parse_since  # noqa: PLC0415
    from aivitals.store.baselines import pin as store_pin  # noqa: PLC0415
    from aivitals.store.rows import epoch_ms  # noqa: PLC0415

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now=now).start
    except QueryError as exc:
        raise fail(f"--since: {exc.problem}") from None
    try:
        end = now if until.strip() == "0m" else parse_since(until, now=now).start
    except QueryError as exc:
        raise fail(f"--until: {exc.problem.replace('since', 'until')}") from None
    with _reading(db) as store:
        try:
            found = store_pin(
                store.engine, name, epoch_ms(start), epoch_ms(end), now_ms=epoch_ms(now)
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    console.print(f"pinned {found.name}: {start.isoformat()} to {end.isoformat()}", highlight=False)


@baselines_app.command("list")
def list_(db: DbOption = None, json_: JsonOption = False) -> None:
    """Every pinned baseline."""
    from aivitals.store.baselines import list_pins  # noqa: PLC0415

    with _reading(db) as store:
        pins = list_pins(store.engine)
    if json_:
        emit("json", {"baselines": [_pin_document(p) for p in pins]}, [])
        return
    if not pins:
        console.print("no pinned baselines: aivitals baseline pin --name ... --since ...")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "since", "until"):
        table.add_column(column, no_wrap=True)
    for p in pins:
        document = _pin_document(p)
        table.add_row(p.name, document["since"], document["until"])
    console.print(table)


@baselines_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The pinned baseline to delete.")],
    db: DbOption = None,
) -> None:
    """Delete a pinned baseline."""
    from aivitals.store.baselines import delete_pin  # noqa: PLC0415

    with _reading(db) as store:
        deleted = delete_pin(store.engine, name)
    if not deleted:
        raise fail(f"no pinned baseline {name!r}: aivitals baseline list shows them")
    console.print(f"deleted {name}", highlight=False)


def _pin_document(p: Pin) -> dict[str, str]:
    return {
        "name": p.name,
        "since": datetime.fromtimestamp(p.since_ms / 1000, UTC).isoformat(),
        "until": datetime.fromtimestamp(p.until_ms / 1000, UTC).isoformat(),
    }
