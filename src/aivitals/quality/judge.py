"""`LlmJudge`: a sample of calls graded by an OpenAI-compatible model, in the background.

A `ContentConsumer` of the quality stage. For each call it decides, on the quality worker,
whether to judge it (the sampling rate of `JudgeConfig`, by the call's id, so every replica that
sees a call decides the same; the daily budget) and queues it to its own bounded queue. Its own
worker threads (``max_concurrency`` of them, named ``aivitals-judge-N``) send the rubric and the
call's content to ``{base_url}/chat/completions`` and turn the verdict into scores
``judge.<criterion>`` (``source="judge"``, the reason as the comment) through
``recorder.record_score``. Nothing here runs on the caller's thread, nor makes the quality
worker wait: a full queue drops and counts.

Each request the judge sends is itself recorded as a `Call` with ``feature="aivitals-judge"``,
priced by the recorder from the endpoint's usage; those prices are what the daily budget adds
up. The judge's calls carry no content, so they never reach the quality stage: they are never
evaluated nor judged.

What happens to every call offered to the judge is counted in `JudgeStats.outcomes` (one of
`OUTCOMES`), exported as ``aivitals_judge_requests_total{outcome}``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from aivitals.attribution import Attribution
from aivitals.config import ConfigError
from aivitals.content import CallContent
from aivitals.draft import CallDraft
from aivitals.errors import INVALID_RESPONSE, classify_response
from aivitals.metric_schema import JUDGE_OUTCOMES
from aivitals.model import Call, Score, utc_now
from aivitals.quality.judge_budget import DailySpend
from aivitals.quality.judge_config import JUDGE_FEATURE, JudgeConfig
from aivitals.quality.judge_prompt import (
    JudgeCase,
    MalformedVerdict,
    case_from,
    judge_messages,
    read_verdict,
    redacted,
)
from aivitals.recorder import Recorder
from aivitals.retry import parse_retry_after
from aivitals.usage import TokenUsage, usage_from_openai

if TYPE_CHECKING:
    from aivitals.query import Queries

log = logging.getLogger("aivitals.quality.judge")

OUTCOMES = JUDGE_OUTCOMES
"""What became of a call offered to the judge: graded (``judged``); the verdict could not be
read (``malformed``); the endpoint failed after the retries (``failed``); the day's budget was
spent (``over_budget``); the judge's queue was full or it was shutting down (``dropped``); not
in the sample (``not_sampled``); nothing to judge: no question, no answer, or a judge call
(``skipped``)."""

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_ERROR_LOG_INTERVAL_S = 60.0
_STOP = None


class JudgeStats:
    """What the judge went through; read by `aivitals.quality.judge_metrics` at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        self.retries = 0
        self.missing_criteria = 0
        """Criteria a readable verdict left ungraded (absent, not a number, outside 0..1)."""

    def count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


class LlmJudge:
    """The judge: register it on ``recorder.quality`` (`build_runtime` does, given a config).

    ``timezone`` is the runtime's (the config's own wins); ``clock`` and ``transport`` (an
    ``httpx`` transport) are for tests. Raises `ConfigError` when the key's variable is unset,
    or when a budget is set for a model aivitals has no price for (its spend could not be
    counted).
    """

    name = "judge"

    def __init__(
        self,
        config: JudgeConfig,
        *,
        recorder: Recorder,
        timezone: str = "UTC",
        clock: Callable[[], datetime] = utc_now,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.stats = JudgeStats()
        self._recorder = recorder
        self.budget = DailySpend(
            config.daily_cap_usd, timezone=config.timezone or timezone, clock=clock
        )
        if config.daily_cap_usd is not None and not _priced(recorder, config):
            raise ConfigError(
                f"judge.max_daily_usd: aivitals has no price for the judge model "
                f"{config.model!r} (provider {config.provider!r}), so its spend cannot be "
                "counted; add a price override (docs/pricing.md) or set provider and model to "
                "a priced pair"
            )
        headers = dict(config.headers)
        key = config.resolve_api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self._client_options: dict[str, Any] = {
            "base_url": config.base_url.rstrip("/"),
            "timeout": config.timeout_s,
            "headers": headers,
            "transport": transport,
        }
        self._descriptions = {c.name: c.description for c in config.criteria}
        self._closed = False
        self._last_error_log = -_ERROR_LOG_INTERVAL_S
        self._start()
        # A weak reference: the fork hook must not keep every judge ever built alive.
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def _start(self) -> None:
        self._client = httpx.Client(**self._client_options)
        self._queue: queue.Queue[tuple[Call, JudgeCase] | None] = queue.Queue(
            self.config.queue_size
        )
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"aivitals-judge-{index}", daemon=True)
            for index in range(self.config.max_concurrency)
        ]
        for worker in self._workers:
            worker.start()

    def _after_fork(self) -> None:
        # A forked child (gunicorn-style workers) inherits no thread, perhaps a held lock, and
        # the parent's connections: it starts afresh, what the parent had queued is the
        # parent's to judge.
        if not self._closed:
            self._start()

    @property
    def queue_depth(self) -> int:
        """Calls waiting for a judge worker."""
        return self._queue.qsize()

    def on_content(self, call: Call, content: CallContent) -> None:
        """Sample ``call`` and queue it for judging; never blocks (a full queue drops)."""
        if call.feature == JUDGE_FEATURE:
            self.stats.count("skipped")
            return
        rate = self.config.rate_for(
            model=call.model, feature=call.feature, prompt_version=call.prompt_version
        )
        if not sampled(call.id, rate):
            self.stats.count("not_sampled")
            return
        case = case_from(content, self.config.criterion_names)
        if case is None:
            self.stats.count("skipped")
            return
        if not self.budget.allows():
            self.stats.count("over_budget")
            return
        with self._idle:
            if self._closed:
                self.stats.count("dropped")
                return
            try:
                self._queue.put_nowait((call, case))
            except queue.Full:
                self.stats.count("dropped")
                return
            self._pending += 1

    def reload_spend(self, queries: Queries) -> Decimal:
        """Read today's judge spend back from the store, so a restart does not reset the
        budget's day; returns it. Called once at start (`aivitals serve` does)."""
        # Imported here: the query layer (SQLAlchemy) is only paid for by processes with a store.
        from aivitals.query.filters import Filters  # noqa: PLC0415
        from aivitals.query.window import Window  # noqa: PLC0415

        start = self.budget.day_start()
        window = Window(start, utc_now() + timedelta(seconds=1))
        found = queries.summary(window, Filters(feature=JUDGE_FEATURE), quality=False)
        spent = Decimal(found.total_cost_usd or 0)
        self.budget.set_spent(spent)
        return spent

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until every queued call is judged (its scores recorded); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop: calls still queued are dropped and counted, a retry waiting is cut short."""
        with self._idle:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.stats.count("dropped")
                self._done()
        for _ in self._workers:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._client.close()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            call, case = item
            try:
                self.stats.count(self._judge(call, case))
            except Exception:  # the worker outlives anything: count, log, go on
                self.stats.count("failed")
                self._log_error("judging a call")
            finally:
                self._done()

    def _judge(self, call: Call, case: JudgeCase) -> str:
        if not self.budget.allows():  # spent while this call waited in the queue
            return "over_budget"
        if self.config.redact:  # here, not on the quality worker: the detectors take time
            case = redacted(case)
        body = {
            "model": self.config.model,
            "messages": judge_messages(case, self._descriptions),
            "response_format": {"type": "json_object"},
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        policy = self.config.retry
        attempts = 0
        while True:
            if self._stop.is_set():
                return "dropped"
            attempts += 1
            reply, retry_after_s = self._send(body)
            if isinstance(reply, dict):
                break
            if not reply or policy.gave_up(attempts):
                return "failed"
            self.stats.add("retries")
            # Waiting here holds only this judge worker; close() cuts the wait short.
            if self._stop.wait(policy.delay(attempts, retry_after_s=retry_after_s)):
                return "dropped"
        try:
            verdict = read_verdict(_reply_text(reply), case.criteria)
        except MalformedVerdict as exc:
            log.debug("aivitals judge: malformed verdict for call %s: %s", call.id, exc)
            return "malformed"
        if verdict.missing:
            self.stats.add("missing_criteria", len(verdict.missing))
        for criterion, (value, reason) in verdict.scores.items():
            self._recorder.record_score(
                Score(
                    call_id=call.id,
                    name=f"judge.{criterion}",
                    value=value,
                    source="judge",
                    comment=reason,
                    model=call.model,
                    feature=call.feature,
                )
            )
        return "judged"

    def _send(self, body: dict[str, Any]) -> tuple[dict[str, Any] | bool, float | None]:
        """One request, recorded as a judge call: the reply's JSON, or whether to try again
        (with the server's ``Retry-After``)."""
        config = self.config
        draft = CallDraft(
            provider=config.provider,
            model=config.model,
            attribution=Attribution(feature=JUDGE_FEATURE),
        )
        started = time.perf_counter()
        retry_after_s = None
        result: dict[str, Any] | bool = False
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            draft.fail(exc)
            result = True  # down, refused, timed out: all worth another try
        else:
            error = classify_response(response.status_code, response.content)
            if error is not None:
                draft.fail(error)
                retry_after_s = parse_retry_after(response.headers.get("retry-after"))
                result = response.status_code in _RETRYABLE_STATUS or response.status_code >= 500
            else:
                try:
                    data = response.json()
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    draft.http_status = response.status_code
                    draft.set_tokens(usage_from_openai(data.get("usage") or {}))
                    model = data.get("model")
                    draft.response_model = model if isinstance(model, str) and model else None
                    result = data
                else:
                    draft.fail(replace(INVALID_RESPONSE, http_status=response.status_code))
        latency_ms = (time.perf_counter() - started) * 1000.0
        self._record(draft, latency_ms)
        return result, retry_after_s

    def _record(self, draft: CallDraft, latency_ms: float) -> None:
        try:
            recorded = self._recorder.record(draft.freeze(latency_ms=latency_ms))
        except Exception:  # a reply the Call cannot hold (absurd usage): the verdict still counts
            self._log_error("recording a judge call")
            return
        if recorded.cost_usd is not None:
            self.budget.add(recorded.cost_usd)

    def _log_error(self, doing: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log = now
            log.exception("aivitals judge failed while %s; the application is unaffected", doing)


def _after_fork(ref: weakref.ref[LlmJudge]) -> None:
    judge = ref()
    if judge is not None:
        judge._after_fork()


def sampled(call_id: str, rate: float) -> bool:
    """Whether the call with this id is in a sample of ``rate``: the same answer every time and
    in every process, from the id's hash (rate 0: never; rate 1: always).

    >>> sampled("0192f0c4-aaaa", 0.0), sampled("0192f0c4-aaaa", 1.0)
    (False, True)
    """
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.blake2b(call_id.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def _reply_text(reply: dict[str, Any]) -> str | None:
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    return text if isinstance(text, str) else None


def _priced(recorder: Recorder, config: JudgeConfig) -> bool:
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    cost = recorder.pricer.price(
        provider=config.provider, model=config.model, usage=usage, at=utc_now()
    )
    return cost is not None and cost.total_usd > Decimal(0)
