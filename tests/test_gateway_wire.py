"""The gateway's edges on the wire: `aivitals serve` and `aivitals mock-llm` as real processes.

Each test speaks HTTP/1.1 to a real socket (h11 when framing matters, httpx otherwise) and asserts
what the client got back, what reached the upstream (the mock records the headers it received,
``GET /mock/requests``) and what the store then holds (the read API).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aivitals.mock_llm.faults import MALFORMED_EVENT

from .support.gateway_processes import MockLlmProcess, ServeProcess, Wire
from .support.realservers import poll

pytestmark = pytest.mark.slow

GATEWAY_KEY = "sk-gw-wire-0123456789abcdef"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
JSON = ("content-type", "application/json")


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLlmProcess]:
    workdir = tmp_path_factory.mktemp("mock")
    flags = ("--latency-median-ms", "5", "--ttft-median-ms", "2", "--latency-sigma", "0")
    with MockLlmProcess(workdir, *flags, "--seed", "7") as process:
        yield process


@pytest.fixture(scope="module")
def gateway(
    mock: MockLlmProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """No gateway keys: the client's own Authorization goes through."""
    workdir = tmp_path_factory.mktemp("serve")
    with ServeProcess(workdir, "--upstream", mock.base_url, "--body-timeout-s", "1") as process:
        yield process


@pytest.fixture(scope="module")
def keyed(mock: MockLlmProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Gateway keys and no upstream key: no client Authorization may reach the upstream."""
    workdir = tmp_path_factory.mktemp("keyed")
    config = workdir / "gateway.toml"
    config.write_text(
        f'[[upstreams]]\nname = "mock"\nbase_url = "{mock.base_url}"\n\n'
        f'[[keys]]\nname = "wire"\nsecret = "{GATEWAY_KEY}"\nteam = "wire"\n'
    )
    with ServeProcess(workdir, "--config", str(config), "--body-timeout-s", "1") as process:
        yield process


def new_id() -> str:
    return uuid.uuid4().hex


def header_names(request: dict[str, Any]) -> list[str]:
    return [name for name, _ in request["headers"]]


def values(request: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in request["headers"] if key == name]


# -- edges of the server ----------------------------------------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": ' + DEEP + b"}"),
        ("/v1/completions", b'{"model": "gpt-4o-mini", "prompt": ' + DEEP + b"}"),
        ("/v1/embeddings", b'{"model": "text-embedding-3-small", "input": ' + DEEP + b"}"),
        ("/api/v1/calls", b'{"provider": "openai", "model": "m", "tags": ' + DEEP + b"}"),
    ],
    ids=["chat", "completions", "embeddings", "ingest"],
)
def test_deeply_nested_json_is_a_400_and_the_connection_stays_usable(
    gateway: ServeProcess, mock: MockLlmProcess, path: str, body: bytes
) -> None:
    reached = mock.stats()["total"]
    with Wire(gateway.url) as wire:
        wire.request("POST", path, [JSON], body)
        status, _, answer = wire.response()
        assert status == 400
        error = json.loads(answer)["error"]
        if path.startswith("/v1/"):
            assert error["type"] == "invalid_request_error"  # OpenAI's shape
            assert "nested more than 200 levels deep" in error["message"]
        else:
            assert isinstance(error, str)  # the API's own shape
        # The same keep-alive connection answers the next request.
        wire.next_cycle()
        wire.request("GET", "/healthz")
        assert wire.response()[0] == 200
    assert mock.stats()["total"] == reached


@pytest.mark.parametrize(
    ("path", "chunked"),
    [("/v1/chat/completions", False), ("/v1/chat/completions", True), ("/api/v1/calls", False)],
    ids=["gateway-content-length", "gateway-chunked", "ingest"],
)
def test_a_body_that_stalls_is_answered_408_and_the_connection_closed(
    gateway: ServeProcess, path: str, chunked: bool
) -> None:
    framing = ("transfer-encoding", "chunked") if chunked else ("content-length", "1000")
    with Wire(gateway.url) as wire:
        wire.start("POST", path, [JSON, framing])
        wire.data(b'{"model": "gpt-4o-mini", ')  # and then nothing: the client stalls
        status, headers, answer = wire.response()
        assert status == 408
        assert headers["connection"] == "close"
        error = json.loads(answer)["error"]
        message = error["message"] if path.startswith("/v1/") else error
        assert "the request body did not arrive within 1 s" in message
        assert wire.closed_by_server()


def test_a_client_gone_mid_body_is_no_server_error(gateway: ServeProcess) -> None:
    def errors(by_status: dict[str, float]) -> float:
        return sum(n for status, n in by_status.items() if status.startswith("5"))

    before = server_requests(gateway)
    with Wire(gateway.url) as wire:
        wire.start("POST", "/v1/chat/completions", [JSON, ("content-length", "1000")])
        wire.data(b'{"model": "gpt-4o-mini", ')
    # The server noticed (its answer goes nowhere); it logged no traceback and counted no 5xx.
    poll(
        "the server to count it",
        lambda: sum(server_requests(gateway).values()) > sum(before.values()),
    )
    assert errors(server_requests(gateway)) == errors(before)
    assert "Traceback" not in gateway.log_tail(1000)


def server_requests(served: ServeProcess) -> dict[str, float]:
    """``aivitals_http_server_requests_total`` summed by status, from the server's /metrics."""
    text = httpx.get(f"{served.url}/metrics", timeout=30).text
    by_status: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aivitals_http_server_requests_total{"):
            status = line.split('status="')[1].split('"')[0]
            by_status[status] = by_status.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return by_status


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream-before-first-byte"])
def test_a_client_that_gives_up_is_recorded_cancelled_when_it_goes(
    gateway: ServeProcess, mock: MockLlmProcess, stream: bool
) -> None:
    test_id = new_id()
    gone = mock.stats().get("gone", 0)
    slow = {"X-Mock-TTFT-Ms": "4000", "X-Mock-Latency-Ms": "4000"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={**CHAT, "stream": stream},
            headers={**slow, "X-Aivitals-Tag-Test": test_id},
            timeout=httpx.Timeout(10, read=0.5),
        )
    call = gateway.call_tagged(test_id)
    assert call["status"] == "cancelled"
    assert call["tokens_estimated"] and call["input_tokens"] > 0  # the prompt was sent
    # Recorded when the client went, not when the upstream would have answered.
    assert call["latency_ms"] < 4000
    # The upstream request was cancelled too: the mock saw its client hang up.
    poll("the mock to see the gateway hang up", lambda: mock.stats()["gone"] == gone + 1)


def test_a_stream_with_a_malformed_event_is_recorded_as_an_invalid_response(
    gateway: ServeProcess,
) -> None:
    test_id = new_id()
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"X-Mock-Error": "malformed", "X-Aivitals-Tag-Test": test_id},
        timeout=30,
    )
    # The client gets the stream as the upstream sent it; its SDK fails on the bad event as it
    # would without the gateway.
    assert answer.status_code == 200
    assert answer.content == MALFORMED_EVENT + b"data: [DONE]\n\n"
    call = gateway.call_tagged(test_id)
    assert (call["status"], call["error_type"], call["http_status"]) == (
        "error",
        "invalid_response",
        200,
    )


def test_a_model_name_over_200_characters_is_refused_naming_the_field(
    gateway: ServeProcess, mock: MockLlmProcess
) -> None:
    reached = mock.stats()["total"]
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions", json={**CHAT, "model": "m" * 201}, timeout=30
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "model"
    assert error["message"] == "model is 201 characters long; at most 200 are accepted"
    assert mock.stats()["total"] == reached
    # 200 is still a name.
    fits = httpx.post(
        f"{gateway.url}/v1/chat/completions", json={**CHAT, "model": "m" * 200}, timeout=30
    )
    assert fits.status_code == 200


@pytest.mark.parametrize(
    ("change", "headers", "field", "says"),
    [
        ({"model": "gpt\u0000x"}, {}, "model", "NUL"),
        ({"user": "u\u0000"}, {}, "user", "NUL"),
        ({}, {"X-Aivitals-Tag-" + "k" * 129: "v"}, "x-aivitals-tag-", "over 128 characters"),
        ({}, {f"X-Aivitals-Tag-T{i}": "v" for i in range(65)}, "x-aivitals-tag-", "at most 64"),
    ],
    ids=["nul-in-model", "nul-in-user", "long-tag-key", "too-many-tags"],
)
def test_what_no_call_can_hold_is_a_400_before_the_upstream(
    gateway: ServeProcess,
    mock: MockLlmProcess,
    change: dict[str, str],
    headers: dict[str, str],
    field: str,
    says: str,
) -> None:
    reached = mock.stats()["total"]
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions", json={**CHAT, **change}, headers=headers, timeout=30
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert field in (error["param"] or "") and says in error["message"]
    assert mock.stats()["total"] == reached  # refused before it cost anything
    # Long attribution values are cut to their column, not refused.
    fits = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=CHAT,
        headers={"X-Aivitals-Environment": "e" * 300, "X-Aivitals-Tag-Test": "t" * 600},
        timeout=30,
    )
    assert fits.status_code == 200


# -- a clean proxy ----------------------------------------------------------------------------


def test_a_chunked_client_reaches_the_upstream_with_content_length_only(
    gateway: ServeProcess, mock: MockLlmProcess
) -> None:
    test_id = new_id()
    pieces = [b'{"model": "gpt-4o-mini", ', b'"messages": [{"role": "user", "content": "hi"}]}']
    with Wire(gateway.url) as wire:
        wire.request("POST", "/v1/chat/completions", [JSON, ("x-test-id", test_id)], pieces)
        status, _, answer = wire.response()
    assert status == 200, answer
    assert json.loads(answer)["choices"][0]["message"]["role"] == "assistant"
    received = mock.request_with("x-test-id", test_id)
    assert "transfer-encoding" not in header_names(received)
    assert values(received, "content-length") == [str(len(b"".join(pieces)))]


HOP_BY_HOP = [
    ("connection", "keep-alive, x-hop-named"),
    ("x-hop-named", "1"),  # hop-by-hop because Connection names it
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("te", "trailers"),
    ("trailer", "x-checksum"),
    ("upgrade", "example/1"),
    ("expect", "100-continue"),  # the gateway has the whole body already
]
CREDENTIALS = [
    ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
    ("cookie", "session=s3cret"),
    ("x-api-key", "sk-client-x-api-key"),
    ("api-key", "sk-client-azure-key"),
]


@pytest.mark.parametrize("keys", [False, True], ids=["pass-through", "gateway-keys"])
def test_hop_by_hop_headers_and_client_credentials_never_reach_the_upstream(
    request: pytest.FixtureRequest, mock: MockLlmProcess, keys: bool
) -> None:
    served: ServeProcess = request.getfixturevalue("keyed" if keys else "gateway")
    test_id = new_id()
    authorization = f"Bearer {GATEWAY_KEY}" if keys else "Bearer sk-client-own-key"
    sent = [
        JSON,
        ("x-test-id", test_id),
        ("x-client-thing", "kept"),
        ("authorization", authorization),
        *HOP_BY_HOP,
        *CREDENTIALS,
    ]
    with Wire(served.url) as wire:
        wire.request("POST", "/v1/chat/completions", sent, json.dumps(CHAT).encode())
        status, _, answer = wire.response()
    assert status == 200, answer
    received = mock.request_with("x-test-id", test_id)
    names = header_names(received)
    for name, _ in HOP_BY_HOP + CREDENTIALS:
        if name != "connection":  # the gateway's own connection to the upstream may say one
            assert name not in names, name
    assert "x-hop-named" not in " ".join(values(received, "connection"))
    assert values(received, "x-client-thing") == ["kept"]  # end-to-end headers do pass
    assert len(values(received, "content-length")) == 1
    assert "transfer-encoding" not in names
    # Without gateway keys (and no upstream key) the client's own key is the upstream's key;
    # with them, the client's header holds a gateway key and never leaves.
    assert values(received, "authorization") == ([] if keys else [authorization])


def test_the_upstreams_answer_headers_come_back_without_its_cookies(
    gateway: ServeProcess, mock: MockLlmProcess
) -> None:
    direct = httpx.post(f"{mock.base_url}/chat/completions", json=CHAT, timeout=30)
    assert "set-cookie" in direct.headers  # the mock sends one, as OpenAI's edge does
    through = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=30)
    assert through.status_code == 200
    assert "set-cookie" not in through.headers
    assert through.headers["x-request-id"].startswith("req_")  # end-to-end: passed through
    assert "x-aivitals-trace-id" in through.headers


@pytest.mark.parametrize(
    ("fault", "status"), [("rate_limit", 429), ("unavailable", 503)], ids=["429", "503"]
)
def test_the_upstreams_retry_after_reaches_the_client(
    gateway: ServeProcess, fault: str, status: int
) -> None:
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=CHAT,
        headers={"X-Mock-Error": fault},
        timeout=30,
    )
    assert answer.status_code == status
    assert answer.headers["retry-after"] == "1"


def test_the_keyed_gateway_refuses_a_stranger(keyed: ServeProcess) -> None:
    """The keyed gateway refuses a stranger: its keys are in force (else the test above is moot)."""
    answer = httpx.post(f"{keyed.url}/v1/chat/completions", json=CHAT, timeout=30)
    assert answer.status_code == 401
