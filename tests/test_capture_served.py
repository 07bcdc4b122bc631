"""Content capture in a real `aivitals serve` (its `--config` file's ``[capture]``), proxying to a
real `aivitals mock-llm` process: a streamed answer is captured assembled and redacted, shown by
the read API's call detail beside the evaluators' scores; a server without ``[capture]`` keeps
no content and shows none.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .support.gateway_processes import MockLlmProcess, ServeProcess
from .support.realservers import poll

pytestmark = pytest.mark.slow

PROMPT = "I am EMP-4821, card 4111 1111 1111 1111: what do I owe?"


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLlmProcess]:
    flags = ("--latency-median-ms", "5", "--ttft-median-ms", "2", "--latency-sigma", "0")
    with MockLlmProcess(tmp_path_factory.mktemp("mock"), *flags) as process:
        yield process


def serve(workdir: Path, mock: MockLlmProcess, capture: str) -> ServeProcess:
    config = workdir / "gateway.toml"
    config.write_text(f'[[upstreams]]\nname = "mock"\nbase_url = "{mock.base_url}"\n\n{capture}')
    return ServeProcess(workdir, "--config", str(config))


def detail(process: ServeProcess, test_id: str) -> dict[str, Any]:
    """The call detail of the call tagged ``test_id``, once its evaluator scores are stored."""
    call = process.call_tagged(test_id)

    def scored() -> list[dict[str, Any]]:
        reply = process.client.get(f"{process.url}/api/v1/calls/{call['id']}")
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        return [body] if any(s["source"] == "evaluator" for s in body["scores"]) else []

    (found,) = poll("the call's evaluator scores", scored)
    shown: dict[str, Any] = found
    return shown


def chat_stream(process: ServeProcess, test_id: str) -> str:
    client = openai.OpenAI(base_url=f"{process.url}/v1", api_key="sk-client", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers={"X-Mock-Answer": "iban", "X-Aivitals-Tag-Test": test_id},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    client.close()
    return text


def test_captured_stream_is_assembled_redacted_and_shown(
    mock: MockLlmProcess, tmp_path: Path
) -> None:
    capture = '[capture]\nenabled = true\nretention_days = 3\nredact_patterns = ["EMP-\\\\d{4}"]\n'
    with serve(tmp_path, mock, capture) as process:
        test_id = uuid.uuid4().hex
        said = chat_stream(process, test_id)
        assert "DE89 3704 0044 0532 0130 00" in said  # the client got the answer untouched
        body = detail(process, test_id)
    content = body["content"]
    assert content["messages"] == [
        {"role": "user", "text": "I am [redacted], card [card]: what do I owe?"}
    ]
    assert content["output_text"] == "Please wire the amount to [iban] by Friday."
    assert content["redactions"] == 3
    scores = {s["name"]: s["value"] for s in body["scores"] if s["source"] == "evaluator"}
    assert scores["pii_leak"] == 1.0 and scores["empty"] == 0.0


def test_without_capture_no_content(mock: MockLlmProcess, tmp_path: Path) -> None:
    with serve(tmp_path, mock, "") as process:
        test_id = uuid.uuid4().hex
        chat_stream(process, test_id)
        body = detail(process, test_id)
    assert body["content"] is None
    # The evaluators ran all the same: they need no capture.
    assert {s["name"] for s in body["scores"]} >= {"empty", "pii_leak"}
