"""docker-compose.yml and the Dockerfile, checked without a container runtime (none can pull here).

The compose file parses; every service is the one the deployment needs, pinned; aivitals' command
uses only options ``aivitals serve --help`` lists, on the port the others reach it at; every file
it mounts exists. Then the compose command itself, pointed at a real Redis and PostgreSQL, starts
a real server, and the Dockerfile's CMD and HEALTHCHECK run against a real one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from .support.deploy import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    GATEWAY_CONFIG,
    ROOT,
    SERVE_PORT,
    flags,
    help_options,
    load_yaml,
    runnable_here,
)
from .support.gateway_processes import AIVITALS
from .support.realservers import free_port, poll

SERVICES = {"aivitals", "postgres", "redis", "prometheus", "alertmanager", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


def published(service: dict[str, Any]) -> dict[str, str]:
    """Container port -> the host port (or range) it is published on."""
    ports = {}
    for mapping in service.get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        ports[container] = host
    return ports


def test_the_compose_file_has_the_services_of_the_deployment_each_pinned(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    assert services["aivitals"]["build"] == "."
    for name in SERVICES - {"aivitals"}:
        image = services[name]["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)


def aivitals_command(compose: dict[str, Any]) -> list[str]:
    command = compose["services"]["aivitals"]["command"]
    assert isinstance(command, list)
    assert all(isinstance(arg, str) for arg in command), "quote numbers: compose passes strings"
    return command


def test_the_aivitals_command_uses_only_options_serve_has(compose: dict[str, Any]) -> None:
    command = aivitals_command(compose)
    assert command[0] == "serve"
    given = flags(command[1:])
    assert set(given) <= help_options("serve"), set(given) - help_options("serve")
    assert given["--host"] == "0.0.0.0"  # a container listens on every interface of its own
    assert given["--port"] == SERVE_PORT
    assert SERVE_PORT in published(compose["services"]["aivitals"])


def test_aivitals_reaches_the_compose_redis_and_postgresql(compose: dict[str, Any]) -> None:
    services = compose["services"]
    aivitals = services["aivitals"]
    given = flags(aivitals_command(compose)[1:])
    redis = urlsplit(str(given["--redis"]))
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    store = urlsplit(aivitals["environment"]["AIVITALS_STORE"])
    postgres = services["postgres"]["environment"]
    assert store.scheme == "postgresql+psycopg"
    assert (store.hostname, store.port) == ("postgres", 5432)
    assert store.username == postgres["POSTGRES_USER"]
    assert store.password == postgres["POSTGRES_PASSWORD"]
    assert store.path == "/" + postgres["POSTGRES_DB"]
    # Several processes count limits and budgets together only through Redis.
    assert int(str(given["--workers"])) * aivitals["deploy"]["replicas"] > 1
    assert {"postgres", "redis"} <= set(aivitals["depends_on"])


def test_every_file_the_compose_mounts_exists(compose: dict[str, Any]) -> None:
    mounted = []
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                mounted.append(source)
                assert (ROOT / source).exists(), source
    assert "./deploy/prometheus" in mounted


def test_the_gateway_config_mounted_is_the_one_serve_is_told_to_read(
    compose: dict[str, Any],
) -> None:
    given = flags(aivitals_command(compose)[1:])
    mounts = dict(
        reversed(volume.split(":")[:2]) for volume in compose["services"]["aivitals"]["volumes"]
    )
    assert (ROOT / mounts[str(given["--config"])]).resolve() == GATEWAY_CONFIG


@pytest.mark.slow
def test_the_compose_command_starts_a_server_on_a_real_redis_and_postgresql(
    compose: dict[str, Any], tmp_path: Path, redis_url: str, postgresql_db_url: str
) -> None:
    port = free_port()
    args = runnable_here(
        aivitals_command(compose),
        port=port,
        replace={"--redis": redis_url, "--config": str(GATEWAY_CONFIG)},
    )
    env = {**os.environ, "AIVITALS_STORE": postgresql_db_url, "OPENAI_API_KEY": "sk-test-key"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [AIVITALS, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
    )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text())
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        poll("the compose command's server ready", ready)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
    assert process.returncode == 0, (tmp_path / "serve.log").read_text()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), arguments
    return [str(arg) for arg in parsed]


def test_the_image_is_slim_runs_as_a_user_and_serves_with_real_options() -> None:
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for name, args in instructions if name == "FROM"]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    users = [args for name, args in instructions if name == "USER"]
    assert users, "no USER: the server would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    (entrypoint,) = [exec_form(args) for name, args in instructions if name == "ENTRYPOINT"]
    (command,) = [exec_form(args) for name, args in instructions if name == "CMD"]
    assert entrypoint == ["aivitals"]
    assert command[0] == "serve"
    given = flags(command[1:])
    assert set(given) <= help_options("serve")
    assert given["--host"] == "0.0.0.0"  # a container listens on every interface of its own
    assert given["--port"] == SERVE_PORT
    assert ("EXPOSE", SERVE_PORT) in instructions


def test_the_dockerignore_lets_through_everything_the_image_copies() -> None:
    kept = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [
        source.rstrip("/")
        for name, args in dockerfile_instructions()
        if name == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert copied
    assert set(copied) <= kept, set(copied) - kept


def healthcheck_command() -> list[str]:
    (healthcheck,) = [args for name, args in dockerfile_instructions() if name == "HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval" in options
    return exec_form(command)


def test_the_healthcheck_asks_liveness_on_the_served_port() -> None:
    command = " ".join(healthcheck_command())
    assert f"http://127.0.0.1:{SERVE_PORT}/healthz" in command


@pytest.mark.slow
def test_the_healthcheck_passes_against_a_real_server_and_fails_without_one(
    tmp_path: Path,
) -> None:
    instructions = dockerfile_instructions()
    (command,) = [exec_form(args) for name, args in instructions if name == "CMD"]
    port = free_port()
    args = runnable_here(command, port=port, replace={})
    check = [
        sys.executable if arg == "python" else arg.replace(f":{SERVE_PORT}/", f":{port}/")
        for arg in healthcheck_command()
    ]
    down = subprocess.run(check, capture_output=True, timeout=60, check=False)
    assert down.returncode != 0, "the health check passed with nothing listening"
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [AIVITALS, *args, "--db", str(tmp_path / "aivitals.db")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text())
            done = subprocess.run(check, capture_output=True, timeout=60, check=False)
            return done.returncode == 0

        poll(f"the image's health check ({shlex.join(check)})", healthy)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def test_the_deploy_folder_holds_what_the_compose_file_needs() -> None:
    for path in (
        "prometheus/prometheus.yml",
        "prometheus/aivitals-rules.yml",
        "alertmanager/alertmanager.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/aivitals.yml",
        "grafana/dashboards/aivitals.json",
        "aivitals/gateway.toml",
    ):
        assert (DEPLOY / path).is_file(), path
