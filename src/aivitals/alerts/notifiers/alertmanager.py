"""Prometheus Alertmanager, API v2: ``POST /api/v2/alerts`` with a list of one alert.

Alertmanager resolves an alert nobody re-sends once its ``endsAt`` passes, so a firing alert is
sent with ``endsAt`` four refreshes ahead and re-sent every `refresh_s` (as Prometheus does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from aivitals.alerts.notifiers.base import HttpNotifier, Notification, iso

REFRESH_S = 60.0


def alertmanager_payload(notification: Notification, *, now: float) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts``: labels, annotations, startsAt and endsAt."""
    n = notification
    annotations = {"summary": n.summary, **n.annotations}
    if n.value is not None:
        annotations["value"] = f"{n.value:g}"
    annotations["threshold"] = f"{n.threshold:g}"
    ends = n.ends_at if n.status == "resolved" and n.ends_at is not None else now + 4 * REFRESH_S
    return [
        {
            "labels": dict(n.labels),
            "annotations": annotations,
            "startsAt": iso(n.starts_at),
            "endsAt": iso(ends),
        }
    ]


class AlertmanagerNotifier(HttpNotifier):
    """POSTs `alertmanager_payload` to ``{url}/api/v2/alerts``."""

    refresh_s: float | None = REFRESH_S

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, url, headers=headers, timeout_s=timeout_s, transport=transport)
        self._clock = clock

    def target(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"

    def payload(self, notification: Notification) -> Any:
        return alertmanager_payload(notification, now=self._clock())
