"""``GET /api/v1/alerts``: the alert engine's active alerts and its delivery health.

Mounted only when the server runs an `AlertService` (``aivitals serve --alerts FILE``); without
one the route is absent (404), which the dashboard reads as "no alert engine configured".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from aivitals.alerts import AlertService
from aivitals.server.encoding import JsonResponse

router = APIRouter(tags=["alerts"])


def _when(epoch_s: float | None) -> str | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC).isoformat()


@router.get("/api/v1/alerts", response_class=JsonResponse)
def get_alerts(request: Request) -> JsonResponse:
    """Pending and firing alerts, most severe first, with the engine's delivery status."""
    service: AlertService = request.app.state.alerts
    engine = service.engine
    alerts: list[dict[str, Any]] = []
    status: dict[str, Any] = {}
    if engine is not None:
        for alert in engine.alerts():
            if alert.phase not in ("pending", "firing"):
                continue
            alerts.append(
                {
                    "rule": alert.rule,
                    "phase": alert.phase,
                    "severity": alert.labels.get("severity"),
                    "labels": alert.labels,
                    "value": alert.value,
                    "summary": alert.summary,
                    "since": _when(alert.fired_at or alert.pending_since),
                }
            )
        state = engine.status()
        status = {
            "counters": state.counters,
            "queued": state.queued,
            "given_up": len(state.given_up),
            "rule_errors": state.rule_errors,
        }
    order = {"critical": 0, "warning": 1}
    alerts.sort(key=lambda a: (a["phase"] != "firing", order.get(a["severity"] or "", 2)))
    return JsonResponse({"alerts": alerts, "status": status, "rules_error": service.last_error})
