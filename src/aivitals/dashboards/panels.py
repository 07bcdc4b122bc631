"""Panel builders shared by the dashboard's rows: one look for every stat, chart and ranking.

Every panel and query reads the ``$datasource`` variable, so the dashboard works with whichever
Prometheus data source is picked when it opens.
"""

from __future__ import annotations

from string import ascii_uppercase

from grafana_foundation_sdk.builders import bargauge, stat
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.builders.dashboard import FieldColor, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueGraphMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
"""The data source of every panel and query: the dashboard's ``datasource`` variable."""


def query(
    expr: str, *, legend: str = "", instant: bool = False, ref: str = "A", exemplars: bool = False
) -> Dataquery:
    """A Prometheus query: over the time range (a chart), or ``instant`` at its end (a number).

    ``exemplars``: show the exemplars of the histogram it reads (a trace id per bucket, which
    the Prometheus data source's exemplar settings link to a trace data source).
    """
    query = Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    if exemplars:
        query = query.exemplar(True)
    return query.instant() if instant else query.range()


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    """Absolute colour steps ``(from_value, colour)``; the first step's value is None (-inf)."""
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def stat_panel(
    title: str, description: str, expr: str, *, unit: str, span: int = 4, decimals: int = 2
) -> stat.Panel:
    """One number over the whole time range: an instant query at its end."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, instant=True))
        .unit(unit)
        .decimals(decimals)
        .graph_mode(BigValueGraphMode.NONE)
        # Grafana's default thresholds turn any value from 80 red: a count is not a warning.
        .thresholds(thresholds((None, "blue")))
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .span(span)
        .height(5)
    )


def timeseries_panel(
    title: str, description: str, *targets: Dataquery, unit: str, span: int = 12
) -> ts.Panel:
    """A chart over time of ``targets``, which get the refIds A, B, C... in order."""
    panel = (
        ts.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(8)
    )
    for ref, target in zip(ascii_uppercase, targets, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def bars_panel(
    title: str, description: str, expr: str, *, legend: str, unit: str, span: int = 8
) -> bargauge.Panel:
    """A ranking over the time range: one instant value per series, as horizontal bars."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend=legend, instant=True))
        .unit(unit)
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .color_scheme(FieldColor().mode(FieldColorModeId.PALETTE_CLASSIC))
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .span(span)
        .height(8)
    )
