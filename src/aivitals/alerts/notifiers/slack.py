"""Slack incoming webhooks: ``text`` for notifications and clients, ``blocks`` for the channel."""

from __future__ import annotations

from typing import Any

from aivitals.alerts.notifiers.base import HttpNotifier, Notification

_ICONS = {"critical": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}


def slack_payload(notification: Notification) -> dict[str, Any]:
    """An incoming-webhook message: a one-line ``text`` and a section with the labels."""
    n = notification
    icon = ":white_check_mark:" if n.status == "resolved" else _ICONS.get(n.severity, ":bell:")
    head = f"[{n.status.upper()}{' TEST' if n.test else ''}] {n.rule} ({n.severity})"
    labels = ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items()))
    return {
        "text": f"{icon} {head}: {n.summary}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{icon} *{head}*\n{n.summary}"},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": labels}]},
        ],
    }


class SlackNotifier(HttpNotifier):
    """POSTs `slack_payload` to a Slack incoming-webhook URL."""

    def payload(self, notification: Notification) -> Any:
        return slack_payload(notification)
