"""Budget reserves: the ledger's holds, the worst case of a request, and holds never leaking.

Expected prices come from genai-prices directly, never from aivitals' pricer.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect

from aivitals.attribution import Attribution
from aivitals.gateway.budgets import Budget, BudgetLedger, Hold, Refusal
from aivitals.gateway.keys import GatewayKey
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.reserve import WorstCase, worst_case, worst_case_tokens
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.price_overrides import Rates
from aivitals.pricing import Pricer
from aivitals.recorder import Recorder

EVENING = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
D = Decimal


def ledger(*budgets: Budget, now: list[datetime] | None = None) -> BudgetLedger:
    clock = now if now is not None else [EVENING]
    return BudgetLedger(budgets or (daily("team", "1"),), clock=lambda: clock[0])


def daily(scope: Any, usd: str, value: str | None = None) -> Budget:
    return Budget(scope=scope, period="day", usd=D(usd), value=value)


def spend(book: BudgetLedger, usd: str, **who: str) -> None:
    book.on_call(
        Call(
            provider="openai",
            model="m",
            latency_ms=1.0,
            cost_usd=D(usd),
            started_at=EVENING,
            **who,  # type: ignore[arg-type]  # user, team, feature
        )
    )


def test_holds_take_room_until_released_and_then_the_real_cost_counts() -> None:
    book = ledger()
    first = book.reserve(D("0.4"), team="search")
    second = book.reserve(D("0.4"), team="search")
    assert isinstance(first, Hold) and isinstance(second, Hold)
    refused = book.reserve(D("0.4"), team="search")
    assert isinstance(refused, Refusal)
    assert (refused.spent_usd, refused.held_usd, refused.asked_usd) == (D(0), D("0.8"), D("0.4"))
    # Only what is held stands in the way: room can come back soon.
    assert not refused.final and refused.retry_after_s == 1
    spend(book, "0.1", team="search")  # the first call ended, for less than its worst case
    first.release()
    assert (book.spent("team", "search", "day"), book.held("team", "search", "day")) == (
        D("0.1"),
        D("0.4"),
    )
    assert isinstance(book.reserve(D("0.4"), team="search"), Hold)


def test_a_call_whose_worst_case_spend_alone_cannot_fit_is_refused_until_the_reset() -> None:
    book = ledger()
    spend(book, "0.9", team="search")
    refused = book.reserve(D("0.2"), team="search", basis="max_tokens")
    assert isinstance(refused, Refusal) and refused.final
    assert refused.retry_after_s == 3 * 3600  # 21:00 UTC to midnight
    assert refused.message == (
        "team 'search' has spent $0.90 of its daily budget of $1.00; this call could cost up "
        "to $0.20 (max_tokens); it resets at 2026-11-25 00:00 UTC"
    )
    assert isinstance(book.reserve(D("0.1"), team="search"), Hold)  # exactly fits


def test_a_reached_budget_refuses_even_a_free_call() -> None:
    book = ledger()
    spend(book, "1", team="search")
    assert isinstance(book.reserve(D(0), team="search"), Refusal)


def test_release_is_idempotent_and_a_hold_is_taken_once_per_budgeted_key() -> None:
    # Two budgets over the same user and day: the hold counts once against that user's spend.
    book = ledger(daily("user", "1"), daily("user", "5", value="alice"), daily("team", "1"))
    hold = book.reserve(D("0.3"), user="alice", team="search")
    assert isinstance(hold, Hold)
    assert book.held("user", "alice", "day") == D("0.3") == book.held("team", "search", "day")
    hold.release()
    hold.release()
    assert book.held("user", "alice", "day") == 0 == book.held("team", "search", "day")
    assert hold.released


def test_a_dropped_hold_is_given_back_when_collected() -> None:
    book = ledger()
    hold = book.reserve(D("0.6"), team="search")
    assert isinstance(hold, Hold)
    del hold
    gc.collect()
    assert book.held("team", "search", "day") == 0


def test_a_hold_from_yesterday_leaves_today_alone() -> None:
    now = [EVENING]
    book = ledger(now=now)
    yesterday = book.reserve(D("0.5"), team="search")
    now[0] = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    today = book.reserve(D("0.5"), team="search")
    assert isinstance(yesterday, Hold) and isinstance(today, Hold)
    yesterday.release()
    assert book.held("team", "search", "day") == D("0.5")


def test_no_budget_applies_to_a_request_outside_every_budget() -> None:
    book = ledger(daily("team", "1", value="search"), daily("feature", "1"))
    assert not book.applies(team="apps", user="u")
    assert book.applies(team="search") and book.applies(feature="ask")


# -- the worst case of a request -------------------------------------------------------------


def body_of(**fields: Any) -> tuple[dict[str, Any], int]:
    body = {"model": "gpt-4o-mini", **fields}
    return body, len(json.dumps(body).encode())


def test_text_input_is_bounded_by_its_utf8_bytes_and_output_by_max_tokens() -> None:
    body, size = body_of(
        messages=[{"role": "user", "content": "naïve 日本語 text"}], max_tokens=256
    )
    assert worst_case_tokens("chat", body, body_bytes=size, context_window=None) == (size, 256)
    # The context window caps both.
    assert worst_case_tokens("chat", body, body_bytes=size, context_window=100) == (100, 100)


def test_the_smaller_output_limit_counts_and_every_choice_and_prompt_is_billed() -> None:
    body, size = body_of(messages=[], max_tokens=900, max_completion_tokens=300, n=3)
    assert worst_case_tokens("chat", body, body_bytes=size, context_window=None) == (size, 900)
    batch, size = body_of(prompt=["a", "b"], max_tokens=10, n=2, best_of=5)
    assert worst_case_tokens("text_completion", batch, body_bytes=size, context_window=None) == (
        size,
        100,  # 5 generated per prompt, 2 prompts
    )
    tokenized, size = body_of(prompt=[1, 2, 3], max_tokens=10)
    assert worst_case_tokens("text_completion", tokenized, body_bytes=size, context_window=None)
    assert worst_case_tokens(
        "text_completion", tokenized, body_bytes=size, context_window=None
    ) == (size, 10)


@pytest.mark.parametrize("bad", [0, -5, True, "4000", 1.5, None])
def test_an_output_limit_that_is_no_positive_integer_reserves_the_window(bad: Any) -> None:
    body, size = body_of(messages=[], max_tokens=bad, n=bad)
    assert worst_case_tokens("chat", body, body_bytes=size, context_window=128_000) == (
        size,
        128_000,
    )


def test_a_part_that_is_not_text_is_bounded_by_the_context_window_only() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body, size = body_of(
        messages=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}],
        max_tokens=50,
    )
    assert worst_case_tokens("chat", body, body_bytes=size, context_window=128_000) == (
        128_000,
        50,
    )
    assert worst_case_tokens("chat", body, body_bytes=size, context_window=None) is None


def test_embeddings_have_no_output_and_no_limit_and_no_window_is_no_bound() -> None:
    body, size = body_of(input=["a b c"])
    assert worst_case_tokens("embeddings", body, body_bytes=size, context_window=None) == (
        size,
        0,
    )
    chat, size = body_of(messages=[{"role": "user", "content": "hi"}])
    assert worst_case_tokens("chat", chat, body_bytes=size, context_window=None) is None


def catalog(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model_ref=model,
        provider_id="openai",
    )
    return Decimal(price.total_price)


def test_the_worst_case_is_priced_as_the_catalog_prices_those_tokens() -> None:
    body, size = body_of(messages=[{"role": "user", "content": "hello"}], max_tokens=4000)
    found = worst_case(
        Pricer(),
        provider="openai",
        model="gpt-4o-mini",
        operation="chat",
        body=body,
        body_bytes=size,
        at=EVENING,
    )
    assert isinstance(found, WorstCase)
    assert found.usd == catalog("gpt-4o-mini", size, 4000)
    # Without max_tokens: gpt-4o-mini's whole context window (128,000 in the catalog).
    bare, size = body_of(messages=[{"role": "user", "content": "hello"}])
    window = worst_case(
        Pricer(),
        provider="openai",
        model="gpt-4o-mini",
        operation="chat",
        body=bare,
        body_bytes=size,
        at=EVENING,
    )
    assert isinstance(window, WorstCase)
    assert window.usd == catalog("gpt-4o-mini", size, 128_000)
    assert "send max_tokens to reserve less" in window.basis


def test_cache_writes_dearer_than_input_are_what_is_reserved() -> None:
    rates = Rates(input_mtok=D("3"), output_mtok=D("15"), cache_write_mtok=D("3.75"))
    body, size = body_of(messages=[], max_tokens=1000)
    found = worst_case(
        Pricer(overrides={(None, "acme"): rates}, use_catalog=False),
        provider="openai",
        model="acme",
        operation="chat",
        body=body,
        body_bytes=size,
        at=EVENING,
    )
    assert isinstance(found, WorstCase)
    assert found.usd == (size * D("3.75") + 1000 * D("15")) / 1_000_000


def test_an_unpriced_model_or_an_unbounded_request_cannot_be_held() -> None:
    body, size = body_of(messages=[{"role": "user", "content": "hi"}])
    unpriced = worst_case(
        Pricer(use_catalog=False),
        provider="openai",
        model="llama-local",
        operation="chat",
        body=body,
        body_bytes=size,
        at=EVENING,
    )
    assert not isinstance(unpriced, WorstCase) and unpriced.status_code == 403
    assert b"model_not_priced" in unpriced.body
    windowless = Pricer(overrides={(None, "acme"): Rates(input_mtok=D(1), output_mtok=D(2))})
    unbounded = worst_case(
        windowless,
        provider="openai",
        model="acme",
        operation="chat",
        body=body,
        body_bytes=size,
        at=EVENING,
    )
    assert not isinstance(unbounded, WorstCase) and unbounded.status_code == 400
    assert b"send max_tokens" in unbounded.body


def test_a_key_binds_the_user_and_team_whatever_the_request_claims() -> None:
    claimed = Attribution(user="mallory", team="finance", feature="ask")
    plain = GatewayKey(name="backend", secret="sk-gw-backend-0123456789", team="apps")
    assert (plain.bind(claimed).user, plain.bind(claimed).team) == ("backend", "apps")
    person = GatewayKey(name="k", secret="sk-gw-person-0123456789", team="apps", user="ann")
    assert person.bind(claimed).user == "ann"
    trusted = GatewayKey(
        name="svc", secret="sk-gw-trusted-0123456789", user="svc-user", allow_user_header=True
    )
    assert trusted.bind(claimed).user == "mallory"
    assert trusted.bind(Attribution()).user == "svc-user"
    assert trusted.bind(claimed).team is None  # a key without a team cannot claim one
    assert trusted.bind(claimed).feature == "ask"  # features are always the request's word


# -- the gateway never leaks a hold ------------------------------------------------------------


@dataclass
class InProcess:
    gateway: Gateway
    ledger: BudgetLedger
    app: Starlette
    upstream: MockServer

    def held(self) -> Decimal:
        return self.ledger.held("user", "alice", "day")


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=3, latency_median_ms=5, ttft_median_ms=1)) as mock:
        yield mock


@pytest.fixture
async def rig(upstream: MockServer) -> AsyncIterator[InProcess]:
    upstream.reset()
    book = BudgetLedger([daily("user", "1")])
    recorder = Recorder(inline_sinks=[book])
    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams([Upstream(name="mock", base_url=upstream.base_url, timeout_s=30)]),
        budgets=book,
    )
    await gateway.start()
    try:
        yield InProcess(gateway, book, Starlette(routes=gateway.routes), upstream)
    finally:
        await gateway.stop()
        recorder.close()


CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": 100,
    "user": "alice",
}


async def test_a_request_cancelled_while_upstream_gives_its_hold_back(rig: InProcess) -> None:
    transport = httpx.ASGITransport(app=rig.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        sent = asyncio.create_task(
            client.post("/v1/chat/completions", json=CHAT, headers={"X-Mock-Latency-Ms": "20000"})
        )
        for _ in range(500):  # until the request is at the upstream, holding its reserve
            await asyncio.sleep(0.01)
            if rig.held() > 0 and rig.upstream.stats()["total"] > 0:
                break
        assert rig.held() > 0
        sent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sent
    assert rig.held() == 0


async def test_a_stream_whose_client_left_before_it_started_gives_its_hold_back(
    rig: InProcess,
) -> None:
    body = json.dumps({**CHAT, "stream": True}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"gw")],
        "client": ("127.0.0.1", 1),
        "server": ("gw", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> MutableMapping[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        raise OSError("the client is gone")  # before even the status line

    with pytest.raises(ClientDisconnect):
        await rig.app(scope, receive, send)
    gc.collect()  # the stream's generator never ran: only dropping it can give the hold back
    assert rig.held() == 0
    assert rig.upstream.stats()["total"] == 1


async def test_every_ending_settles_its_hold(rig: InProcess) -> None:
    transport = httpx.ASGITransport(app=rig.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        ok = await client.post("/v1/chat/completions", json=CHAT)
        failed = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"X-Mock-Error": "server_error"}
        )
        async with client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as streamed:
            async for _ in streamed.aiter_bytes():
                pass
    assert (ok.status_code, failed.status_code, streamed.status_code) == (200, 500, 200)
    assert rig.held() == 0
    assert rig.ledger.spent("user", "alice", "day") > 0
