"""Notifiers: generic webhook, Slack, PagerDuty Events v2, Prometheus Alertmanager v2."""

from aivitals.alerts.notifiers.alertmanager import AlertmanagerNotifier, alertmanager_payload
from aivitals.alerts.notifiers.base import (
    DeliveryError,
    HttpNotifier,
    MemoryNotifier,
    Notification,
    Notifier,
)
from aivitals.alerts.notifiers.build import build_notifiers
from aivitals.alerts.notifiers.pagerduty import PagerDutyNotifier, pagerduty_payload
from aivitals.alerts.notifiers.slack import SlackNotifier, slack_payload
from aivitals.alerts.notifiers.webhook import WebhookNotifier, webhook_payload

__all__ = [
    "AlertmanagerNotifier",
    "DeliveryError",
    "HttpNotifier",
    "MemoryNotifier",
    "Notification",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "alertmanager_payload",
    "build_notifiers",
    "pagerduty_payload",
    "slack_payload",
    "webhook_payload",
]
