"""``aivitals serve --alerts``: the engine runs in the server, notifies, shows its alerts over
HTTP, and reloads its rules on SIGHUP."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from aivitals.alerts import AlertService
from aivitals.query import Queries
from aivitals.server import create_app
from tests.support.alerts import receiving
from tests.support.server_app import call_json, served_at
from tests.test_server_serve import AIVITALS, start

RULES = """
interval: 1s
notifiers:
  - name: hook
    type: webhook
    url: {url}
rules:
  - name: ErrorsAbove
    signal: error_rate
    window: 15m
    op: ">"
    threshold: {threshold}
    severity: critical
    for: 0s
    summary: "error rate is {{value:.2f}}"
"""


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_serve_runs_the_rules_notifies_and_reloads_on_sighup(tmp_path: Path) -> None:
    with receiving() as hook:
        rules = tmp_path / "alerts.yaml"
        rules.write_text(RULES.format(url=hook.url, threshold=0.25))
        process, url = start("--db", str(tmp_path / "a.db"), "--alerts", str(rules))
        try:
            now = datetime.now(UTC).isoformat()
            failed = {"status": "error", "error_type": "rate_limit"}
            calls = [call_json(started_at=now, **(failed if i < 4 else {})) for i in range(10)]
            assert httpx.post(f"{url}/api/v1/calls", json={"calls": calls}).status_code == 202

            def firing() -> bool:
                alerts = httpx.get(f"{url}/api/v1/alerts").json()["alerts"]
                return [a["phase"] for a in alerts] == ["firing"]

            wait_until(firing, "the alert to fire")
            (alert,) = httpx.get(f"{url}/api/v1/alerts").json()["alerts"]
            assert (alert["rule"], alert["severity"]) == ("ErrorsAbove", "critical")
            assert alert["value"] == pytest.approx(0.4)  # 4 errors in 10 calls
            wait_until(lambda: len(hook.received) >= 1, "the webhook")
            assert "ErrorsAbove" in str(hook.received[0].body)

            # Raise the threshold above the error rate and ask for a reload: it resolves.
            rules.write_text(RULES.format(url=hook.url, threshold=0.9))
            process.send_signal(signal.SIGHUP)
            wait_until(
                lambda: httpx.get(f"{url}/api/v1/alerts").json()["alerts"] == [], "the resolve"
            )
            wait_until(lambda: len(hook.received) >= 2, "the resolve notification")
            assert len(hook.received) == 2  # one firing, one resolve: no storm
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            assert process.stderr is not None
            process.stderr.close()


def test_serve_refuses_a_bad_rule_file_in_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text("rules:\n  - name: X\n    signal: nonsense\n")
    process = subprocess.run(
        [AIVITALS, "serve", "--no-db", "--port", "0", "--alerts", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and str(rules) in lines[0] and "signal" in lines[0]


def test_silences_over_http_hold_back_notifications(tmp_path: Path) -> None:
    with receiving() as hook, served_at(tmp_path / "a.db") as served:
        rules = tmp_path / "alerts.yaml"
        rules.write_text(RULES.format(url=hook.url, threshold=0.25))
        assert served.store is not None
        service = AlertService(
            rules, queries=Queries(served.store.engine), state_path=tmp_path / "state.json"
        )
        service.start()
        try:
            client = TestClient(
                create_app(runtime=served.runtime, store=served.store, alerts=service)
            )
            refused = client.post(
                "/api/v1/alerts/silences", json={"matchers": {"alertname": "X"}, "for": "soon"}
            )
            assert refused.status_code == 422 and refused.json()["fields"][0]["field"] == "for"
            assert (
                client.post(
                    "/api/v1/alerts/silences", json={"matchers": {}, "for": "1h"}
                ).status_code
                == 422
            )
            made = client.post(
                "/api/v1/alerts/silences",
                json={"matchers": {"alertname": "ErrorsAbove"}, "for": "1h", "comment": "known"},
            )
            assert made.status_code == 201
            silence = made.json()
            assert [s["id"] for s in client.get("/api/v1/alerts/silences").json()["silences"]] == [
                silence["id"]
            ]

            now = datetime.now(UTC).isoformat()
            failed = {"status": "error", "error_type": "rate_limit"}
            calls = [call_json(started_at=now, **(failed if i < 4 else {})) for i in range(10)]
            assert client.post("/api/v1/calls", json={"calls": calls}).status_code == 202
            assert served.runtime.recorder.flush()

            def firing() -> bool:
                service.run_now()
                alerts = client.get("/api/v1/alerts").json()["alerts"]
                return [a["phase"] for a in alerts] == ["firing"]

            wait_until(firing, "the alert to fire")
            assert hook.received == []  # firing, but silenced

            assert client.delete(f"/api/v1/alerts/silences/{silence['id']}").status_code == 204
            assert client.delete(f"/api/v1/alerts/silences/{silence['id']}").status_code == 404
            service.run_now()
            wait_until(lambda: len(hook.received) == 1, "the notification once unsilenced")
        finally:
            service.stop()
