"""Alerts: rules in YAML, an engine with pending/firing/resolved states, notifiers, and the
same rules as a Prometheus rule file. See docs/alerts.md."""

from aivitals.alerts.engine import AlertEngine, EngineStatus, Finding, Transition
from aivitals.alerts.notifiers import (
    AlertmanagerNotifier,
    DeliveryError,
    MemoryNotifier,
    Notification,
    Notifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifiers,
)
from aivitals.alerts.promql import Export, export_prometheus
from aivitals.alerts.rules import (
    DEFAULT_RULES_PATH,
    Rule,
    RuleFileError,
    RuleSet,
    default_rules_text,
    load_rules,
    parse_rules,
)
from aivitals.alerts.service import AlertService
from aivitals.alerts.state import AlertState, Silence, default_state_path
from aivitals.retry import RetryPolicy

__all__ = [
    "DEFAULT_RULES_PATH",
    "AlertEngine",
    "AlertService",
    "AlertState",
    "AlertmanagerNotifier",
    "DeliveryError",
    "EngineStatus",
    "Export",
    "Finding",
    "MemoryNotifier",
    "Notification",
    "Notifier",
    "PagerDutyNotifier",
    "RetryPolicy",
    "Rule",
    "RuleFileError",
    "RuleSet",
    "Silence",
    "SlackNotifier",
    "Transition",
    "WebhookNotifier",
    "build_notifiers",
    "default_rules_text",
    "default_state_path",
    "export_prometheus",
    "load_rules",
    "parse_rules",
]
