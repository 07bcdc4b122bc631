"""`aivitals serve --redis URL` as a real process: /readyz and /metrics say whether Redis answers
and the policy in effect, and a closed limits policy answers 503 with Retry-After (never a 500)
while Redis is down, through the official openai client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.gateway_processes import MockLlmProcess, ServeProcess
from tests.support.realservers import poll
from tests.support.redis_server import RedisServer


@pytest.fixture
def served(tmp_path: Path, redis_db: str) -> Iterator[ServeProcess]:
    with MockLlmProcess(tmp_path / "mock", "--latency-median-ms", "5") as mock:
        config = tmp_path / "gateway.toml"
        config.write_text(
            f"""
[[upstreams]]
name = "mock"
base_url = "{mock.base_url}"

[limits.per_user]
requests_per_minute = 100

[redis]
limits_on_failure = "closed"
retry_s = 0.1
"""
        )
        with ServeProcess(
            tmp_path / "serve", "--config", str(config), "--redis", redis_db
        ) as serve:
            yield serve


def ask(serve: ServeProcess) -> openai.APIStatusError | None:
    with openai.OpenAI(
        base_url=serve.url + "/v1",
        api_key="sk-test",
        max_retries=0,
        default_headers={"X-Aivitals-User": "ann"},
    ) as client:
        try:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.APIStatusError as exc:
            return exc
    return None


def redis_up(serve: ServeProcess) -> float:
    text = httpx.get(serve.url + "/metrics", timeout=10).text
    (line,) = [line for line in text.splitlines() if line.startswith("aivitals_redis_up ")]
    return float(line.split()[1])


def test_readyz_and_metrics_say_whether_redis_answers_and_the_policy(
    served: ServeProcess, redis_server: RedisServer
) -> None:
    assert ask(served) is None
    ready = httpx.get(served.url + "/readyz", timeout=10).json()
    assert ready["status"] == "ready"
    assert " up; if it goes down: limits fail closed" in ready["checks"]["redis"]
    assert redis_up(served) == 1
    redis_server.stop()
    refused = ask(served)
    assert refused is not None and refused.status_code == 503
    assert refused.response.headers["retry-after"] == "1"
    assert "limits_on_failure = closed" in refused.response.text
    # OpenAI's error shape, and counted as a refusal like any other.
    assert refused.response.json()["error"]["code"] == "limits_unavailable"
    scraped = httpx.get(served.url + "/metrics", timeout=10).text
    assert 'aivitals_gateway_refusals_total{reason="limits_unavailable"} 1.0' in scraped
    ready = httpx.get(served.url + "/readyz", timeout=10).json()
    assert ready["status"] == "ready"  # degraded, not out of the load balancer
    assert " down (" in ready["checks"]["redis"]
    assert "in effect: limits fail closed" in ready["checks"]["redis"]
    assert redis_up(served) == 0
    redis_server.start()
    poll("Redis back for the server", lambda: redis_up(served) == 1)
    assert ask(served) is None
