"""``aivitals quality``: the evaluators' rates, the mean scores and the labelled-outcome metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from aivitals.cli.app import app, console, errors
from aivitals.cli.history import DbOption, JsonOption, SinceOption, WhereOption, _reading
from aivitals.cli.output import emit

if TYPE_CHECKING:
    from aivitals.query.outcomes import ClassMetrics, NumberMetrics, OutcomeGroup
    from aivitals.query.quality import QualityGroup

_RATES = (
    ("refusal", "refusal"),
    ("empty", "empty"),
    ("truncated", "truncated"),
    ("invalid_json", "invalid JSON"),
    ("pii_leak", "PII leak"),
)


@app.command()
def quality(
    since: SinceOption = "24h",
    by: Annotated[
        str, typer.Option(help="Group by these fields, comma-separated: model, feature, ...")
    ] = "model",
    where: WhereOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    """How often answers were refused, empty, cut, invalid JSON or leaking personal data; the mean
    of every other score (the judge's, yours); and, for calls with labelled outcomes, accuracy,
    precision, recall, F1, ROC AUC, MAE and RMSE.

    Examples: `aivitals quality --by model`, `aivitals quality --by prompt_version --since 7d`.
    """
    from aivitals.query import Queries, parse_since, parse_where  # noqa: PLC0415
    from aivitals.query.quality_report import quality_report  # noqa: PLC0415

    names = [name.strip() for name in by.split(",") if name.strip()]
    with _reading(db) as store:
        window = parse_since(since, now=datetime.now(UTC))
        filters = parse_where(where or [])
        report = quality_report(Queries(store.engine), window, filters, names)
        if json_:
            document = {
                "window": window,
                "filters": dict(filters.items()),
                "by": report.by,
                "groups": report.groups,
                "outcomes_unavailable": report.outcomes_unavailable,
            }
            emit("json", document, [])
            return
        if not report.groups:
            console.print(f"no evaluated, scored or labelled calls in the last {since}")
        else:
            console.print(_rates_table(report.by, report.rated, since))
            if any(group.scores for group in report.rated):
                console.print(_scores_table(report.by, report.rated))
            if report.labelled:
                console.print(_outcomes_table(report.by, report.labelled))
        if report.outcomes_unavailable:
            # escape: "[quality]" is the extra's name, not rich markup.
            errors.print(
                escape(f"labelled outcomes not shown: {report.outcomes_unavailable}"),
                highlight=False,
                soft_wrap=True,
            )


def _group_columns(table: Table, names: Sequence[str]) -> None:
    for name in names:
        table.add_column(name, no_wrap=True)


def _shown(key: tuple[str | None, ...]) -> list[str]:
    return [value or "(none)" for value in key]


def _rates_table(names: Sequence[str], rated: list[QualityGroup], since: str) -> Table:
    table = Table(title=f"Evaluator rates, last {since}", title_justify="left", box=box.SIMPLE_HEAD)
    _group_columns(table, names)
    table.add_column("evaluated", justify="right")
    for _, label in _RATES:
        table.add_column(label, justify="right")
    for group in rated:
        counts = [rate.count for rate in group.rates.values()]
        cells = [
            "–" if name not in group.rates else f"{group.rates[name].rate:.1%}"
            for name, _ in _RATES
        ]
        table.add_row(*_shown(group.key), f"{max(counts, default=0):,}", *cells)
    return table


def _scores_table(names: Sequence[str], rated: list[QualityGroup]) -> Table:
    table = Table(title="Mean scores", title_justify="left", box=box.SIMPLE_HEAD)
    _group_columns(table, names)
    table.add_column("score")
    table.add_column("mean", justify="right")
    table.add_column("scores", justify="right")
    for group in rated:
        for name, score in group.scores.items():
            table.add_row(*_shown(group.key), name, f"{score.rate:.3f}", f"{score.count:,}")
    return table


def _outcomes_table(names: Sequence[str], labelled: list[OutcomeGroup]) -> Table:
    table = Table(
        title="Labelled outcomes",
        title_justify="left",
        caption="P, R, F1: precision, recall and F1, macro means over the classes",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    _group_columns(table, names)
    table.add_column("task", no_wrap=True)
    for column in ("n", "accuracy", "P", "R", "F1", "AUC", "MAE", "RMSE"):
        table.add_column(column, justify="right", no_wrap=True)
    for group in labelled:
        for name, task in group.tasks.items():
            table.add_row(*_shown(group.key), name, f"{task.count:,}", *_figures(task))
    return table


def _figures(task: ClassMetrics | NumberMetrics) -> list[str]:
    from aivitals.query.outcomes import NumberMetrics  # noqa: PLC0415  # keeps --help fast

    if isinstance(task, NumberMetrics):
        return ["–"] * 5 + [f"{task.mae:.3f}", f"{task.rmse:.3f}"]
    auc = task.roc_auc
    return [
        f"{task.accuracy:.3f}",
        f"{task.macro_precision:.3f}",
        f"{task.macro_recall:.3f}",
        f"{task.macro_f1:.3f}",
        "–" if auc is None else f"{auc:.3f}",
        "–",
        "–",
    ]
