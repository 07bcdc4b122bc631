"""PagerDuty Events API v2: trigger on firing, resolve on resolved, one incident per dedup key."""

from __future__ import annotations

from typing import Any

import httpx

from aivitals.alerts.notifiers.base import HttpNotifier, Notification, iso

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# PagerDuty's severities are critical, error, warning and info.
_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def pagerduty_payload(notification: Notification, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event; the alert's fingerprint is the dedup key."""
    n = notification
    if n.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": n.fingerprint}
    payload: dict[str, Any] = {
        "summary": n.summary[:1024],
        "source": "aivitals",
        "severity": _SEVERITY.get(n.severity, "warning"),
        "timestamp": iso(n.starts_at),
        "class": n.rule,
        "custom_details": {
            "labels": dict(n.labels),
            "value": n.value,
            "threshold": n.threshold,
            "op": n.op,
            "window": n.window,
            "test": n.test,
        },
    }
    if n.labels.get("model"):
        payload["component"] = n.labels["model"]
    if n.labels.get("feature"):
        payload["group"] = n.labels["feature"]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.fingerprint,
        "client": "aivitals",
        "payload": payload,
    }


class PagerDutyNotifier(HttpNotifier):
    """POSTs `pagerduty_payload` to the Events API (``url`` overrides it, for tests)."""

    def __init__(
        self,
        name: str,
        routing_key: str,
        *,
        url: str = EVENTS_URL,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(name, url, headers=headers, timeout_s=timeout_s, transport=transport)
        self.routing_key = routing_key

    def payload(self, notification: Notification) -> Any:
        return pagerduty_payload(notification, self.routing_key)
