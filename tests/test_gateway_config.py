"""The gateway's config file, and ``aivitals serve --upstream`` / ``--config`` for real."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.config import ConfigError
from aivitals.gateway.budgets import Budget
from aivitals.gateway.config import load_gateway_config, parse_gateway_config
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.query import Queries, parse_since
from aivitals.store.sql import SqlStore
from tests.test_server_serve import start

FULL = """
timezone = "Europe/Paris"

[[upstreams]]
name = "mock"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "MOCK_KEY"
models = ["gpt-4o-mini"]
timeout_s = 30

[[keys]]
name = "search"
secret_env = "SEARCH_SECRET"
team = "search"
requests_per_minute = 10

[limits.per_user]
requests_per_minute = 5
[limits.teams.search]
tokens_per_minute = 1000

[[budgets]]
team = "search"
per = "day"
usd = 50
[[budgets]]
each = "user"
per = "month"
usd = 5

[cache]
routes = ["embeddings"]
ttl_s = 60
max_mb = 1
"""


def test_a_full_config_builds_every_part(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(FULL)
    config = load_gateway_config(path)
    upstreams = config.build_upstreams()
    assert upstreams.route("gpt-4o-mini") is not None and upstreams.route("gpt-4o") is None
    keys = config.build_keys({"SEARCH_SECRET": "sk-gw-0123456789abcdef"})
    key = keys.authenticate("Bearer sk-gw-0123456789abcdef")
    assert key is not None and (key.team, key.requests_per_minute) == ("search", 10)
    policy = config.build_policy()
    assert policy.per_user == (5, None) and policy.per_team == {"search": (None, 1000)}
    assert config.build_budgets().budgets == (
        Budget(scope="team", value="search", period="day", usd=Decimal(50)),
        Budget(scope="user", period="month", usd=Decimal(5)),
    )
    cache, routes = config.build_cache()
    assert cache is not None and cache.max_bytes == 1024 * 1024 and routes == {"embeddings"}


def test_the_same_config_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "upstreams:\n  - name: mock\n    base_url: http://127.0.0.1:9/v1\n"
        "budgets:\n  - feature: chat\n    per: day\n    usd: 1.5\n"
    )
    config = load_gateway_config(path)
    assert config.build_budgets().budgets[0] == Budget(
        scope="feature", value="chat", period="day", usd=Decimal("1.5")
    )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"upstreams": [{"name": "x", "base_url": "ftp://x"}]}, "base_url must start with http"),
        ({"upstreams": [{"name": "x"}]}, "upstreams.0.base_url: Field required"),
        ({"budgets": [{"per": "day", "usd": 5}]}, "name exactly one of user, team, feature"),
        ({"budgets": [{"team": "a", "per": "week", "usd": 5}]}, "budgets.0.per"),
        ({"budgets": [{"team": "a", "per": "day", "usd": 0}]}, "budgets.0.usd"),
        ({"keys": [{"name": "k", "secret": "short", "team": "a"}]}, "keys.0.secret"),
        ({"keys": [{"name": "k", "team": "a"}]}, "exactly one of secret_env"),
        ({"cache": {"routes": ["images"]}}, "cache.routes.0"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"upstream": []}, "upstream: Extra inputs are not permitted"),
    ],
)
def test_a_config_mistake_is_one_line_naming_the_key(raw: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_gateway_config(raw, origin="gw.toml")
    message = str(error.value)
    assert message.startswith("gw.toml: ") and says in message and "\n" not in message


def test_a_key_whose_variable_is_unset_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(FULL)
    with pytest.raises(ConfigError, match="environment variable SEARCH_SECRET is not set"):
        load_gateway_config(path).build_keys({})


def test_serve_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[[upstreams]]\nname = 1\n")
    result = CliRunner().invoke(app, ["serve", "--no-db", "--config", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: upstreams.0.name")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = CliRunner().invoke(app, ["serve", "--no-db", "--config", str(empty)])
    assert result.exit_code == 2 and "no [[upstreams]]: add one, or pass --upstream URL" in (
        result.output
    )


@pytest.mark.slow
def test_serve_upstream_quick_start_passes_the_client_key_and_records(tmp_path: Path) -> None:
    db = tmp_path / "aivitals.db"
    with MockServer(MockConfig(latency_median_ms=5, api_key="sk-client-own")) as upstream:
        process, url = start("--db", str(db), "--upstream", upstream.base_url)
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-client-own", max_retries=0)
            reply = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"X-Aivitals-Feature": "quick"},
            )
            # The upstream checks the key: only the client's own key, passed through, opens it.
            stranger = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-other", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                stranger.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            assert reply.usage is not None
            assert httpx.get(f"{url}/readyz").json()["checks"]["upstreams"] == "ok"
            metrics = httpx.get(f"{url}/metrics").text
            assert 'aivitals_requests_total{error_type="",model="gpt-4o-mini"' in metrics
            assert "_created" not in metrics
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            assert process.stderr is not None
            process.stderr.close()
    store = SqlStore.open(db)
    try:
        stored, refused = sorted(
            Queries(store.engine).calls(parse_since("1h", now=datetime.now(UTC))),
            key=lambda c: c.call.id,
        )
    finally:
        store.close()
    assert (refused.call.error_type, refused.call.http_status) == ("auth", 401)
    assert stored.call.feature == "quick"
    assert stored.call.output_tokens == reply.usage.completion_tokens
    with open(db, "rb") as raw:
        assert b"sk-client-own" not in raw.read()  # the client's key is never stored


@pytest.mark.slow
def test_serve_with_a_config_file_enforces_its_keys(tmp_path: Path) -> None:
    with MockServer(MockConfig(latency_median_ms=5)) as upstream:
        path = tmp_path / "gateway.toml"
        path.write_text(
            f'[[upstreams]]\nname = "mock"\nbase_url = "{upstream.base_url}"\n'
            '[[keys]]\nname = "k"\nsecret_env = "TEST_GW_SECRET"\nteam = "search"\n'
        )
        os.environ["TEST_GW_SECRET"] = "sk-gw-secret-0123456789"
        try:
            process, url = start("--no-db", "--config", str(path))
        finally:
            del os.environ["TEST_GW_SECRET"]
        try:
            good = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-gw-secret-0123456789")
            assert good.models.list().data
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(
                    base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0
                ).chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            assert upstream.stats()["endpoints"].get("/v1/chat/completions", 0) == 0
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            assert process.stderr is not None
            process.stderr.close()
