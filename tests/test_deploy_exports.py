"""The files of deploy/ that aivitals exports are what today's aivitals exports.

``deploy/regenerate`` writes the Prometheus alert rules (``aivitals alerts export --prometheus``)
and the Grafana dashboard (``aivitals dashboards export --grafana``); run into a scratch folder with
the real CLI, it must write exactly what deploy/ holds. When a rule or a panel changes, this fails
until someone runs ``deploy/regenerate``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .support.deploy import DEPLOY
from .support.gateway_processes import AIVITALS

EXPORTED = ("prometheus/aivitals-rules.yml", "grafana/dashboards/aivitals.json")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regenerated")
    subprocess.run(
        [str(DEPLOY / "regenerate"), str(out)],
        env={**os.environ, "AIVITALS": AIVITALS},
        capture_output=True,
        timeout=120,
        check=True,
    )
    return out


@pytest.mark.parametrize("path", EXPORTED)
def test_the_deploy_file_is_what_aivitals_exports_today(path: str, regenerated: Path) -> None:
    fresh = (regenerated / path).read_text()
    assert fresh.strip(), path
    assert (DEPLOY / path).read_text() == fresh, f"deploy/{path} is stale: run deploy/regenerate"


def test_the_provisioned_dashboard_asks_for_its_data_source() -> None:
    # Grafana's provisioned Prometheus is the default, and the dashboard picks it through its
    # datasource variable: a data source uid baked in would break in every other Grafana.
    dashboard = json.loads((DEPLOY / "grafana/dashboards/aivitals.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
