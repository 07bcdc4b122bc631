"""The ``aivitals`` command line: `app` holds the commands, registered by the modules below."""

from aivitals.cli import alerts as _alerts  # noqa: F401  # registers alerts
from aivitals.cli import compare as _compare  # noqa: F401  # registers compare
from aivitals.cli import dashboards as _dashboards  # noqa: F401  # registers dashboards
from aivitals.cli import drift as _drift  # noqa: F401  # registers drift, baseline
from aivitals.cli import evaluate as _evaluate  # noqa: F401  # registers evaluate
from aivitals.cli import history as _history  # noqa: F401  # registers report, calls, export
from aivitals.cli import quality as _quality  # noqa: F401  # registers quality
from aivitals.cli import serve as _serve  # noqa: F401  # registers serve
from aivitals.cli import store as _store  # noqa: F401  # registers store copy
from aivitals.cli.app import app, main

__all__ = ["app", "main"]
