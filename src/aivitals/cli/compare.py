"""``aivitals compare``: two prompt versions (or models, features...) side by side."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from aivitals.cli.app import app, console, fail
from aivitals.cli.history import DbOption, JsonOption, SinceOption, WhereOption, _reading
from aivitals.cli.output import emit

if TYPE_CHECKING:
    from aivitals.query.compare import Comparison, Group
    from aivitals.query.compare_stats import Measure

_VERDICTS = {
    "regression": "bold red",
    "improvement": "green",
    "no significant difference": "dim",
    "not enough data": "yellow",
}


@app.command()
def compare(
    a: Annotated[
        str | None, typer.Argument(help="The value of --by to compare against.", metavar="A")
    ] = None,
    b: Annotated[str | None, typer.Argument(help="The value compared.", metavar="B")] = None,
    by: Annotated[
        str, typer.Option(help="The field whose two values are compared: prompt_version, model...")
    ] = "prompt_version",
    since: SinceOption = "7d",
    where: WhereOption = None,
    min_samples: Annotated[
        int,
        typer.Option(help="Fewer calls (or scores) a side: not enough data.", min=2, max=5000),
    ] = 30,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    """B against A: latency, error and refusal rates, cost, tokens and every score, with the
    difference, its 95% interval and whether it is significant; regressions called out.

    Without A and B, the two most frequent values in the window, the one seen first as A.

    Examples: `aivitals compare v1 v2`, `aivitals compare --by model --where feature=search`.
    """
    from aivitals.query import Queries, QueryError, parse_since, parse_where  # noqa: PLC0415

    with _reading(db) as store:
        window = parse_since(since, now=datetime.now(UTC))
        filters = parse_where(where or [])
        try:
            found = Queries(store.engine).compare(
                window, filters, by, a=a, b=b, min_samples=min_samples
            )
        except QueryError as exc:
            if exc.parameter not in ("a", "b"):
                raise
            # A and B are arguments, not options: "B: ...", not "--b: ...".
            raise fail(f"{exc.parameter.upper()}: {exc.problem}") from None
        if json_:
            document = {"window": window, "filters": dict(filters.items()), "comparison": found}
            emit("json", document, [])
            return
        console.print(_table(found, since))
        for line in _footer(found):
            console.print(line)


def _side(group: Group) -> str:
    return f"{group.value or '(none)'} ({group.calls:,} calls)"


def _table(found: Comparison, since: str) -> Table:
    table = Table(
        title=f"{found.by}: B {_side(found.b)} against A {_side(found.a)}, last {since}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("measure", "left"),
        ("A", "right"),
        ("B", "right"),
        ("B - A", "right"),
        ("rel.", "right"),
        ("95% interval", "right"),
        ("p adj.", "right"),
        ("verdict", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    for m in found.measures:
        table.add_row(
            _label(m.name),
            _value(m, m.a),
            _value(m, m.b),
            _value(m, m.difference, signed=True),
            "–" if m.relative is None else f"{m.relative:+.0%}",
            "–"
            if m.ci_low is None or m.ci_high is None
            else f"{_value(m, m.ci_low, signed=True, unit=False)} to "
            f"{_value(m, m.ci_high, signed=True, unit=False)}",
            _p(m.p_adjusted),
            Text(_SHOWN.get(m.verdict, m.verdict), style=_VERDICTS[m.verdict]),
        )
    return table


_LABELS = {
    "latency_p50_ms": "latency p50 (ms)",
    "latency_p95_ms": "latency p95 (ms)",
    "error_rate": "error rate",
    "refusal_rate": "refusal rate",
    "cost_per_call_usd": "cost/1k calls (USD)",
    "input_tokens_per_call": "input tokens/call",
    "output_tokens_per_call": "output tokens/call",
}
_SHOWN = {"no significant difference": "not significant"}
"""The table's words, kept short for an 80 to 100 column terminal; the JSON has the names."""


def _label(name: str) -> str:
    return _LABELS.get(name, name.removeprefix("score."))


def _value(m: Measure, value: float | None, *, signed: bool = False, unit: bool = True) -> str:
    """A figure in the unit its label says; shares as %, their differences in points."""
    if value is None:
        return "–"
    sign = "+" if signed else ""
    if m.kind == "latency":
        return f"{value:{sign},.0f}"
    if m.kind == "rate":
        # Differences of shares in percentage points: "+2%" of a 3% rate would read as a ratio.
        return f"{value * 100:{sign}.1f}{'pp' if unit else ''}" if signed else f"{value:.1%}"
    if m.name == "cost_per_call_usd":
        return f"{value * 1000:{sign},.3f}"
    return f"{value:{sign},.3f}" if abs(value) < 10 else f"{value:{sign},.1f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _footer(found: Comparison) -> list[Text]:
    lines = []
    if found.regressions:
        named = ", ".join(_label(name) for name in found.regressions)
        lines.append(Text(f"regressions: {named}", style="bold red"))
    else:
        lines.append(Text("no regression", style="green"))
    if found.improvements:
        named = ", ".join(_label(name) for name in found.improvements)
        lines.append(Text(f"improvements: {named}", style="green"))
    for group, side in ((found.a, "A"), (found.b, "B")):
        if group.sampled:
            lines.append(
                Text(
                    f"latency of {side} from a sample: {group.latency_samples:,} of "
                    f"{group.calls:,} calls (every {group.every:,}th, in start order)",
                    style="dim",
                )
            )
    lines.append(
        Text(
            f"significant: p below {found.alpha} once adjusted over the measures "
            f"(Benjamini-Hochberg); under {found.min_samples} calls a side: not enough data",
            style="dim",
        )
    )
    if found.skipped_rows:
        lines.append(
            Text(
                f"left out {found.skipped_rows:,} stored rows with values out of range", style="dim"
            )
        )
    return lines
