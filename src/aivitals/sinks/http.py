"""`HttpExporter`: the recorder's batches to an aivitals server, riding out outages on disk.

Batches go out as ``POST {endpoint}/api/v1/calls`` (``{"calls": [...]}``, each call exactly
``msgspec.json.encode(call)``) and ``POST {endpoint}/api/v1/scores``, at most 1000 items and
4 MB per request, from the recorder's worker thread (never the application's).

What the server answers decides what happens to a request:

- **2xx**: delivered.
- **connection error, timeout, 408, 429, 5xx**, and **401/403/404** (a wrong key or endpoint is
  fixed by the operator, not by dropping data): the server is *unavailable*. The request body goes
  to the on-disk `Spool` and the exporter backs off (exponential, with jitter; a ``Retry-After``
  is honoured). Once the back-off has elapsed, the next batch or the worker's tick replays the
  spool oldest first, then sends the new batch. Files outlive the process: the next start
  replays them.
- **any other 4xx** (422 invalid, 413 too big...): the server *refuses* this data and would refuse
  it again. The whole request is dropped and counted in ``rejected``, and the server's message is
  logged (at most once a minute). The batch is not split to find the bad item.

Failure semantics, as `StoreSink`: a batch that did not reach the server *now* raises
`ExportError` out of ``write_calls``/``write_scores`` even though it is spooled, so the recorder
counts the outage (``aivitals_sink_errors{sink="http"}``) and logs it once a minute. What was lost
for good is ``dropped`` (spool bound, or a spool that cannot be written) plus ``rejected``.

Delivery is at least once: a request whose answer was lost (a timeout after the server stored it)
is sent again. Every call and score carries its id, and the server skips ids it already has.

>>> import tempfile
>>> folder = tempfile.TemporaryDirectory()
>>> exporter = HttpExporter("http://127.0.0.1:8000", spool_dir=folder.name)
>>> exporter.pending_files, exporter.spooled, exporter.rejected
(0, 0, 0)
>>> exporter.close()
>>> folder.cleanup()
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import httpx
import msgspec

from aivitals.model import Call, Outcome, Score
from aivitals.retry import Backoff, RetryPolicy, parse_retry_after
from aivitals.sinks.spool import Kind, Spool, default_spool_dir

log = logging.getLogger("aivitals.sinks.http")

MAX_ITEMS_PER_REQUEST = 1000
# The server takes 5 MB; the margin covers a proxy counting differently.
MAX_BYTES_PER_REQUEST = 4_000_000
# Spool files replayed per write or tick: after a long outage the backlog goes out over several
# turns instead of stalling the worker (and filling the recorder's queue) for minutes.
_FILES_PER_TURN = 20
_RECOVER_INTERVAL_S = 60.0
_LOG_INTERVAL_S = 60.0
# Not the data's fault: the server is down, busy, or the operator must fix a key or a URL.
_RETRY_STATUSES = frozenset({401, 403, 404, 408, 429})


class ExportError(Exception):
    """A batch did not reach the server now. ``retryable``: it was spooled and will be sent later.

    >>> str(ExportError("server unavailable", retryable=True))
    'server unavailable'
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Unavailable(Exception):
    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class _Refused(Exception):
    pass


_Body = tuple[bytes, int]
"""A request body and how many calls or scores it holds."""


class HttpExporter:
    """A batch sink sending calls and scores to the aivitals server at ``endpoint``.

    See the module docstring for what happens when the server fails. ``spool_dir`` defaults to
    `default_spool_dir` (``~/.cache/aivitals/spool/<hash of endpoint>``), shared by every process
    exporting to that endpoint; ``max_spool_bytes`` bounds it. ``close_timeout_s`` bounds the last
    delivery attempt at close. ``clock`` (monotonic seconds) and ``rng`` (0 <= x < 1, for jitter)
    are injectable for tests; ``transport`` is passed to the `httpx.Client`.
    """

    name = "http"

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        spool_dir: str | Path | None = None,
        max_spool_bytes: int = 100 * 1024 * 1024,
        timeout_s: float = 10.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        jitter: float = 0.5,
        close_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        endpoint = _check_endpoint(endpoint)
        if timeout_s <= 0 or backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError("timeout_s must be > 0 and 0 < backoff_s <= max_backoff_s")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        self.endpoint = endpoint
        self.spooled = 0
        self.replayed = 0
        self.dropped = 0
        self.rejected = 0
        self.delivered = 0
        directory = Path(spool_dir) if spool_dir is not None else default_spool_dir(endpoint)
        self.spool = Spool(directory.expanduser(), max_bytes=max_spool_bytes)
        self._urls: dict[Kind, str] = {
            "calls": f"{endpoint}/api/v1/calls",
            "scores": f"{endpoint}/api/v1/scores",
            "outcomes": f"{endpoint}/api/v1/outcomes",
        }
        self._headers = {"Content-Type": "application/json", "User-Agent": "aivitals"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout_s = timeout_s
        self._transport = transport
        self._client = self._new_client()
        self._encoder = msgspec.json.Encoder()
        self._backoff = Backoff(
            RetryPolicy(first_s=backoff_s, max_s=max_backoff_s, max_attempts=None, jitter=jitter),
            clock=clock,
            rng=rng,
        )
        self._close_timeout_s = close_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_refusal_log = float("-inf")
        # What earlier runs left goes out on the first tick, from the worker, not from here
        # (configure runs on the application's thread).
        self._stale_claim_s = max(120.0, 4 * timeout_s)
        self.spool.recover(stale_after_s=self._stale_claim_s)
        self._next_recover = clock() + _RECOVER_INTERVAL_S
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    @property
    def pending_files(self) -> int:
        """Request bodies waiting in the spool (from any process sharing it)."""
        return self.spool.file_count()

    def buffered(self) -> Mapping[str, int]:
        """Calls and scores waiting in the spool (from any process sharing it)."""
        return {"exporter_spool": sum(entry.count for entry in self.spool.entries())}

    def lost(self) -> Mapping[str, int]:
        """Items lost for good: the spool's bound or an unwritable spool, and server refusals."""
        return {"overflow": self.dropped, "refused": self.rejected}

    def write_calls(self, calls: Sequence[Call]) -> None:
        """Send ``calls`` (after the spool); raise `ExportError` if they did not arrive now."""
        self._export("calls", calls)

    def write_scores(self, scores: Sequence[Score]) -> None:
        """Send ``scores`` (after the spool); raise `ExportError` if they did not arrive now."""
        self._export("scores", scores)

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Send ``outcomes`` (after the spool); raise `ExportError` if they did not arrive now."""
        self._export("outcomes", [wire_outcome(outcome) for outcome in outcomes])

    def tick(self) -> None:
        """Replay the spool once the back-off has elapsed; release claims of dead processes."""
        with self._lock:
            now = self._clock()
            if now >= self._next_recover:
                self._next_recover = now + _RECOVER_INTERVAL_S
                self.spool.recover(stale_after_s=self._stale_claim_s)
            if not self._backoff.ready:
                return
            try:
                self._replay(turns=_FILES_PER_TURN)
            except _Unavailable as exc:
                self._back_off(exc)  # counted when those items were first spooled

    def close(self) -> None:
        """Try once more (back-off or not, within ``close_timeout_s``) to send the spool.

        What is still undelivered stays on disk for the next start; it is not counted as dropped.
        """
        with self._lock:
            deadline = self._clock() + self._close_timeout_s
            try:
                self._replay(turns=None, deadline=deadline)
            except _Unavailable as exc:
                log.warning(
                    "aivitals: the server at %s is unavailable (%s); %d request bodies stay in "
                    "%s for the next start",
                    self.endpoint,
                    exc,
                    self.spool.file_count(),
                    self.spool.directory,
                )
            self._client.close()

    def _export(self, kind: Kind, items: Sequence[Call | Score | _OutcomeBody]) -> None:
        bodies = self._encode(kind, items)
        with self._lock:
            wait_s = self._backoff.wait_s
            if wait_s > 0:
                self._keep(kind, bodies)
                raise ExportError(
                    f"server unavailable, next retry in {round(wait_s, 1):g} s; {self._counts()}",
                    retryable=True,
                )
            try:
                backlog = self._replay(turns=_FILES_PER_TURN)
            except _Unavailable as exc:
                self._keep(kind, bodies)
                raise self._back_off(exc) from None
            if backlog:
                self._keep(kind, bodies)  # behind the backlog, so order is kept
                return
            refused: _Refused | None = None
            refused_count = 0
            for index, (body, count) in enumerate(bodies):
                try:
                    self._post(kind, body)
                except _Unavailable as exc:
                    self._keep(kind, bodies[index:])
                    raise self._back_off(exc) from None
                except _Refused as exc:
                    self._refused(kind, count, exc)
                    refused, refused_count = exc, refused_count + count
                else:
                    self.delivered += count
            if refused is not None:
                raise ExportError(
                    f"the server refused {refused_count} {kind}, dropped: {refused}",
                    retryable=False,
                )

    def _encode(self, kind: Kind, items: Sequence[Call | Score | _OutcomeBody]) -> list[_Body]:
        """Request bodies of at most `MAX_ITEMS_PER_REQUEST` items and `MAX_BYTES_PER_REQUEST`."""
        head = b'{"' + kind.encode() + b'":['
        bodies: list[_Body] = []
        parts: list[bytes] = []
        size = len(head) + 2
        for item in items:
            part = self._encoder.encode(item)
            if parts and (
                len(parts) >= MAX_ITEMS_PER_REQUEST or size + len(part) > MAX_BYTES_PER_REQUEST
            ):
                bodies.append((head + b",".join(parts) + b"]}", len(parts)))
                parts, size = [], len(head) + 2
            parts.append(part)
            size += len(part) + 1
        if parts:
            bodies.append((head + b",".join(parts) + b"]}", len(parts)))
        return bodies

    def _replay(self, *, turns: int | None, deadline: float | None = None) -> bool:
        """Send spool files oldest first; True if some are left for a later turn.

        Raises `_Unavailable` (the file goes back in line) when the server cannot be reached.
        """
        entries = self.spool.entries()
        for done, entry in enumerate(entries):
            if (turns is not None and done >= turns) or (
                deadline is not None and self._clock() >= deadline
            ):
                return True
            claimed = self.spool.claim(entry)
            if claimed is None:
                continue  # another process is sending it
            try:
                body = claimed.read_bytes()
                self._post(entry.kind, body, deadline=deadline)
            except _Unavailable:
                self.spool.release(claimed, entry)
                raise
            except _Refused as exc:
                self._refused(entry.kind, entry.count, exc)
            except OSError as exc:
                log.warning("aivitals: unreadable spool file %s dropped: %s", claimed, exc)
                self.dropped += entry.count
            else:
                self.replayed += entry.count
                self.delivered += entry.count
            self.spool.remove(claimed)
        return False

    def _post(self, kind: Kind, body: bytes, *, deadline: float | None = None) -> None:
        timeout = self._timeout_s
        if deadline is not None:
            timeout = max(0.1, min(timeout, deadline - self._clock()))
        try:
            response = self._client.post(self._urls[kind], content=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            self._backoff.succeeded()
            return
        detail = _detail(response)
        if 400 <= status < 500 and status not in _RETRY_STATUSES:
            raise _Refused(detail)
        retry_after_s = (
            parse_retry_after(response.headers.get("Retry-After")) if status in {429, 503} else None
        )
        raise _Unavailable(detail, retry_after_s)

    def _keep(self, kind: Kind, bodies: Sequence[_Body]) -> None:
        for body, count in bodies:
            try:
                self.dropped += self.spool.put(kind, body, count=count)
            except OSError as exc:
                self.dropped += count
                raise ExportError(
                    f"the spool {self.spool.directory} cannot be written ({exc}); "
                    f"{count} {kind} dropped",
                    retryable=False,
                ) from exc
            self.spooled += count

    def _back_off(self, exc: _Unavailable) -> ExportError:
        """Grow the back-off; the error to raise (the items are spooled)."""
        delay_s = self._backoff.failed(retry_after_s=exc.retry_after_s)
        return ExportError(
            f"{exc}; {self._counts()}, retrying in {round(delay_s, 1):g} s", retryable=True
        )

    def _refused(self, kind: Kind, count: int, exc: _Refused) -> None:
        self.rejected += count
        now = time.monotonic()
        if now - self._last_refusal_log >= _LOG_INTERVAL_S:
            self._last_refusal_log = now
            log.warning(
                "aivitals: the server at %s refused %d %s, dropped (%d refused so far): %s",
                self.endpoint,
                count,
                kind,
                self.rejected,
                exc,
            )

    def _counts(self) -> str:
        return f"{self.spooled} spooled, {self.dropped} dropped"

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            headers=self._headers, timeout=self._timeout_s, transport=self._transport
        )

    def _reset_after_fork(self) -> None:
        # The child must not share the parent's pooled sockets (nor a lock held at the fork); the
        # old client is dropped, not closed, since closing could disturb the parent's connections.
        self._lock = threading.Lock()
        self._client = self._new_client()


def _after_fork(ref: weakref.ref[HttpExporter]) -> None:
    exporter = ref()
    if exporter is not None:
        exporter._reset_after_fork()


def _check_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in {"http", "https"} or not url.host or url.query:
        raise ValueError(f"endpoint must be the server's http:// or https:// URL, got {endpoint!r}")
    return endpoint


def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {text[:300]}" if text else f"HTTP {response.status_code}"


class _OutcomeBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An outcome as ``POST /api/v1/outcomes`` takes it: the pair as labels or as numbers."""

    id: str
    call_id: str
    name: str
    predicted: str | float
    actual: str | float
    probability: float | None = None
    source: str
    created_at: datetime
    model: str | None = None
    feature: str | None = None


def wire_outcome(outcome: Outcome) -> _OutcomeBody:
    """``outcome`` in the ingest API's shape, which reads its kind back from the values."""
    pair: tuple[str | float | None, str | float | None] = (
        (outcome.predicted, outcome.actual)
        if outcome.kind == "class"
        else (outcome.predicted_value, outcome.actual_value)
    )
    predicted, actual = pair
    assert predicted is not None and actual is not None  # an Outcome's invariant, by its kind
    return _OutcomeBody(
        id=outcome.id,
        call_id=outcome.call_id,
        name=outcome.name,
        predicted=predicted,
        actual=actual,
        probability=outcome.probability,
        source=outcome.source,
        created_at=outcome.created_at,
        model=outcome.model,
        feature=outcome.feature,
    )
