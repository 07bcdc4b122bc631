"""A store whose writes run in a child process: the SDK's store behind a busy application.

The store sink writes from a thread of the application. SQLite releases the GIL around every
statement, and while the application's own thread runs Python flat out each hand-back waits for
the interpreter's switch interval (5 ms): a batch of ten statements spends most of its time
waiting, and the recorder's queue overflows (docs/benchmarks.md, "Under a busy application").
`ProcessWrittenStore` is an `SqlStore` whose `write` sends the batch to a child process that
holds its own `SqlStore` on the same database and answers when the batch is committed: the
application's side is encoding the batch (msgpack) and two pipe operations, and the SQL runs on
another core, under another GIL.

What stays as it was: every read (queries, the dashboard, retention, captured content) goes
through this process's own engine; `write` returns only once the child has committed, or raises
`StoreError`, so the `StoreSink` above it keeps its retries, buffer and counts unchanged. A child
that dies or stops answering makes the write fail as retryable (the batch may have been
committed: the retry is recorded once, since a stored id is skipped) and the next write starts a
new child. A forked process starts its own child on its first write.

Chosen with ``aivitals.configure(store=..., store_writer="process")`` or
``AIVITALS_STORE_WRITER=process``. ``auto`` (`open_written`) is the child when the process may
run on two cores or more and the child starts, else the thread, said in a warning: the default
of ``aivitals serve``, a server that owns its host, whose gateway and ingest threads fed the
thread writer faster than it kept up. The SDK's default stays the thread: a child process is a
surprise inside someone else's application, and some hosts (a serverless function, a
locked-down container) do not allow one.

The child is ``python -m aivitals.store.writer_process FD_IN FD_OUT``, not a
`multiprocessing` start: `spawn` would import the application's ``__main__`` again in the child,
and `fork` copies a threaded process. It talks over two pipes framed by
`multiprocessing.connection.Connection` (length-prefixed messages).

>>> import tempfile, pathlib
>>> from aivitals.model import Call
>>> folder = tempfile.TemporaryDirectory()
>>> store = ProcessWrittenStore.open(pathlib.Path(folder.name) / "aivitals.db")
>>> [call.model for call in store.write([Call(provider="openai", model="gpt-4o", latency_ms=9.0)], [])]
['gpt-4o']
>>> store.close()
>>> folder.cleanup()
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy

from aivitals.collector import settle
from aivitals.config import check_store_writer
from aivitals.model import Call, Outcome, Score
from aivitals.store.engine import BUSY_TIMEOUT_S
from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore

log = logging.getLogger("aivitals.store")

# A commit can wait for SQLite's lock up to its busy timeout; past that and a margin, the child
# is taken for hung, killed, and the write fails as retryable.
_ANSWER_TIMEOUT_S = BUSY_TIMEOUT_S + 60.0
_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0


class _Batch(msgspec.Struct, array_like=True):
    calls: list[Call]
    scores: list[Score]
    outcomes: list[Outcome]


class _Answer(msgspec.Struct, array_like=True):
    """The child's answer: the ids newly stored, or why not."""

    new_ids: list[str] | None = None
    error: str | None = None
    retryable: bool = True
    retry_after_s: float | None = None


class ProcessWrittenStore(SqlStore):
    """An `SqlStore` whose `write` runs in a child process; see the module docstring.

    Open it with ``ProcessWrittenStore.open(target)``, as an `SqlStore`; the child starts on the
    first write and opens the same database (its URL goes through the pipe, not the command
    line, where a password would show in ``ps``).
    """

    def __init__(self, engine: sqlalchemy.Engine, *, name: str) -> None:
        super().__init__(engine, name=name)
        self._url = engine.url.render_as_string(hide_password=False)
        self._child: _Child | None = None
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(_Answer)

    def write(
        self, calls: Sequence[Call], scores: Sequence[Score], outcomes: Sequence[Outcome] = ()
    ) -> list[Call]:
        """Store a batch in the child's transaction (see `SqlStore.write`); raise `StoreError`
        if it was not committed."""
        if not calls and not scores and not outcomes:
            return []
        body = self._encoder.encode(_Batch(list(calls), list(scores), list(outcomes)))
        with self._lock:
            child = self._running_child()
            try:
                child.send(body)
                answer = self._decoder.decode(child.receive(_ANSWER_TIMEOUT_S))
            except (OSError, EOFError, TimeoutError, msgspec.DecodeError) as exc:
                self._child = None
                why = _describe(exc, child.process.poll())
                child.stop(kill=True)
                raise StoreError(
                    f"the store's writer process failed ({why}); a new one starts with the "
                    "next write",
                    retryable=True,
                ) from None
        if answer.new_ids is None:
            raise StoreError(
                answer.error or "the store's writer process refused the batch",
                retryable=answer.retryable,
                retry_after_s=answer.retry_after_s,
            )
        return _newly_stored(calls, answer.new_ids)

    def start(self) -> None:
        """Start the child now, not at the first write; raise `StoreError` if it does not."""
        with self._lock:
            self._running_child()

    def close(self) -> None:
        """Let the child finish what it was given and exit, then close this process's pool."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop(kill=False)
        super().close()

    def _running_child(self) -> _Child:
        child = self._child
        if child is None or child.pid_of_parent != os.getpid():
            # None yet, or one a parent process started before it forked us: ours is new.
            child = self._child = _Child.start(self._url)
        return child


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def open_written(target: str | Path, writer: str) -> SqlStore:
    """The store at ``target`` written as ``writer`` says: ``thread`` an `SqlStore`,
    ``process`` a `ProcessWrittenStore` (its child starts at the first write), ``auto`` a
    `ProcessWrittenStore` whose child has started, when there are two cores or more, else an
    `SqlStore`; a child that cannot start is logged as a warning, with why.

    Raises `StoreError` as `SqlStore.open` does.

    >>> import tempfile, pathlib
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = open_written(pathlib.Path(folder.name) / "aivitals.db", "thread")
    >>> type(store).__name__
    'SqlStore'
    >>> store.close()
    >>> folder.cleanup()
    """
    writer = check_store_writer(writer)
    if writer == "thread" or (writer == "auto" and usable_cores() < 2):
        # One core: the child would only take turns with this process, and pay the pipe.
        return SqlStore.open(target)
    store = ProcessWrittenStore.open(target)
    if writer == "process":
        return store
    try:
        store.start()
    except StoreError as exc:
        store.close()
        log.warning(
            "aivitals: %s; the store is written from a thread of this process instead "
            "(store writer 'auto'; 'thread' says so without trying)",
            exc,
        )
        return SqlStore.open(target)
    return store


def _newly_stored(calls: Sequence[Call], new_ids: list[str]) -> list[Call]:
    """The given calls the child stored, the very objects, in order (a call given twice: the
    first), as `SqlStore.write` returns them."""
    wanted = set(new_ids)
    kept: list[Call] = []
    for call in calls:
        if call.id in wanted:
            wanted.discard(call.id)
            kept.append(call)
    return kept


def _describe(exc: BaseException, status: int | None = None) -> str:
    if status is not None:
        return f"it exited with status {status}"
    if isinstance(exc, EOFError):
        return "it exited"
    if isinstance(exc, TimeoutError):
        return f"no answer in {_ANSWER_TIMEOUT_S:g} s"
    return str(exc) or type(exc).__name__


class _Child:
    """One writer process and the two pipes to it, owned by the process that started it."""

    def __init__(
        self, process: subprocess.Popen[bytes], to_child: Connection, answers: Connection
    ) -> None:
        self.process = process
        self.pid_of_parent = os.getpid()
        self._to_child = to_child
        self._answers = answers

    @classmethod
    def start(cls, url: str) -> _Child:
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        try:
            process = subprocess.Popen(  # noqa: S603  # this interpreter, our own module
                [
                    sys.executable,
                    "-m",
                    "aivitals.store.writer_process",
                    str(child_reads),
                    str(child_writes),
                ],
                pass_fds=(child_reads, child_writes),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # This process's import path: an application run from a source tree (or with
                # sys.path changed) has the child import the same aivitals as it does.
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                # Its own process group: a terminal's Ctrl+C stops the application, which then
                # closes the store; the child must not die first, with a batch half written.
                process_group=0,
            )
        except OSError as exc:
            for fd in (child_reads, parent_writes, parent_reads, child_writes):
                os.close(fd)
            raise StoreError(
                f"cannot start the store's writer process ({exc})", retryable=True
            ) from None
        os.close(child_reads)
        os.close(child_writes)
        child = cls(
            process,
            Connection(parent_writes, readable=False),
            Connection(parent_reads, writable=False),
        )
        _close_in_forks(child)
        try:
            child.send(url.encode())
            ready = msgspec.msgpack.decode(child.receive(_START_TIMEOUT_S), type=_Answer)
        except (OSError, EOFError, TimeoutError, msgspec.DecodeError) as exc:
            child.stop(kill=True)
            raise StoreError(
                f"the store's writer process did not start ({_describe(exc)}; its error, if "
                "any, is on stderr)",
                retryable=True,
            ) from None
        if ready.error is not None:
            child.stop(kill=True)
            raise StoreError(f"the store's writer process: {ready.error}", retryable=True)
        return child

    def send(self, body: bytes) -> None:
        self._to_child.send_bytes(body)

    def receive(self, timeout_s: float) -> bytes:
        if not self._answers.poll(timeout_s):
            raise TimeoutError
        return self._answers.recv_bytes()

    def stop(self, *, kill: bool) -> None:
        """Close the pipes (the child exits at their end, its last batch done); kill it if
        asked, or if it has not gone in `_STOP_TIMEOUT_S`."""
        self.close_pipes()
        if kill:
            self.process.kill()
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("aivitals: the store's writer process did not exit; killed")
            self.process.kill()
            self.process.wait()

    def close_pipes(self) -> None:
        for connection in (self._to_child, self._answers):
            if not connection.closed:
                connection.close()


def _close_in_forks(child: _Child) -> None:
    # A forked copy of this process holds the pipes too; if it kept them, the child would not
    # see their end when this process closes its store. Weak: forks must not keep it alive.
    ref = weakref.ref(child)

    def _after_fork() -> None:
        alive = ref()
        if alive is not None:
            alive.close_pipes()

    os.register_at_fork(after_in_child=_after_fork)


def _serve(requests: Connection, answers: Connection) -> None:
    """The child: read the store's URL, open it, say so, then commit each batch and answer
    until the pipe ends."""
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(_Batch)
    try:
        store = SqlStore.open(requests.recv_bytes().decode())
    except StoreError as exc:
        answers.send_bytes(encoder.encode(_Answer(error=str(exc))))
        return
    answers.send_bytes(encoder.encode(_Answer(new_ids=[])))
    settle()  # this process is ours: a store write spent a tenth of its CPU in the collector
    try:
        while True:
            try:
                body = requests.recv_bytes()
            except EOFError:
                return
            answers.send_bytes(encoder.encode(_commit(store, decoder, body)))
    finally:
        store.close()


def _commit(store: SqlStore, decoder: msgspec.msgpack.Decoder[_Batch], body: bytes) -> _Answer:
    try:
        batch = decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _Answer(error=f"the store's writer process cannot read a batch: {exc}")
    try:
        new = store.write(batch.calls, batch.scores, batch.outcomes)
    except StoreError as exc:
        return _Answer(error=str(exc), retryable=exc.retryable, retry_after_s=exc.retry_after_s)
    except Exception as exc:  # the parent decides; the child must answer
        return _Answer(error=f"{type(exc).__name__}: {exc}")
    return _Answer(new_ids=[call.id for call in new])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aivitals.store.writer_process FD_IN FD_OUT`` (started by the parent)."""
    args: list[Any] = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m aivitals.store.writer_process FD_IN FD_OUT", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="aivitals store writer: %(message)s")
    requests = Connection(int(args[0]), writable=False)
    answers = Connection(int(args[1]), readable=False)
    try:
        _serve(requests, answers)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return 0  # the parent went away first; what it sent was committed or is its to retry
    return 0


if __name__ == "__main__":
    sys.exit(main())
