"""Dashboards over aivitals' metrics, for tools outside aivitals (Grafana)."""

from aivitals.dashboards.grafana import (
    DEFAULT_TITLE,
    DEFAULT_UID,
    build_dashboard,
    export_dashboard,
)

__all__ = ["DEFAULT_TITLE", "DEFAULT_UID", "build_dashboard", "export_dashboard"]
