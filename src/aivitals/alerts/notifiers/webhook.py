"""A generic JSON webhook: the notification as it is, with a version to build on."""

from __future__ import annotations

from typing import Any

from aivitals.alerts.notifiers.base import HttpNotifier, Notification, iso


def webhook_payload(notification: Notification) -> dict[str, Any]:
    """``{"version": "1", "status", "alert": {...}}``; times are RFC 3339 (UTC)."""
    n = notification
    return {
        "version": "1",
        "status": n.status,
        "test": n.test,
        "repeat": n.repeat,
        "alert": {
            "rule": n.rule,
            "severity": n.severity,
            "labels": dict(n.labels),
            "annotations": dict(n.annotations),
            "summary": n.summary,
            "value": n.value,
            "threshold": n.threshold,
            "op": n.op,
            "window": n.window,
            "fingerprint": n.fingerprint,
            "starts_at": iso(n.starts_at),
            "ends_at": iso(n.ends_at) if n.ends_at is not None else None,
        },
    }


class WebhookNotifier(HttpNotifier):
    """POSTs `webhook_payload` to any URL."""

    def payload(self, notification: Notification) -> Any:
        return webhook_payload(notification)
