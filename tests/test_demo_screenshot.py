"""The README's dashboard picture comes from the command its caption names.

Runs that command (`aivitals demo ...`, as typed in an activated virtual environment) in an empty
folder, then the serve command the demo prints, opens the dashboard in headless Chromium and
checks it shows what the picture does: every call the caption's command sent, spread over the
day. `AIVITALS_RETAKE_SCREENSHOTS=1` writes the picture itself (docs/img/demo-dashboard.png);
otherwise it goes to a temporary folder, so a test run leaves the tree as it was.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.realservers import need, poll
from tests.test_dashboard_browser import CHROMIUM_FLAGS, TIMEOUT_MS, loaded

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CAPTION = re.compile(r"!\[the aivitals dashboard after `(aivitals demo[^`]*)`\]\(([^)]+\.png)\)")


def test_the_readme_picture_is_what_its_caption_command_serves(tmp_path: Path) -> None:
    found = CAPTION.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert found, "README.md has no picture captioned with the aivitals demo command"
    command, picture = found.group(1), found.group(2)
    sent = re.search(r"--calls[ =](\d+)", command)
    calls = int(sent.group(1)) if sent else 50  # the demo's default
    chromium = need("chromium")
    # An activated virtual environment: `aivitals` is on the PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env = {key: value for key, value in env.items() if not key.startswith("AIVITALS_")}
    demo = subprocess.run(
        shlex.split(command),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    [serve] = [
        line.strip() for line in demo.stdout.splitlines() if line.startswith("  aivitals serve ")
    ]
    url = re.search(r"open (http://127\.0\.0\.1:\d+/)", demo.stdout)
    assert url, demo.stdout
    target = (
        REPO / picture
        if os.environ.get("AIVITALS_RETAKE_SCREENSHOTS") == "1"
        else tmp_path / "shot.png"
    )

    with subprocess.Popen(
        shlex.split(serve),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:

            def ready() -> bool:
                assert server.poll() is None, f"{serve} exited {server.returncode}"
                try:
                    with urllib.request.urlopen(url.group(1) + "readyz", timeout=2) as reply:
                        return bool(reply.status == 200)
                except OSError:
                    return False

            poll("the printed serve command", ready, timeout_s=60)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
                )
                try:
                    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
                    page.set_default_timeout(TIMEOUT_MS)
                    page.goto(url.group(1))
                    loaded(page, 1)
                    assert page.get_by_test_id("kpi-calls").inner_text() == f"{calls:,}"
                    # A day of traffic: calls in most hours of the default range (the last 24 h).
                    busy: int = page.evaluate(
                        """() => { const t = document.getElementById('chart-volume').data[0];
                                   return t.y.filter(v => v > 0).length; }"""
                    )
                    assert busy >= 20, busy
                    page.screenshot(path=str(target))
                finally:
                    browser.close()
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
