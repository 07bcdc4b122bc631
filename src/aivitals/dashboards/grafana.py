"""The Grafana dashboard over aivitals' Prometheus metrics, built with Grafana's Foundation SDK.

Five rows, as docs/design.md lists them: cost, latency, tokens, quality and operational health.
Every panel reads the metrics of `aivitals.metric_schema` (docs/metrics.md) through a
``$datasource`` variable, and narrows them by the filter variables
(`aivitals.dashboards.promql.FILTERS`) that its metric can take.

>>> dashboard = build_dashboard()
>>> [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
['Cost overview', 'Latency', 'Token usage', 'Quality', 'Operational health']
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from aivitals.dashboards.panels import DATASOURCE
from aivitals.dashboards.promql import FILTERS
from aivitals.dashboards.rows import ROWS
from aivitals.metric_schema import COST, REQUESTS

DEFAULT_TITLE = "aivitals: LLM calls"
DEFAULT_UID = "aivitals-llm"

_VARIABLE_QUERIES = {
    "provider": f"label_values({REQUESTS.name}, provider)",
    # Cascades: picking a provider narrows the models offered.
    "model": f'label_values({REQUESTS.name}{{provider=~"$provider"}}, model)',
    "feature": f"label_values({COST.name}, feature)",
    "team": f"label_values({COST.name}, team)",
}


def _variables(dashboard: Dashboard) -> Dashboard:
    dashboard = dashboard.with_variable(
        DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    for name in FILTERS:
        dashboard = dashboard.with_variable(
            QueryVariable(name)
            .label(name.capitalize())
            .datasource(DATASOURCE)
            .query({"query": _VARIABLE_QUERIES[name], "refId": f"{name}-values"})
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            # "All" as a regex rather than a list of every value: it also matches the empty
            # label of calls without a feature or team, and series born after the page loaded.
            .all_value(".*")
        )
    return dashboard


def build_dashboard(*, title: str = DEFAULT_TITLE, uid: str = DEFAULT_UID) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a plain dict), ready for import.

    Panels get ids in order: Grafana keeps them stable across edits only when they are set.
    """
    dashboard = (
        Dashboard(title)
        .uid(uid)
        .description("Cost, latency, tokens, quality and health of LLM calls, from aivitals.")
        .tags(["aivitals", "llm"])
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
    )
    for add in (_variables, *ROWS):
        dashboard = add(dashboard)
    model: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    for panel_id, panel in enumerate(model["panels"], start=1):
        panel["id"] = panel_id
    return model


def export_dashboard(*, title: str = DEFAULT_TITLE, uid: str = DEFAULT_UID) -> str:
    """`build_dashboard` as indented JSON text, with a final newline."""
    return json.dumps(build_dashboard(title=title, uid=uid), indent=2) + "\n"
