"""Three `aivitals serve` replicas sharing one redis-server and one PostgreSQL (issue 15).

Real processes: three gateways (``serve --redis URL --db postgresql+psycopg://...``) in front of
one ``aivitals mock-llm``, the official openai client spreading requests across them. The
replicas run under libfaketime (LD_PRELOAD, monotonic clocks left alone) with an offset read from
a file, so the test moves their wall clock past the configured midnight all at once; Redis and
PostgreSQL keep real time (the limits' windows and the holds' leases are Redis time).

The tests share one fleet and run in this file's order: the midnight and the report read what
the earlier ones spent, and the last two stop Redis and kill a replica.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openai
import pytest
import redis
from genai_prices import Usage, calc_price
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway_processes import AIVITALS, MockLlmProcess, ServeProcess
from tests.support.postgres import PostgresServer
from tests.support.realservers import need, poll
from tests.support.redis_server import RedisServer

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
ZONE = ZoneInfo("Europe/Paris")
MODEL = "gpt-4o-mini"
MAX_TOKENS = 4000
# The body the openai client sends for one short message is about 90 bytes (the gateway's
# input bound); the worst case is priced for anything from 50 to 400 bytes, so the budgets
# below hold whatever the exact bytes are.
BODY_BYTES = (50, 400)


def price(input_tokens: int, output_tokens: int) -> Decimal:
    return calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model_ref=MODEL,
        provider_id="openai",
    ).total_price


WORST_LOW = price(BODY_BYTES[0], MAX_TOKENS)
WORST_HIGH = price(BODY_BYTES[1], MAX_TOKENS)
# Room for exactly 20 worst cases: 20 x the dearest fits; a 21st would need room that calls
# ending below their worst case free (about 80 bytes of input each) but 20 of them free far less
# than one worst case.
BUDGET_20 = 20 * WORST_HIGH
# Three calls a day, and a fourth refused for good (spend ~3 worst cases + one more > 3.5).
BUDGET_MIDNIGHT = Decimal("3.5") * WORST_HIGH


class Replica(ServeProcess):
    """``aivitals serve`` on the shared PostgreSQL store (not a SQLite file of its own)."""

    def __init__(self, workdir: Path, store_url: str, *args: str) -> None:
        super().__init__(workdir, *args)
        self.store_url = store_url

    def command(self) -> list[str]:
        return [self.binary, "serve", "--port", str(self.port), "--db", self.store_url, *self.args]

    def metrics(self) -> dict[str, float]:
        """Every sample of one /metrics scrape, by name and labels."""
        text = self.client.get(self.url + "/metrics").text
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def requests_total(self) -> float:
        text = self.client.get(self.url + "/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "aivitals_requests"
            for sample in family.samples
            if sample.name == "aivitals_requests_total"
        )


def asked(client: openai.OpenAI, content: str) -> int:
    """One chat call with ``client``: the HTTP status it got."""
    try:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
            max_tokens=MAX_TOKENS,
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


@dataclass
class Fleet:
    replicas: list[Replica]
    mock: MockLlmProcess
    redis: RedisServer
    store_url: str
    clock_file: Path
    env: dict[str, str]

    def client(self, i: int, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.replicas[i % len(self.replicas)].url + "/v1",
            api_key="sk-test",
            max_retries=0,  # a 429 or 503 is the answer under test, not something to retry
            timeout=60,
            default_headers=headers,
        )

    def ask(self, i: int, *, content: str = "hi", **headers: str) -> int:
        """One chat call through replica ``i % 3``: the HTTP status it got."""
        with self.client(i, **headers) as client:
            return asked(client, content)

    def held_for(self, user: str) -> int:
        """What Redis holds for ``user``'s budgets now (nano-dollars): holds not yet released;
        -1 while Redis has no budget of theirs (so a wrong key pattern cannot pass for none)."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            keys = list(client.scan_iter(match=f"aivitals:budget:*:user:{user}"))
            return sum(int(client.hget(key, "held") or 0) for key in keys) if keys else -1
        finally:
            client.close()

    def ask_settled(self, i: int, user: str) -> int:
        """`ask`, then wait for its hold to be given back in Redis. A replica's writer thread
        sends the call's spend, then the release of its hold; until the release lands, Redis
        counts the call twice, so a next call on a busy machine could be refused for room
        that the first is about to free."""
        status = self.ask(i, **{"X-Aivitals-User": user})
        poll(f"{user}'s holds released", lambda: self.held_for(user) == 0)
        return status

    def ask_all(self, n: int, **headers: str) -> list[int]:
        # The clients are built first: building 60 (an SSL context each) is seconds of CPU on two
        # cores, which would spread the burst out and starve the replicas while it arrives.
        clients = [self.client(i, **headers) for i in range(n)]
        try:
            with ThreadPoolExecutor(max_workers=n) as pool:
                return list(pool.map(lambda client: asked(client, "hi"), clients))
        finally:
            for client in clients:
                client.close()

    def fallbacks(self) -> dict[str, float]:
        """Each replica's `aivitals_redis_fallbacks_total` samples: said when a count is off."""
        return {
            replica.url: sum(
                value
                for name, value in replica.metrics().items()
                if name.startswith("aivitals_redis_fallbacks_total")
            )
            for replica in self.replicas
        }

    def set_clock(self, at: datetime) -> None:
        """Move every replica's wall clock to ``at`` (libfaketime re-reads within a second)."""
        offset = (at - datetime.now(UTC)).total_seconds()
        self.clock_file.write_text(f"{offset:+.0f}\n")

    def now(self) -> datetime:
        offset = float(self.clock_file.read_text())
        return datetime.now(UTC) + timedelta(seconds=offset)

    def report(self, since: str = "2h", by: str = "model") -> dict[str, Any]:
        """``aivitals report --json`` on the store, on the replicas' clock."""
        done = subprocess.run(
            [AIVITALS, "report", "--db", self.store_url, "--since", since, "--by", by, "--json"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=True,
        )
        report: dict[str, Any] = json.loads(done.stdout)
        return report


def config_text(mock_url: str) -> str:
    return f"""
timezone = "Europe/Paris"

[[upstreams]]
name = "mock"
base_url = "{mock_url}"

[limits.teams.limited]
requests_per_minute = 10

[[budgets]]
user = "crowd"
per = "day"
usd = {BUDGET_20}

[[budgets]]
user = "night"
per = "day"
usd = {BUDGET_MIDNIGHT}

[cache]
ttl_s = 600

[redis]
limits_on_failure = "open"
# Generous: two cores shared with the rest of the suite; a spurious timeout would fail open.
connect_timeout_ms = 1000
socket_timeout_ms = 1000
retry_s = 0.2
"""


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    postgresql_server: PostgresServer,
) -> Iterator[Fleet]:
    if not FAKETIME_LIB.exists():
        need("faketime", package="faketime")  # skips (fails under CI) without it
    redis_server.thaw()
    redis_server.start()
    redis_server.flush()
    database = postgresql_server.create_database()
    store_url = postgresql_server.url(database)
    root = tmp_path_factory.mktemp("replicas")
    mock = MockLlmProcess(
        root / "mock",
        "--latency-median-ms",
        "1000",
        "--latency-sigma",
        "0.01",
        "--completion-tokens-min",
        str(MAX_TOKENS),
        "--completion-tokens-max",
        str(MAX_TOKENS),
    ).start()
    config = root / "gateway.toml"
    config.write_text(config_text(mock.base_url))
    clock_file = root / "faketime"
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=str(FAKETIME_LIB),
        FAKETIME_TIMESTAMP_FILE=str(clock_file),
        FAKETIME_CACHE_DURATION="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )
    replicas: list[Replica] = []
    fleet = Fleet(replicas, mock, redis_server, store_url, clock_file, env)
    # Ten minutes before the next midnight in Paris: the tests spend today, then cross it.
    tomorrow = (datetime.now(ZONE) + timedelta(days=1)).date()
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=ZONE)
    fleet.set_clock(midnight - timedelta(minutes=10))
    saved = dict(os.environ)
    try:
        os.environ.update(env)  # the replicas inherit it; this process is not preloaded
        made = [
            Replica(
                root / f"replica{i}",
                store_url,
                "--config",
                str(config),
                "--redis",
                redis_server.url,
            )
            for i in range(3)
        ]
        replicas.append(made[0].start())  # the first creates the schema; then two at once
        with ThreadPoolExecutor(max_workers=2) as pool:
            replicas.extend(pool.map(lambda replica: replica.start(), made[1:]))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        yield fleet
    finally:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda replica: replica.stop(), replicas))
        mock.stop()
        postgresql_server.drop_database(database)


def test_a_team_limit_of_10_a_minute_lets_exactly_10_through_across_three(fleet: Fleet) -> None:
    statuses = fleet.ask_all(30, **{"X-Aivitals-Team": "limited"})
    assert statuses.count(200) == 10
    assert statuses.count(429) == 20


def test_a_budget_for_20_calls_admits_at_most_20_of_60_arriving_at_once(fleet: Fleet) -> None:
    statuses = fleet.ask_all(60, **{"X-Aivitals-User": "crowd"})
    # Each call takes 1 s upstream: the reserves of those in flight leave room for 20 in all.
    # in-memory ledgers let up to 20 through each replica: a fallback (Redis not answering in
    # time) is the first thing to look at when this is off
    assert statuses.count(200) == 20, fleet.fallbacks()
    assert statuses.count(200) + statuses.count(429) == 60

    def spent() -> Decimal | None:
        summary = httpx.get(
            fleet.replicas[0].url + "/api/v1/summary",
            params={"since": "1h", "where": "user=crowd"},
            timeout=30,
        ).json()["summary"]
        if summary["calls"] < statuses.count(200):
            return None  # the replicas' recorders have not stored them all yet
        return Decimal(str(summary["total_cost_usd"]))

    assert poll("the crowd's calls stored", spent) <= BUDGET_20


def test_an_answer_cached_by_one_replica_is_a_hit_on_another(fleet: Fleet) -> None:
    content = f"cache me {uuid.uuid4()}"
    tag = str(uuid.uuid4())
    cached = {"X-Aivitals-Cache": "on"}
    assert fleet.ask(0, content=content, **cached, **{"X-Aivitals-Tag-Test": tag}) == 200
    assert fleet.replicas[0].call_tagged(tag)["cache"] == "miss"
    upstream_seen = len(fleet.mock.requests())

    def hit() -> bool:
        again = str(uuid.uuid4())
        assert fleet.ask(1, content=content, **cached, **{"X-Aivitals-Tag-Test": again}) == 200
        return bool(fleet.replicas[1].call_tagged(again)["cache"] == "hit")

    # The put is queued to the first replica's writer thread: poll, never sleep.
    poll("a hit on the second replica", hit)
    if len(fleet.mock.requests()) == upstream_seen:
        return
    # A miss before the put landed went upstream once more; the hit itself never does.
    seen = len(fleet.mock.requests())
    assert hit()
    assert len(fleet.mock.requests()) == seen


def test_a_budget_resets_at_the_configured_midnight_on_every_replica(fleet: Fleet) -> None:
    assert [fleet.ask_settled(i, "night") for i in range(3)] == [200, 200, 200]
    refused = [fleet.ask_settled(i, "night") for i in range(3)]
    assert refused == [429, 429, 429]
    local = fleet.now().astimezone(ZONE)
    tomorrow = local.date() + timedelta(days=1)
    new_day = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 0, 0, 5, tzinfo=ZONE)
    fleet.set_clock(new_day)

    def clock_of(replica: Replica) -> datetime:
        # uvicorn dates its answers with the process's (faked) wall clock.
        date = httpx.get(replica.url + "/healthz", timeout=10).headers["date"]
        return parsedate_to_datetime(date)

    poll(
        "every replica's clock past midnight",
        lambda: all(clock_of(r) >= new_day for r in fleet.replicas),
    )
    assert [fleet.ask_settled(i, "night") for i in range(3)] == [200, 200, 200]


def test_the_store_holds_every_call_once_and_the_report_agrees_with_the_metrics(
    fleet: Fleet,
) -> None:
    scraped = [0.0]

    def agree() -> bool:
        scraped[0] = sum(replica.requests_total() for replica in fleet.replicas)
        return bool(fleet.report("1d")["summary"]["calls"] == scraped[0])

    poll("the store to hold what the replicas counted", agree)
    assert scraped[0] > 0
    ids = httpx.get(
        fleet.replicas[0].url + "/api/v1/calls", params={"limit": 1000}, timeout=30
    ).json()["calls"]
    found = [item["call"]["id"] for item in ids]
    assert len(found) == len(set(found))


def test_redis_stopped_and_restarted_mid_load_fails_open_and_counts_again(fleet: Fleet) -> None:
    team = {"X-Aivitals-Team": "limited"}
    fleet.redis.stop()
    try:
        # Limits fail open: every request answers, none with a 5xx.
        statuses = fleet.ask_all(15, **team)
        assert statuses == [200] * 15
        ready = httpx.get(fleet.replicas[0].url + "/readyz", timeout=10).json()
        assert ready["status"] == "ready"
        assert "down" in ready["checks"]["redis"] and "limits fail open" in ready["checks"]["redis"]
    finally:
        fleet.redis.start()  # empty: no persistence

    def all_up() -> bool:
        return all(
            httpx.get(r.url + "/readyz", timeout=10)
            .json()["checks"]["redis"]
            .endswith("cache skipped")
            and " up;" in httpx.get(r.url + "/readyz", timeout=10).json()["checks"]["redis"]
            for r in fleet.replicas
        )

    poll("every replica back on Redis", all_up)
    # Redis came back empty: the window starts again, exact across the three.
    statuses = fleet.ask_all(30, **team)
    fallbacks = [
        r.metrics().get("aivitals_redis_fallbacks_total[('feature', 'limits')]")
        for r in fleet.replicas
    ]
    assert statuses.count(200) == 10, fallbacks


def test_a_replica_killed_mid_load_loses_no_acknowledged_call(fleet: Fleet) -> None:
    victim = fleet.replicas[2]
    assert victim.process is not None
    batch_ids: list[str] = []

    def ingest(i: int) -> tuple[int, list[str]]:
        ids = [str(uuid.uuid4()) for _ in range(5)]
        calls = [
            {"id": call_id, "provider": "openai", "model": MODEL, "latency_ms": 10.0}
            for call_id in ids
        ]
        try:
            reply = httpx.post(
                fleet.replicas[i % 3].url + "/api/v1/calls", json={"calls": calls}, timeout=30
            )
        except httpx.TransportError:
            return 0, ids
        return reply.status_code, ids

    def gateway(i: int) -> int:
        return fleet.ask(i % 2)  # the two survivors

    with ThreadPoolExecutor(max_workers=16) as pool:
        ingested = [pool.submit(ingest, i) for i in range(30)]
        asked = [pool.submit(gateway, i) for i in range(6)]
        poll("some batches acknowledged", lambda: sum(f.done() for f in ingested) >= 6)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        acknowledged = []
        for future in ingested:
            status, ids = future.result()
            if 200 <= status < 300:
                acknowledged += ids
            batch_ids += ids
        survivors = [future.result() for future in asked]
    assert survivors == [200] * 6  # the others are unaffected
    assert acknowledged

    reply = httpx.get(
        fleet.replicas[0].url + "/api/v1/calls",
        params={"limit": 10_000, "since": "1h", "where": f"model={MODEL}"},
        timeout=30,
    )
    stored = {item["call"]["id"] for item in reply.json()["calls"]}
    # Acknowledged means committed (the ingest API's 2xx): already there, nothing to wait for.
    assert set(acknowledged) - stored == set()
