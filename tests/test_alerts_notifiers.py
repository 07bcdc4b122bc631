"""Notifiers against local HTTP receivers (exact payloads) and a real Alertmanager."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aivitals.alerts import (
    AlertEngine,
    AlertmanagerNotifier,
    DeliveryError,
    Notification,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifiers,
    parse_rules,
)
from aivitals.alerts.notifiers.build import NotifierConfigError
from tests.support.alerts import Receiver, receiving
from tests.support.realservers import Alertmanager, need, poll

FIRED = datetime(2026, 11, 24, 10, 5, tzinfo=UTC).timestamp()
ENDED = datetime(2026, 11, 24, 10, 20, 30, tzinfo=UTC).timestamp()

FIRING = Notification(
    status="firing",
    rule="LatencyP95High",
    severity="warning",
    labels={"alertname": "LatencyP95High", "severity": "warning", "model": "gpt-4o"},
    summary="gpt-4o p95 latency is 6120 ms (over 5000 ms)",
    value=6120.5,
    threshold=5000.0,
    op=">",
    window="5m",
    fingerprint="0123456789abcdef",
    starts_at=FIRED,
)
RESOLVED = Notification(**{**FIRING.to_dict(), "status": "resolved", "ends_at": ENDED})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as state:
        yield state


def test_webhook_posts_the_alert_as_json(receiver: Receiver) -> None:
    hook = WebhookNotifier("hook", receiver.url + "/hook", headers={"X-Token": "t0k"})
    hook.send(FIRING)
    hook.send(RESOLVED)
    assert [r.path for r in receiver.received] == ["/hook", "/hook"]
    assert receiver.received[0].headers["x-token"] == "t0k"
    assert receiver.received[0].headers["content-type"] == "application/json"
    alert = {
        "rule": "LatencyP95High",
        "severity": "warning",
        "labels": {"alertname": "LatencyP95High", "severity": "warning", "model": "gpt-4o"},
        "annotations": {},
        "summary": "gpt-4o p95 latency is 6120 ms (over 5000 ms)",
        "value": 6120.5,
        "threshold": 5000.0,
        "op": ">",
        "window": "5m",
        "fingerprint": "0123456789abcdef",
        "starts_at": "2026-11-24T10:05:00.000Z",
        "ends_at": None,
    }
    assert receiver.received[0].body == {
        "version": "1",
        "status": "firing",
        "test": False,
        "repeat": False,
        "alert": alert,
    }
    assert receiver.received[1].body == {
        "version": "1",
        "status": "resolved",
        "test": False,
        "repeat": False,
        "alert": {**alert, "ends_at": "2026-11-24T10:20:30.000Z"},
    }


def test_slack_posts_an_incoming_webhook_message(receiver: Receiver) -> None:
    SlackNotifier("slack", receiver.url + "/services/T/B/X").send(FIRING)
    SlackNotifier("slack", receiver.url + "/services/T/B/X").send(RESOLVED)
    labels = "alertname=LatencyP95High, model=gpt-4o, severity=warning"
    assert receiver.received[0].body == {
        "text": ":warning: [FIRING] LatencyP95High (warning): "
        "gpt-4o p95 latency is 6120 ms (over 5000 ms)",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": ":warning: *[FIRING] LatencyP95High (warning)*\n"
                    "gpt-4o p95 latency is 6120 ms (over 5000 ms)",
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": labels}]},
        ],
    }
    assert (
        receiver.received[1]
        .body["text"]
        .startswith(":white_check_mark: [RESOLVED] LatencyP95High (warning): ")
    )


def test_pagerduty_triggers_and_resolves_with_one_dedup_key(receiver: Receiver) -> None:
    receiver.statuses = [202, 202]
    pager = PagerDutyNotifier("pd", "R0UT1NG", url=receiver.url + "/v2/enqueue")
    pager.send(FIRING)
    pager.send(RESOLVED)
    assert [r.path for r in receiver.received] == ["/v2/enqueue", "/v2/enqueue"]
    assert receiver.received[0].body == {
        "routing_key": "R0UT1NG",
        "event_action": "trigger",
        "dedup_key": "0123456789abcdef",
        "client": "aivitals",
        "payload": {
            "summary": "gpt-4o p95 latency is 6120 ms (over 5000 ms)",
            "source": "aivitals",
            "severity": "warning",
            "timestamp": "2026-11-24T10:05:00.000Z",
            "class": "LatencyP95High",
            "component": "gpt-4o",
            "custom_details": {
                "labels": {
                    "alertname": "LatencyP95High",
                    "severity": "warning",
                    "model": "gpt-4o",
                },
                "value": 6120.5,
                "threshold": 5000.0,
                "op": ">",
                "window": "5m",
                "test": False,
            },
        },
    }
    assert receiver.received[1].body == {
        "routing_key": "R0UT1NG",
        "event_action": "resolve",
        "dedup_key": "0123456789abcdef",
    }


def test_alertmanager_posts_a_v2_alert_list(receiver: Receiver) -> None:
    now = datetime(2026, 11, 24, 10, 6, tzinfo=UTC).timestamp()
    manager = AlertmanagerNotifier("am", receiver.url + "/", clock=lambda: now)
    manager.send(FIRING)
    manager.send(RESOLVED)
    assert [r.path for r in receiver.received] == ["/api/v2/alerts", "/api/v2/alerts"]
    annotations = {
        "summary": "gpt-4o p95 latency is 6120 ms (over 5000 ms)",
        "value": "6120.5",
        "threshold": "5000",
    }
    labels = {"alertname": "LatencyP95High", "severity": "warning", "model": "gpt-4o"}
    assert receiver.received[0].body == [
        {
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-11-24T10:05:00.000Z",
            # Four one-minute refreshes ahead: Alertmanager keeps it that long unless re-sent.
            "endsAt": "2026-11-24T10:10:00.000Z",
        }
    ]
    assert receiver.received[1].body == [
        {
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-11-24T10:05:00.000Z",
            "endsAt": "2026-11-24T10:20:30.000Z",
        }
    ]


def test_a_refusal_or_an_unreachable_receiver_is_a_delivery_error(receiver: Receiver) -> None:
    receiver.statuses = [500]
    with pytest.raises(DeliveryError, match="HTTP 500"):
        WebhookNotifier("hook", receiver.url).send(FIRING)
    with pytest.raises(DeliveryError, match="hook"):
        WebhookNotifier("hook", "http://127.0.0.1:9/nothing-listens", timeout_s=2).send(FIRING)


def test_the_engine_retries_a_refused_webhook_until_it_gets_through(receiver: Receiver) -> None:
    receiver.statuses = [503, 503]
    clock = [FIRED]
    rules = parse_rules(
        f"notifiers: [{{name: hook, type: webhook, url: '{receiver.url}/hook'}}]\n"
        "rules: [{name: Anything, signal: spend, window: today, op: '>=', threshold: 0}]"
    )
    from aivitals.windows import LiveWindows

    engine = AlertEngine(rules, windows=LiveWindows(clock=lambda: clock[0]), clock=lambda: clock[0])
    engine.run_once()  # spend 0 >= 0: fires at once (no `for`); the receiver refuses
    assert engine.status().counters == {"failed_attempts": 1}
    for _ in range(3):
        clock[0] += 60
        engine.deliver()
    assert engine.status().counters == {"failed_attempts": 2, "sent": 1}
    assert [r.body["status"] for r in receiver.received] == ["firing"] * 3


def test_the_engine_waits_as_long_as_a_429_retry_after_asks(receiver: Receiver) -> None:
    receiver.statuses = [429]
    receiver.retry_after = "120"
    clock = [FIRED]
    rules = parse_rules(
        f"notifiers: [{{name: hook, type: webhook, url: '{receiver.url}/hook'}}]\n"
        "rules: [{name: Anything, signal: spend, window: today, op: '>=', threshold: 0}]"
    )
    from aivitals.windows import LiveWindows

    engine = AlertEngine(rules, windows=LiveWindows(clock=lambda: clock[0]), clock=lambda: clock[0])
    engine.run_once()  # refused with Retry-After: 120, not the 1 s of the engine's back-off
    for _ in range(11):
        clock[0] += 10
        engine.deliver()
    assert len(receiver.received) == 1
    clock[0] += 11
    engine.deliver()
    assert len(receiver.received) == 2
    assert engine.status().counters == {"failed_attempts": 1, "sent": 1}


def test_notifiers_are_built_from_the_rule_file_with_secrets_from_the_environment() -> None:
    rules = parse_rules(
        "notifiers:\n"
        "  - {name: pd, type: pagerduty, routing_key: '${PD_KEY}'}\n"
        "  - {name: slack, type: slack, url: 'https://hooks.slack.test/${SLACK_PATH}'}\n"
    )
    built = build_notifiers(rules.notifiers, environ={"PD_KEY": "k3y", "SLACK_PATH": "T/B/X"})
    pd = built["pd"]
    slack = built["slack"]
    assert isinstance(pd, PagerDutyNotifier)
    assert pd.routing_key == "k3y"
    assert pd.url == "https://events.pagerduty.com/v2/enqueue"
    assert isinstance(slack, SlackNotifier)
    assert slack.url == "https://hooks.slack.test/T/B/X"
    with pytest.raises(NotifierConfigError, match="PD_KEY is not set"):
        build_notifiers(rules.notifiers, environ={})


@pytest.mark.slow
def test_a_real_alertmanager_receives_firing_and_resolved_alerts(tmp_path: Path) -> None:
    import time

    binary = need("prometheus-alertmanager")
    with Alertmanager(binary, tmp_path) as manager:
        notifier = AlertmanagerNotifier("am", manager.url)
        now = time.time()
        firing = Notification(**{**FIRING.to_dict(), "starts_at": now})
        notifier.send(firing)

        def ours() -> list[dict[str, Any]]:
            return [a for a in manager.alerts() if a["labels"].get("alertname") == "LatencyP95High"]

        found = poll("the alert in Alertmanager", ours, describe=lambda: str(manager.alerts()))
        assert len(found) == 1
        alert = found[0]
        assert alert["labels"] == FIRING.labels
        assert alert["annotations"]["summary"] == FIRING.summary
        assert alert["status"]["state"] == "active"
        assert alert["fingerprint"]

        # Resolving it: Alertmanager stops listing it as active.
        notifier.send(Notification(**{**firing.to_dict(), "status": "resolved", "ends_at": now}))
        poll(
            "the alert resolved in Alertmanager",
            lambda: (not ours(),),
            describe=lambda: str(manager.alerts()),
        )
        assert ours() == []


@pytest.mark.slow
def test_the_engine_fires_into_a_real_alertmanager_from_the_rule_file(tmp_path: Path) -> None:
    import time

    from aivitals.windows import LiveWindows

    binary = need("prometheus-alertmanager")
    with Alertmanager(binary, tmp_path) as manager:
        rules = parse_rules(
            f"notifiers: [{{name: am, type: alertmanager, url: '{manager.url}'}}]\n"
            "rules:\n"
            "  - {name: AnySpendToday, signal: spend, window: today, op: '>=', threshold: 0,\n"
            "     severity: info, labels: {owner: finance}, summary: 'spent ${value:.2f}'}\n"
        )
        engine = AlertEngine(rules, windows=LiveWindows(), clock=time.time)
        engine.run_once()
        assert engine.status().counters == {"sent": 1}

        def ours() -> list[dict[str, Any]]:
            return [a for a in manager.alerts() if a["labels"].get("alertname") == "AnySpendToday"]

        [alert] = poll("the engine's alert in Alertmanager", ours)
        assert alert["labels"] == {
            "alertname": "AnySpendToday",
            "severity": "info",
            "owner": "finance",
        }
        assert alert["annotations"]["summary"] == "spent $0.00"
