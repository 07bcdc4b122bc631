"""The openai client's own retries: one recorded call is one client request (README, "One call is
one client request"), over the real client and the fake upstream."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import aivitals
from aivitals.mock_llm import MockConfig, MockServer

from .conftest import Recorded

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=1)) as server:
        yield server


def _rate_limit_the_first_attempt(request: Any) -> None:  # the client's own httpx Request
    # The client numbers its attempts in this header; only the first is told to fail (429 with
    # Retry-After: 1), so the client's retry succeeds.
    if request.headers.get("x-stainless-retry-count") == "0":
        request.headers["X-Mock-Error"] = "rate_limit"


def test_a_retried_request_is_one_call_with_the_last_attempts_outcome_and_the_whole_wait(
    upstream: MockServer, recorded: Recorded
) -> None:
    # The client's own HTTP client class, whichever httpx this openai release is built on.
    http = openai.DefaultHttpxClient(event_hooks={"request": [_rate_limit_the_first_attempt]})
    with openai.OpenAI(
        base_url=upstream.base_url, api_key="sk-test", max_retries=2, http_client=http
    ) as client:
        aivitals.instrument(client).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"X-Mock-Latency-Ms": "5"},
        )
    attempts = [r for r in upstream.requests() if r["path"] == "/v1/chat/completions"]
    assert len(attempts) == 2
    (call,) = recorded.calls()
    assert (call.status, call.error_type) == ("ok", None)
    # The latency holds the client's wait before its retry: the upstream's Retry-After of 1 s.
    assert call.latency_ms >= 1000.0


def test_the_readme_says_what_one_call_is() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert re.search(r"one call is one client request", text, re.IGNORECASE)
    assert "max_retries=0" in text
