"""The web dashboard: one page of ours (HTML, CSS, a small JS module) drawing the read API's
answers with Plotly, which is served from the installed ``plotly`` package, never a CDN."""

from aivitals.server.dashboard.auth import DashboardAuth
from aivitals.server.dashboard.routes import dashboard_router

__all__ = ["DashboardAuth", "dashboard_router"]
