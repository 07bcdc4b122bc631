"""The HTTP exporter against a real local receiver: exact JSON, outages spooled to disk, replay."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

import aivitals
from aivitals.config import ConfigError, read_env
from aivitals.model import Call, Score
from aivitals.query import Queries, parse_since
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import reset
from aivitals.server import create_app
from aivitals.sinks.base import BatchSink, Ticking
from aivitals.sinks.http import ExportError, HttpExporter
from aivitals.sinks.spool import Spool
from aivitals.store.sql import SqlStore

from .support.helpers import make_call
from .support.server_app import build_runtime
from .support.servers import serve_in_thread

pytestmark = pytest.mark.slow  # every test here talks to a real socket


@dataclass
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang_s: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


class CallsBody(msgspec.Struct):
    calls: list[Call]


class ScoresBody(msgspec.Struct):
    scores: list[Score]


class Receiver:
    """A stand-in for the aivitals server: keeps what it accepts; scripted replies come first."""

    def __init__(self) -> None:
        self.accepted: list[Request] = []
        self.seen: list[Request] = []
        self.script: deque[Reply] = deque()
        self.failing: Reply | None = None
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(self.path, dict(self.headers.items()), body)
                receiver.seen.append(request)
                reply = (
                    receiver.script.popleft() if receiver.script else receiver.failing or Reply()
                )
                if reply.hang_s:
                    time.sleep(reply.hang_s)  # the client gives up first; nothing is kept
                    return
                if 200 <= reply.status < 300:
                    receiver.accepted.append(request)
                payload = reply.body or b'{"accepted": 0, "ids": []}'
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def calls(self) -> list[Call]:
        return [
            call
            for request in self.accepted
            if request.path == "/api/v1/calls"
            for call in msgspec.json.decode(request.body, type=CallsBody).calls
        ]


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


Factory = Callable[..., HttpExporter]


@pytest.fixture
def make_exporter(receiver: Receiver, tmp_path: Path, clock: FakeClock) -> Iterator[Factory]:
    made: list[HttpExporter] = []

    def make(**options: Any) -> HttpExporter:
        settings: dict[str, Any] = {
            "spool_dir": tmp_path / "spool",
            "clock": clock,
            "jitter": 0.0,
            "timeout_s": 2.0,
        }
        settings.update(options)
        exporter = HttpExporter(settings.pop("endpoint", receiver.url), **settings)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter._client.close()


def batch(n: int, **fields: Any) -> list[Call]:
    return [make_call(**fields) for _ in range(n)]


def test_the_exporter_fits_the_recorder(make_exporter: Factory) -> None:
    exporter = make_exporter()
    assert isinstance(exporter, BatchSink)
    assert isinstance(exporter, Ticking)
    assert exporter.name == "http"


def test_batches_arrive_as_the_exact_call_json(receiver: Receiver, make_exporter: Factory) -> None:
    exporter = make_exporter(api_key="sk-aivitals-test")
    calls = batch(3, cost_usd=Decimal("0.000123"), tags={"tenant": "acme"}, feature="search")
    exporter.write_calls(calls)
    score = Score(call_id=calls[0].id, name="faithfulness", value=0.9)
    exporter.write_scores([score])

    (sent_calls, sent_scores) = receiver.accepted
    assert sent_calls.path == "/api/v1/calls"
    assert sent_calls.headers["Authorization"] == "Bearer sk-aivitals-test"
    assert sent_calls.headers["Content-Type"] == "application/json"
    assert msgspec.json.decode(sent_calls.body, type=CallsBody).calls == calls
    # Each call exactly as msgspec encodes it: Decimal as a string, datetimes in ISO 8601.
    assert sent_calls.body == b'{"calls":[' + b",".join(map(msgspec.json.encode, calls)) + b"]}"
    sent = msgspec.json.decode(sent_calls.body)["calls"][0]
    assert sent["cost_usd"] == "0.000123"
    assert datetime.fromisoformat(sent["started_at"]) == calls[0].started_at
    assert sent_scores.path == "/api/v1/scores"
    assert msgspec.json.decode(sent_scores.body, type=ScoresBody).scores == [score]
    assert (exporter.delivered, exporter.spooled, exporter.pending_files) == (4, 0, 0)


def test_large_batches_are_split_into_requests_of_at_most_1000(
    receiver: Receiver, make_exporter: Factory
) -> None:
    calls = batch(2500)
    make_exporter().write_calls(calls)
    sizes = [len(msgspec.json.decode(r.body, type=CallsBody).calls) for r in receiver.accepted]
    assert sizes == [1000, 1000, 500]
    assert receiver.calls() == calls


def test_an_outage_is_spooled_to_disk_and_replayed_once_in_order(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter()
    calls = batch(40)
    exporter.write_calls(calls[:10])
    receiver.stop()

    with pytest.raises(ExportError, match=r"ConnectError.*10 spooled, 0 dropped, retrying in 1 s"):
        exporter.write_calls(calls[10:20])
    with pytest.raises(ExportError, match="server unavailable, next retry in 1 s"):
        exporter.write_calls(calls[20:30])  # within the back-off: spooled, no request
    assert len(list((tmp_path / "spool").glob("*.calls.json"))) == 2
    assert (exporter.spooled, exporter.pending_files) == (20, 2)

    clock.seconds += 1
    exporter.tick()  # still down: back off 2 s
    receiver.start()
    clock.seconds += 1
    exporter.tick()  # the back-off has not elapsed: nothing sent
    assert len(receiver.accepted) == 1

    clock.seconds += 1
    exporter.write_calls(calls[30:])  # the spool first, oldest first, then this batch
    assert receiver.calls() == calls
    assert (exporter.replayed, exporter.delivered, exporter.pending_files) == (20, 40, 0)
    assert list((tmp_path / "spool").iterdir()) == []


def test_503_and_timeouts_back_off_exponentially_up_to_the_cap(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock
) -> None:
    exporter = make_exporter(timeout_s=0.2, backoff_s=1.0, max_backoff_s=4.0)
    receiver.failing = Reply(status=503, body=b"overloaded")
    waits = []
    for turn in range(4):
        if turn == 3:
            receiver.failing = Reply(hang_s=1.0)
        with pytest.raises(ExportError) as error:
            exporter.write_calls(batch(1))
        waits.append(str(error.value).rsplit("retrying in ", 1)[1])
        clock.seconds += 10
    assert waits == ["1 s", "2 s", "4 s", "4 s"]
    assert "ReadTimeout" in str(error.value)

    receiver.failing = None
    exporter.tick()
    assert len(receiver.calls()) == 4
    assert exporter.pending_files == 0


def test_a_new_exporter_replays_what_an_earlier_one_left(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock
) -> None:
    receiver.stop()
    first = make_exporter()
    calls = batch(30)
    for start in (0, 10, 20):
        with pytest.raises(ExportError):
            first.write_calls(calls[start : start + 10])
    first.close()  # one last try fails: the files stay for the next start
    assert first.pending_files == 3

    receiver.start()
    second = make_exporter(endpoint=receiver.url)
    assert receiver.accepted == []  # not from the constructor (the application's thread)
    second.tick()
    assert receiver.calls() == calls
    assert (second.replayed, second.pending_files) == (30, 0)


def test_429_retry_after_is_honoured(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock
) -> None:
    exporter = make_exporter()
    receiver.script.append(Reply(status=429, headers={"Retry-After": "30"}))
    calls = batch(10)
    with pytest.raises(ExportError, match=r"HTTP 429.*retrying in 30 s"):
        exporter.write_calls(calls[:5])
    clock.seconds += 10
    with pytest.raises(ExportError, match="next retry in 20 s"):
        exporter.write_calls(calls[5:])
    exporter.tick()
    assert len(receiver.seen) == 1

    clock.seconds += 20
    exporter.tick()
    assert receiver.calls() == calls
    assert len(receiver.seen) == 3  # the refused try, then the two spooled batches


def test_beyond_its_bound_the_spool_drops_the_oldest_and_counts_them(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock
) -> None:
    calls = batch(50)
    one_file = len(b'{"calls":[' + b",".join(msgspec.json.encode(c) for c in calls[:10]) + b"]}")
    exporter = make_exporter(max_spool_bytes=int(one_file * 3.5))
    receiver.stop()
    for start in range(0, 50, 10):
        with pytest.raises(ExportError):
            exporter.write_calls(calls[start : start + 10])
    assert (exporter.pending_files, exporter.spooled, exporter.dropped) == (3, 50, 20)

    receiver.start()
    clock.seconds += 60
    exporter.tick()
    assert receiver.calls() == calls[20:]
    assert exporter.replayed == 30


def test_a_refused_batch_is_rejected_not_retried(
    receiver: Receiver,
    make_exporter: Factory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = make_exporter()
    receiver.script.append(Reply(status=422, body=b'{"detail": "calls[3].model: empty"}'))
    refused, good = batch(5), batch(5)
    with (
        caplog.at_level(logging.WARNING, "aivitals.sinks.http"),
        pytest.raises(ExportError, match=r"refused 5 calls, dropped: HTTP 422: .*calls\[3\]"),
    ):
        exporter.write_calls(refused)
    assert "calls[3].model: empty" in caplog.text
    assert (exporter.rejected, exporter.spooled, exporter.pending_files) == (5, 0, 0)

    exporter.write_calls(good)  # no back-off: the server itself is fine
    clock.seconds += 60
    exporter.tick()
    assert receiver.calls() == good
    assert len(receiver.seen) == 2


def test_a_bad_api_key_keeps_the_data_until_it_is_fixed(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock
) -> None:
    exporter = make_exporter(api_key="wrong")
    receiver.failing = Reply(status=401, body=b"invalid API key")
    with pytest.raises(ExportError, match="HTTP 401: invalid API key"):
        exporter.write_calls(batch(3))
    assert (exporter.rejected, exporter.spooled) == (0, 3)

    receiver.failing = None
    clock.seconds += 1
    exporter.tick()
    assert len(receiver.calls()) == 3


def test_a_file_claimed_by_another_process_is_left_to_it(
    receiver: Receiver, make_exporter: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    receiver.stop()
    exporter = make_exporter()
    calls = batch(20)
    for start in (0, 10):
        with pytest.raises(ExportError):
            exporter.write_calls(calls[start : start + 10])
    spool = Spool(tmp_path / "spool")
    first = spool.entries()[0]
    claimed = spool.claim(first)  # as another process would, mid-send
    assert claimed is not None

    receiver.start()
    clock.seconds += 1
    exporter.tick()
    assert receiver.calls() == calls[10:]
    assert exporter.pending_files == 1
    spool.release(claimed, first)  # that process could not reach the server after all
    exporter.tick()
    assert receiver.calls() == calls[10:] + calls[:10]


def test_claims_of_dead_processes_are_released_at_start(
    receiver: Receiver, make_exporter: Factory, tmp_path: Path
) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    calls = batch(4)
    for pid, part in ((int(dead.stdout), calls[:2]), (os.getppid(), calls[2:])):
        spool.put("calls", msgspec.json.encode({"calls": part}), count=2)
        entry = spool.entries()[-1]
        entry.path.rename(entry.path.with_name(f"{entry.path.name}.claimed-{pid}"))
    (directory / f".tmp-{int(dead.stdout)}-1").write_bytes(b'{"calls":[')

    exporter = make_exporter()
    exporter.tick()
    assert receiver.calls() == calls[:2]  # the live process's claim is still its own
    assert sorted(path.name.rsplit("-", 1)[1] for path in directory.iterdir()) == [
        str(os.getppid())
    ]


def test_a_process_that_exits_during_an_outage_leaves_its_calls_to_the_next(
    receiver: Receiver, make_exporter: Factory, tmp_path: Path
) -> None:
    receiver.stop()
    script = f"""
from aivitals.sinks.http import ExportError, HttpExporter
from tests.support.helpers import make_call
exporter = HttpExporter({receiver.url!r}, spool_dir={str(tmp_path / "spool")!r}, close_timeout_s=1)
try:
    exporter.write_calls([make_call(feature="child") for _ in range(7)])
except ExportError:
    pass
exporter.close()
"""
    cwd = Path(__file__).parent.parent
    subprocess.run([sys.executable, "-c", script], check=True, cwd=cwd, timeout=60)

    receiver.start()
    exporter = make_exporter()
    exporter.tick()
    assert [call.feature for call in receiver.calls()] == ["child"] * 7


def test_the_recorder_counts_the_outage_and_close_delivers(
    receiver: Receiver, make_exporter: Factory
) -> None:
    exporter = make_exporter()
    receiver.stop()
    recorder = Recorder(batch_sinks=[exporter], flush_interval_s=0.02)
    for _ in range(5):
        recorder.record(make_call())
    assert recorder.flush()
    assert recorder.stats.sink_errors["http"] >= 1
    assert recorder.stats.sink_failed_items["http"] == 5
    receiver.start()
    recorder.close()  # the last attempt at close ignores the back-off
    assert len(receiver.calls()) == 5
    assert exporter.pending_files == 0


def test_through_configure_the_app_never_sees_the_outage(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.stop()
    spool_dir = tmp_path / "spool"
    aivitals.configure(
        endpoint=receiver.url, spool_dir=spool_dir, prometheus=False, flush_interval_s=0.05
    )
    try:
        with aivitals.track(provider="openai", model="gpt-4o-mini", feature="search") as call:
            call.set_usage(input_tokens=1000, output_tokens=100)
        assert aivitals.flush()
        assert list(spool_dir.glob("*.calls.json"))
        receiver.start()
    finally:
        reset()  # closes the exporter: its last attempt delivers the spool
    (sent,) = receiver.calls()
    assert (sent.feature, sent.cost_usd) == ("search", Decimal("0.00021"))
    assert list(spool_dir.iterdir()) == []


def test_the_settings_come_from_the_environment() -> None:
    env = read_env(
        {
            "AIVITALS_ENDPOINT": " https://aivitals.internal:8000/ ",
            "AIVITALS_API_KEY": "sk-1",
            "AIVITALS_SPOOL_DIR": "/var/spool/aivitals",
        }
    )
    assert (env.endpoint, env.api_key, env.spool_dir) == (
        "https://aivitals.internal:8000/",
        "sk-1",
        "/var/spool/aivitals",
    )
    assert read_env({}).endpoint is None


def test_nonsense_settings_are_refused(tmp_path: Path) -> None:
    for endpoint in ("aivitals.internal:8000", "ftp://host", "http://"):
        with pytest.raises(ValueError, match="endpoint must be"):
            HttpExporter(endpoint, spool_dir=tmp_path)
    with pytest.raises(ValueError, match="max_spool_bytes"):
        HttpExporter("http://127.0.0.1:1", spool_dir=tmp_path, max_spool_bytes=0)
    with pytest.raises(ConfigError, match="endpoint: endpoint must be"):
        aivitals.configure(endpoint="localhost:8000", prometheus=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="AIVITALS_SPOOL_DIR"):
        aivitals.configure(
            endpoint="http://127.0.0.1:1", spool_dir=blocker / "spool", prometheus=False
        )


def test_the_exporter_delivers_to_a_real_aivitals_server(tmp_path: Path) -> None:
    """The SDK's exporter against `aivitals serve`'s app, not a stand-in: every call and score
    lands in the server's store, scores joined to their calls."""

    store = SqlStore.open(tmp_path / "server.db")
    runtime = build_runtime(store)
    try:
        with serve_in_thread(create_app(runtime=runtime, store=store)) as origin:
            exporter = HttpExporter(origin, spool_dir=tmp_path / "spool")
            recorder = Recorder(batch_sinks=[exporter], batch_size=100, flush_interval_s=0.05)
            calls = [make_call(latency_ms=100.0 + i, feature="export") for i in range(250)]
            for call in calls:
                recorder.record(call)
            recorder.record_score(Score(call_id=calls[0].id, name="helpful", value=0.75))
            assert recorder.flush(timeout_s=30)
            recorder.close()
            assert runtime.recorder.flush(timeout_s=30)
        stored = Queries(store.engine).calls(
            parse_since("1h", now=datetime.now(tz=calls[0].started_at.tzinfo)), limit=1000
        )
        assert sorted(s.call.id for s in stored) == sorted(c.id for c in calls)
        (scored,) = [s for s in stored if s.scores]
        assert scored.call.id == calls[0].id and scored.scores[0].value == 0.75
    finally:
        runtime.recorder.close()
        store.close()


def test_a_server_that_is_down_is_one_log_line_with_the_spool_count_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = HttpExporter(f"http://127.0.0.1:{port}", spool_dir=tmp_path / "spool")
    recorder = Recorder(batch_sinks=[exporter], flush_interval_s=0.05)
    try:
        with caplog.at_level(logging.WARNING, "aivitals.recorder"):
            for _ in range(3):
                recorder.record(make_call())
            assert recorder.flush(timeout_s=10)
    finally:
        recorder.close()
    lines = [r for r in caplog.records if r.name == "aivitals.recorder"]
    assert len(lines) == 1
    assert lines[0].exc_info is None
    message = lines[0].getMessage()
    assert "\n" not in message
    assert "aivitals sink 'http'" in message
    assert "3 spooled" in message
