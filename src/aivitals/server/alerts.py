"""``GET /api/v1/alerts``: the alert engine's active alerts and its delivery health; silences.

Mounted only when the server runs an `AlertService` (``aivitals serve --alerts FILE``); without
one the route is absent (404), which the dashboard reads as "no alert engine configured".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from aivitals.alerts import AlertEngine, AlertService, Silence
from aivitals.alerts.rules import parse_duration
from aivitals.alerts.service import AlertsUnavailable
from aivitals.server.encoding import JsonResponse
from aivitals.server.errors import ApiError, bad_field

router = APIRouter(tags=["alerts"])


def _when(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    try:
        return datetime.fromtimestamp(epoch_s, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        # A time no date holds (saved by an older version): shown as unknown, never a 500.
        return None


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


class SilenceIn(BaseModel):
    """Hold back notifications of the alerts whose labels equal every matcher, for a while."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    matchers: dict[str, str] = Field(min_length=1, examples=[{"alertname": "ErrorRateHigh"}])
    duration: str = Field(
        alias="for",
        examples=["2h"],
        max_length=32,
        description="How long: 5m, 1h, 1d, 2w...; from 1m to 366d (a year).",
    )
    comment: str = Field(default="", max_length=4096)


def _engine(request: Request) -> AlertEngine:
    engine = request.app.state.alerts.engine
    if engine is None:
        raise ApiError(503, "the alert engine has no rules loaded yet")
    assert isinstance(engine, AlertEngine)
    return engine


def _silence_json(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": silence.matchers,
        "starts_at": _when(silence.starts_at),
        "ends_at": _when(silence.ends_at),
        "comment": silence.comment,
    }


@router.get("/api/v1/alerts/silences", response_class=JsonResponse)
def get_silences(request: Request) -> JsonResponse:
    """The silences not yet ended."""
    return JsonResponse({"silences": [_silence_json(s) for s in _engine(request).silences()]})


@router.post("/api/v1/alerts/silences", response_class=JsonResponse, status_code=201)
def post_silence(request: Request, silence: SilenceIn) -> JsonResponse:
    """Silence matching alerts from now for ``for``: they keep their state, unnotified."""
    engine = _engine(request)
    service: AlertService = request.app.state.alerts
    try:
        seconds = parse_duration(silence.duration)
        now = engine.clock()
        # Through the service: on a worker that does not evaluate, it goes to the one that does.
        made = service.silence(
            silence.matchers, starts_at=now, ends_at=now + seconds, comment=silence.comment
        )
    except ValueError as exc:
        raise ApiError(
            422, f"invalid request: for: {exc}", fields=[bad_field("for", str(exc))]
        ) from None
    except AlertsUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    return JsonResponse(_silence_json(made), status_code=201)


@router.delete("/api/v1/alerts/silences/{silence_id}", status_code=204)
def delete_silence(request: Request, silence_id: str) -> Response:
    """End a silence now."""
    _engine(request)
    service: AlertService = request.app.state.alerts
    try:
        ended = service.unsilence(silence_id)
    except AlertsUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    if not ended:
        raise ApiError(404, f"no silence {silence_id!r}")
    return Response(status_code=204)
