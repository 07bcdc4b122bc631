"""``aivitals serve --workers N``: N server processes on one listening socket, supervised.

The parent binds the socket, then starts each worker as a fresh interpreter
(``python -m aivitals.cli.serve_worker``) that inherits the socket's file descriptor and runs
the ordinary single-process serve path on it. The parent never starts a thread, never opens the
store and never serves a request: it forwards signals, restarts a worker that dies unexpectedly
and gathers the exit statuses.

Why our own supervisor rather than uvicorn's ``--workers``: uvicorn's multiprocess mode takes an
import string and builds the app in each child, which would bypass ``serve``'s start-up (the store,
the recorder, the gateway, the alert service, and the exit status 1 when accepted calls were lost,
which its supervisor does not report). Why spawn rather than fork: a fresh interpreter inherits
no lock held by a thread of the parent, and no state a test or an import may have left behind.

A worker whose start-up fails (a bad rule file, a store it cannot open) ends the whole server
with that worker's message and status; the first worker starts alone, so such a message is said
once and a schema upgrade runs in one process.

Each worker also tells the parent it is ready through a pipe, and holds the read end of a
"lifeline" pipe whose write end only the parent holds: if the parent dies (even by ``kill -9``)
the workers see end-of-file and shut down gracefully instead of serving on, orphaned.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import pickle
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger("aivitals.server")

RESTARTS_ALLOWED = 5
"""Unexpected deaths restarted within `RESTART_WINDOW_S`; one more ends the server (status 1)."""
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 60.0
"""How long the parent waits for workers' graceful shutdown (uvicorn gives in-flight requests
30 s, then the recorder flushes) before it kills them."""
WORKER_ENV = {"UV_TCP_SINGLE_ACCEPT": "1"}
"""libuv (under uvloop) accepts one connection per wake-up and yields, instead of draining the
shared accept queue: without it the worker woken first takes a whole burst of new connections
(32 keep-alive connections opened at once all went to one worker) and the other idles."""
_POLL_S = 0.2
_READY = b"ready\n"


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """What the parent hands one worker, pickled on the worker's stdin."""

    index: int
    listen_fd: int
    ready_fd: int
    lifeline_fd: int
    run_dir: str
    params: dict[str, Any]
    """The ``serve`` command's parameters, as the parent's command line gave them."""


@dataclass(kw_only=True)
class WorkerSlot:
    """The worker side: the inherited socket, readiness, and where siblings find each other."""

    spec: WorkerSpec
    _announced: bool = field(default=False, init=False)

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def run_dir(self) -> Path:
        return Path(self.spec.run_dir)

    def socket(self) -> socket.socket:
        """The parent's listening socket (this worker's copy of its descriptor)."""
        return socket.socket(fileno=self.spec.listen_fd)

    def ready(self) -> None:
        """Tell the parent this worker is serving (once)."""
        if self._announced:
            return
        self._announced = True
        os.write(self.spec.ready_fd, _READY)
        os.close(self.spec.ready_fd)

    def watch_parent(self, on_orphaned: Callable[[], None]) -> None:
        """Call ``on_orphaned`` (on a daemon thread) when the parent process is gone."""
        fd = self.spec.lifeline_fd

        def wait() -> None:
            # Blocks until every write end is closed: only the parent holds one.
            while os.read(fd, 1):
                pass
            on_orphaned()

        threading.Thread(target=wait, name="aivitals-lifeline", daemon=True).start()


_slot: contextvars.ContextVar[WorkerSlot | None] = contextvars.ContextVar(
    "aivitals_worker_slot", default=None
)


def current_slot() -> WorkerSlot | None:
    """This process's `WorkerSlot` when it is a worker of ``serve --workers``; else None."""
    return _slot.get()


def run_worker(spec: WorkerSpec, serve: Callable[..., None]) -> None:
    """In the worker process: run ``serve(**spec.params)`` as this supervisor's worker."""
    _slot.set(WorkerSlot(spec=spec))
    serve(**spec.params)


@dataclass(kw_only=True)
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_fd: int
    ready: bool = False
    stopping: bool = False


class Supervisor:
    """Runs ``count`` workers on ``sock`` until SIGTERM or SIGINT; `run` returns the exit status.

    ``params`` are the ``serve`` command's parameters, passed to each worker as they are;
    ``announce`` gets the one "listening" line once every worker is serving.
    """

    def __init__(
        self,
        *,
        sock: socket.socket,
        count: int,
        params: Mapping[str, Any],
        announce: Callable[[str], None],
        listening: str,
        restarts_allowed: int = RESTARTS_ALLOWED,
        restart_window_s: float = RESTART_WINDOW_S,
    ) -> None:
        self._sock = sock
        self._count = count
        self._params = dict(params)
        self._announce = announce
        self._listening = listening
        self._restarts_allowed = restarts_allowed
        self._restart_window_s = restart_window_s
        self._restarts: deque[float] = deque()
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._status = 0
        self._selector = selectors.DefaultSelector()
        self.run_dir = Path(tempfile.mkdtemp(prefix="aivitals-workers-"))

    def run(self) -> int:
        """Start the workers, supervise them, stop them on a signal; the exit status."""
        lifeline_read, self._lifeline = os.pipe()
        self._lifeline_read = lifeline_read
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stop_all()
            os.close(self._lifeline)
            os.close(lifeline_read)
            self._sock.close()
            self._selector.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _supervise(self) -> int:
        # The first worker alone: a start-up error is said once, a schema upgrade runs once.
        self._start(0)
        if not self._wait_ready(lambda: self._workers[0].ready):
            return self._status
        for index in range(1, self._count):
            self._start(index)
        if not self._wait_ready(lambda: all(w.ready for w in self._workers.values())):
            return self._status
        self._announce(self._listening)
        while not self._stopping:
            self._step()
        return self._status

    def _wait_ready(self, done: Callable[[], bool]) -> bool:
        while not done():
            if self._stopping:
                return False
            if not self._step(starting=True):
                return False
        return True

    def _step(self, *, starting: bool = False) -> bool:
        """Read readiness, reap exits; False when the server must end (status set)."""
        for key, _ in self._selector.select(_POLL_S):
            worker: _Worker = key.data
            self._selector.unregister(key.fd)
            data = os.read(key.fd, len(_READY))
            os.close(key.fd)
            worker.ready = data == _READY
        for worker in list(self._workers.values()):
            code = worker.process.poll()
            if code is None or self._stopping:
                continue
            if starting:
                # Its own message is already on stderr (a config or store error, say). Later,
                # a replacement that fails to start is one more restart, within the bound.
                logger.error("worker %d exited with status %d while starting", worker.index, code)
                self._status = code if code > 0 else 1
                self._stopping = True
                return False
            if not self._restart(worker, code):
                return False
        return True

    def _restart(self, worker: _Worker, code: int) -> bool:
        """Start another worker in place of ``worker``; False past the restart bound."""
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self._restart_window_s:
            self._restarts.popleft()
        # A death we did not ask for: what its queue held may be gone (2xx ingest was committed).
        self._status = 1
        if len(self._restarts) >= self._restarts_allowed:
            logger.error(
                "worker %d (pid %d) %s; %d restarts within %gs already: stopping the server",
                worker.index,
                worker.process.pid,
                how,
                len(self._restarts),
                self._restart_window_s,
            )
            self._stopping = True
            return False
        self._restarts.append(now)
        logger.error(
            "worker %d (pid %d) %s unexpectedly; starting another",
            worker.index,
            worker.process.pid,
            how,
        )
        self._start(worker.index)
        return True

    def _start(self, index: int) -> None:
        ready_read, ready_write = os.pipe()
        spec = WorkerSpec(
            index=index,
            listen_fd=self._sock.fileno(),
            ready_fd=ready_write,
            lifeline_fd=self._lifeline_read,
            run_dir=str(self.run_dir),
            params=self._params,
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "aivitals.cli.serve_worker"],
            stdin=subprocess.PIPE,
            pass_fds=(spec.listen_fd, ready_write, self._lifeline_read),
            # Its own process group: a terminal's Ctrl+C reaches the parent only, which
            # forwards one SIGTERM (a second SIGINT would make uvicorn skip the graceful wait).
            process_group=0,
            env={**os.environ, **WORKER_ENV},
        )
        os.close(ready_write)
        assert process.stdin is not None  # stdin=PIPE
        try:
            with process.stdin:
                process.stdin.write(pickle.dumps(spec))
        except BrokenPipeError:
            pass  # it died at once: reaped, and restarted or not, like any other death
        worker = _Worker(index=index, process=process, ready_fd=ready_read)
        self._workers[index] = worker
        self._selector.register(ready_read, selectors.EVENT_READ, worker)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            for worker in self._workers.values():
                _send(worker.process, signal.SIGHUP)
            return
        # The first: SIGTERM, a graceful stop. A second, as a second Ctrl+C does to one
        # process: SIGINT after SIGTERM, on which uvicorn stops without waiting.
        again = self._stopping
        self._stopping = True
        for worker in self._workers.values():
            worker.stopping = True
            _send(worker.process, signal.SIGINT if again else signal.SIGTERM)

    def _stop_all(self) -> None:
        for worker in self._workers.values():
            if not worker.stopping:
                worker.stopping = True
                _send(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self._workers.values():
            try:
                code = worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error(
                    "worker %d (pid %d) did not stop within %gs: killed",
                    worker.index,
                    worker.process.pid,
                    STOP_TIMEOUT_S,
                )
                worker.process.kill()
                code = worker.process.wait()
            # Ended by our SIGTERM before its server took the signal over: still starting, so it
            # had accepted nothing.
            if code not in (0, -signal.SIGTERM):
                # 1: that worker lost accepted calls and said so; other codes are said above.
                self._status = self._status or (code if code > 0 else 1)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fd)
            os.close(key.fd)


def _send(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
