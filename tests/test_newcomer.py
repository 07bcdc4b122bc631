"""A newcomer's first hour as a test: a fresh clone, `make demo`, then every command the demo
prints, run exactly as printed from where `make demo` ran, each exiting 0.

The one step stood in for is the download: `make demo` would create ``.venv`` and pip-install the
clone into it. Here ``.venv`` is made beforehand, offline, with what that install leaves behind
(the clone's ``src`` importable, the dependencies this test runs with, the ``aivitals`` script of
``[project.scripts]``, make's stamp), so make goes straight to ``.venv/bin/aivitals demo``.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.support.realservers import poll

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300


def install_offline(clone: Path) -> None:
    """What ``make demo``'s install step leaves in ``clone/.venv``, without a download."""
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    dependencies = sysconfig.get_paths()["purelib"]
    # The clone's code first; this environment's .pth files (its own aivitals) are not read.
    (site / "_newcomer.pth").write_text(f"{clone / 'src'}\n{dependencies}\n", encoding="utf-8")
    scripts = tomllib.loads((clone / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        script = venv / "bin" / name
        script.write_text(
            f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {function}\n"
            f"sys.exit({function}())\n",
            encoding="utf-8",
        )
        script.chmod(0o755)
    stamp = venv / ".installed"
    stamp.touch()
    later = (clone / "pyproject.toml").stat().st_mtime + 1
    os.utime(stamp, (later, later))


def new_shell_environment() -> dict[str, str]:
    """A fresh shell's: no virtual environment active, no aivitals on the PATH, no AIVITALS_*."""
    here = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != here)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIVITALS_") and key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    return {**env, "PATH": path}


def test_a_fresh_clone_make_demo_and_every_command_it_prints(tmp_path: Path) -> None:
    clone = tmp_path / "aivitals"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    install_offline(clone)
    env = new_shell_environment()

    demo = subprocess.run(
        ["make", "demo"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    printed = [line.strip() for line in demo.stdout.splitlines() if line.startswith("  ")]
    commands = [line for line in printed if "aivitals " in line]
    # Outside an activated venv the printed commands say where aivitals is, so they run as shown.
    assert commands and all(c.startswith(".venv/bin/aivitals ") for c in commands), printed
    [serve] = [c for c in commands if " serve " in c]
    url = re.search(r"open (http://127\.0\.0\.1:\d+/)", demo.stdout)
    assert url, demo.stdout

    for command in commands:
        if command == serve:
            continue
        done = subprocess.run(
            shlex.split(command),
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    # The export holds every call the demo sent (its --since reaches back past the first).
    with (clone / "calls.csv").open(newline="", encoding="utf-8") as exported:
        assert sum(1 for _ in csv.DictReader(exported)) == 50

    with subprocess.Popen(
        shlex.split(serve), cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as server:
        try:

            def ready() -> bool:
                if server.poll() is not None:
                    output = server.stdout.read().decode() if server.stdout else ""
                    raise AssertionError(f"{serve} exited {server.returncode}: {output}")
                try:
                    with urllib.request.urlopen(url.group(1) + "readyz", timeout=2) as reply:
                        return bool(reply.status == 200)
                except OSError:
                    return False

            poll("the printed serve command", ready, timeout_s=60)
            with urllib.request.urlopen(url.group(1), timeout=10) as page:
                assert page.status == 200
            server.send_signal(signal.SIGINT)  # Ctrl-C, as the newcomer stops it
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
