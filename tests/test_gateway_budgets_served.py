"""Budgets that hold, as real processes: `aivitals serve` in front of `aivitals mock-llm`.

Expected money is worked out with genai-prices itself from the usage each reply reports, never
with aivitals' own pricer or reserve arithmetic.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import openai
import pytest

from aivitals.model import Call
from aivitals.query import Queries, parse_since
from aivitals.store.sql import SqlStore
from tests.support.realservers import ServerProcess
from tests.test_server_serve import AIVITALS, start

pytestmark = pytest.mark.slow

MODEL = "gpt-4o-mini"
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the quarterly report."}]


class MockLlm(ServerProcess):
    """`aivitals mock-llm` as its own process on a free port."""

    name = "mock-llm"
    ready_path = "/mock/stats"

    def __init__(self, workdir: Path, *args: str) -> None:
        super().__init__(AIVITALS, workdir)
        self.args = args

    def command(self) -> list[str]:
        return [self.binary, "mock-llm", "--port", str(self.port), "--seed", "1", *self.args]


def far_from_midnight() -> str:
    """A fixed-offset zone where it is now about noon: a test never straddles a budget reset."""
    offset = 12 - datetime.now(UTC).hour  # in -11..12, all of which Etc/ names exist for
    # Etc/ names have the POSIX sign: Etc/GMT-3 is three hours ahead of UTC.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@dataclass
class Served:
    url: str
    db: Path
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(30) == 0
        if self.process.stderr is not None:
            self.process.stderr.close()

    def stored(self) -> list[Call]:
        """Every call in the store (stop the server first: its last batch is written at exit)."""
        store = SqlStore.open(self.db)
        try:
            found = Queries(store.engine).calls(
                parse_since("1h", now=datetime.now(UTC)), limit=10_000
            )
        finally:
            store.close()
        return [item.call for item in found]


@contextmanager
def served(tmp_path: Path, config: str, *mock_args: str) -> Iterator[Served]:
    """A mock-llm and an `aivitals serve --config` in front of it, both stopped at the end."""
    with MockLlm(tmp_path / "mock", *mock_args) as mock:
        path = tmp_path / "gateway.toml"
        path.write_text(
            f'timezone = "{far_from_midnight()}"\n'
            f'[[upstreams]]\nname = "mock"\nbase_url = "{mock.url}/v1"\n{config}'
        )
        db = tmp_path / "aivitals.db"
        process, url = start("--db", str(db), "--config", str(path))
        server = Served(url, db, process)
        try:
            yield server
        finally:
            if process.poll() is None:
                try:
                    server.stop()
                except BaseException:
                    process.kill()
                    process.wait()
                    raise


def catalog_usd(usage: Any) -> Decimal:
    """What genai-prices says a reply's reported usage costs."""
    price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens),
        model_ref=MODEL,
        provider_id="openai",
    )
    return Decimal(price.total_price)


BUDGET_USD = Decimal("0.05")
MAX_TOKENS = 4000


async def fifty_at_once(url: str) -> list[Any]:
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="sk-client-own-key", max_retries=0, timeout=60
    )
    try:
        return await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,
                    max_tokens=MAX_TOKENS,
                    user="alice",
                    # Every answer uses its whole allowance (the worst case), and is held for
                    # 1.5 s, so all fifty are in flight at once.
                    extra_headers={
                        "X-Mock-Completion-Tokens": str(MAX_TOKENS),
                        "X-Mock-Latency-Ms": "1500",
                    },
                )
                for _ in range(50)
            ),
            return_exceptions=True,
        )
    finally:
        await client.close()


def test_fifty_concurrent_requests_never_spend_past_the_budget(tmp_path: Path) -> None:
    config = f'[[budgets]]\neach = "user"\nper = "day"\nusd = {BUDGET_USD}\n'
    with served(tmp_path, config) as server:
        results = asyncio.run(fifty_at_once(server.url))
        server.stop()
        stored = server.stored()
    replies = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    others = [r for r in results if isinstance(r, BaseException) and r not in refused]
    assert others == []
    assert all(r.code == "budget_exceeded" for r in refused)

    costs = [catalog_usd(reply.usage) for reply in replies]
    spent = sum(costs, Decimal(0))
    # Each call costs about $0.0024 (4,000 output tokens at $0.60 per million, a few input
    # tokens at $0.15): twenty fit in $0.05, a twenty-first would not.
    fits = max(n for n in range(51) if n * max(costs) <= BUDGET_USD)
    assert spent <= BUDGET_USD, f"{len(replies)} of 50 accepted, ${spent} spent of ${BUDGET_USD}"
    assert len(replies) == fits == 20, f"{len(replies)} accepted, ${spent} spent"
    assert len(refused) == 30
    # The store holds exactly what the replies cost, all of it against alice.
    assert sorted(c.cost_usd or Decimal(0) for c in stored) == sorted(costs)
    assert {c.user for c in stored} == {"alice"}


BACKEND_KEY = "sk-gw-backend-0123456789abcdef"
TRUSTED_KEY = "sk-gw-trusted-0123456789abcdef"
# Each call: 1,000 output tokens at $0.60 per million ($0.0006) and a few input tokens: a
# budget of $0.002 holds three of them.
SMALL_BUDGET = '[[budgets]]\neach = "user"\nper = "day"\nusd = 0.002\n'
BACKEND = f'[[keys]]\nname = "backend"\nsecret = "{BACKEND_KEY}"\nteam = "apps"\n'
TRUSTED = (
    f'[[keys]]\nname = "trusted"\nsecret = "{TRUSTED_KEY}"\nteam = "apps"\n'
    "allow_user_header = true\n"
)


def small_call(client: openai.OpenAI, **headers: str) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=1000,
        extra_headers={"X-Mock-Completion-Tokens": "1000", "X-Mock-Latency-Ms": "1", **headers},
    )


def spend_until_refused(client: openai.OpenAI, **headers: str) -> int:
    """Calls until the budget refuses one; returns how many went through."""
    for done in range(20):
        try:
            small_call(client, **headers)
        except openai.RateLimitError as refused:
            assert refused.code == "budget_exceeded"
            return done
    raise AssertionError("twenty calls and no budget refusal")


def test_with_keys_a_user_over_budget_cannot_rename_themselves_out_of_it(tmp_path: Path) -> None:
    with served(tmp_path, SMALL_BUDGET + BACKEND) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=BACKEND_KEY, max_retries=0)
        try:
            accepted = spend_until_refused(client, **{"X-Aivitals-User": "mallory"})
            # Another name in the header, none at all, or one in the body: the key decides
            # who this is, and it is still over its budget.
            for headers in ({"X-Aivitals-User": "mallory-2"}, {}):
                with pytest.raises(openai.RateLimitError, match="budget exceeded"):
                    small_call(client, **headers)
            with pytest.raises(openai.RateLimitError, match="budget exceeded"):
                client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=1000, user="someone-else"
                )
        finally:
            client.close()
        server.stop()
        stored = server.stored()
    assert len(stored) == accepted
    assert {c.user for c in stored} == {"backend"}  # the key's own identity, not the claim


def test_a_key_allowed_to_name_users_gets_a_budget_per_named_user(tmp_path: Path) -> None:
    with served(tmp_path, SMALL_BUDGET + TRUSTED) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TRUSTED_KEY, max_retries=0)
        try:
            assert spend_until_refused(client, **{"X-Aivitals-User": "u1"}) == 3
            small_call(client, **{"X-Aivitals-User": "u2"})  # trusted to name its users
            small_call(client)  # names nobody: the key's own identity, with its own budget
        finally:
            client.close()
        server.stop()
        stored = server.stored()
    assert sorted(c.user or "" for c in stored) == ["trusted", "u1", "u1", "u1", "u2"]
