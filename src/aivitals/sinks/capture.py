"""Content capture: the prompt and the answer of each call, redacted, in the store's ``contents``
table, with a retention of its own. Off unless asked for (``configure(capture_content=True)``,
the config file's ``[capture] enabled = true``).

`ContentCapture` is a content consumer of the recorder's quality stage (it runs on the quality
worker, never the caller's thread) and a batch sink of the recorder only for its housekeeping
(`tick`: deleting content older than ``retention_days``, checked hourly like the calls'
retention). Before a row is written, every text in it (each message, the answer, each tool
call's arguments) is redacted: what `aivitals.detectors.pii.find_pii` finds (emails, phone
numbers, cards, IBANs, secrets) and what the user's ``redact_patterns`` match are masked
(`aivitals.detectors.redact`). Captured text goes nowhere else: not to Prometheus, not to logs,
not to an exporter.

>>> from aivitals.content import CallContent, ContentMessage
>>> row = redacted_row(
...     Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0),
...     CallContent(messages=(ContentMessage(role="user", text="I am EMP-1234"),),
...                 output_text="Mail jane@acme-mail.com"),
...     CaptureConfig(enabled=True, redact_patterns=(r"EMP-\\d+",)),
... )
>>> row.messages[0].text, row.output_text, row.redactions
('I am [redacted]', 'Mail [email]', 2)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from aivitals.content import CallContent, ContentMessage, ToolCallContent
from aivitals.detectors.pii import find_pii
from aivitals.detectors.redact import redact
from aivitals.model import Call, Score, utc_now
from aivitals.sinks.capture_config import CaptureConfig
from aivitals.store.contents import ContentRow, delete_contents_before, write_contents
from aivitals.store.sql import SqlStore

log = logging.getLogger("aivitals.capture")

NAME = "capture"
"""The consumer's name on the quality stage and the sink's name (``aivitals_sink_errors_total``)."""


def _redacted(text: str, config: CaptureConfig) -> tuple[str, int]:
    findings = find_pii(text)
    extra = sum(1 for pattern in config.compiled for _ in pattern.finditer(text))
    if not findings and not extra:
        return text, 0
    return redact(text, findings, extra_patterns=config.compiled), len(findings) + extra


def redacted_row(call: Call, content: CallContent, config: CaptureConfig) -> ContentRow:
    """The row to store for ``call``: its content with every text redacted."""
    count = 0
    messages: list[ContentMessage] = []
    for message in content.messages:
        text, masked = _redacted(message.text, config)
        count += masked
        messages.append(ContentMessage(role=message.role, text=text))
    output = content.output_text if content.output_text is not None else content.refusal
    if output is not None:
        output, masked = _redacted(output, config)
        count += masked
    calls: list[ToolCallContent] = []
    for tool_call in content.tool_calls:
        arguments, masked = _redacted(tool_call.arguments, config)
        count += masked
        calls.append(ToolCallContent(name=tool_call.name, arguments=arguments))
    return ContentRow(
        call_id=call.id,
        started_at=call.started_at,
        messages=tuple(messages),
        output_text=output,
        tool_calls=tuple(calls),
        redactions=count,
    )


class ContentCapture:
    """Writes each call's redacted content to ``store``; deletes it after ``retention_days``.

    Register it on the recorder's quality stage (``recorder.quality.register``) and pass it to
    the recorder as a batch sink (its `tick` runs the retention); `build_runtime` does both when
    ``capture_content`` is on. A write that fails is logged once a minute, with the error's
    first line only (never the text, nor the statement's parameters), and counted (``failed``,
    and in ``errors``, the quality stage's `aivitals_quality_errors_total{part="capture"}`, when
    given); the call is recorded all the same.
    """

    name = NAME

    def __init__(
        self,
        store: SqlStore,
        config: CaptureConfig,
        *,
        retention_interval_s: float = 3600.0,
        now: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.captured = 0
        self.failed = 0
        self.deleted = 0
        self._retention = timedelta(days=config.retention_days)
        self._interval_s = retention_interval_s
        self._now = now
        self._clock = clock
        self._next_expiry = float("-inf")
        self._last_error_log = float("-inf")
        self.errors: Counter[str] | None = None

    def on_content(self, call: Call, content: CallContent) -> None:
        try:
            write_contents(self.store, [redacted_row(call, content, self.config)])
        except Exception as exc:
            # Counted here rather than raised: the stage would log the chained database error,
            # whose text holds the statement's parameters, the content itself.
            self.failed += 1
            if self.errors is not None:
                self.errors[NAME] += 1
            now = self._clock()
            if now - self._last_error_log >= 60.0:
                self._last_error_log = now
                # The error's text only: never the content, which the log must not carry.
                log.warning(
                    "aivitals: captured content not stored (%s); %d so far", exc, self.failed
                )
            return
        self.captured += 1

    def tick(self) -> None:
        """Delete content older than the retention, at most every ``retention_interval_s``."""
        if self._clock() < self._next_expiry:
            return
        self._next_expiry = self._clock() + self._interval_s
        try:
            self.deleted += delete_contents_before(self.store, self._now() - self._retention)
        except Exception as exc:
            log.warning("aivitals: deleting old captured content failed (%s); retrying later", exc)

    def write_calls(self, calls: Sequence[Call]) -> None:
        """Nothing: calls reach the store through its own sink."""

    def write_scores(self, scores: Sequence[Score]) -> None:
        """Nothing: scores reach the store through its own sink."""

    def close(self) -> None:
        """Nothing to release: the store is the runtime's, closed with it."""
