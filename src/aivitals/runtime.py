"""Building a runtime: the recorder with its sinks, live windows and pricer, from options.

`build_runtime` is pure: it installs nothing as the process default, opens no port and
registers nothing at exit, so `aivitals serve`, tests and anyone embedding aivitals own what it
returns. `aivitals.configure` (the SDK's) builds with it, then installs the result.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

from prometheus_client import CollectorRegistry

from aivitals.attribution import Attribution
from aivitals.cardinality import LabelLimits
from aivitals.config import ConfigError, check_store_writer, check_timezone, read_env
from aivitals.pricing import Pricer
from aivitals.quality.evaluators.consumer import NAME as EVALUATORS
from aivitals.quality.evaluators.consumer import EvaluatorConsumer, check_names
from aivitals.recorder import BATCH_SIZE, Recorder
from aivitals.sinks.base import BatchSink, InlineSink
from aivitals.sinks.capture_config import CaptureConfig
from aivitals.sinks.log import JsonLogSink
from aivitals.sinks.otel_metrics import OtelMetricsSink, application_meter_provider
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.windows import LiveWindows

if TYPE_CHECKING:
    from aivitals.quality.judge_config import JudgeConfig
    from aivitals.sinks.capture import ContentCapture
    from aivitals.store.sql import SqlStore


class Runtime:
    """What `configure` built: the recorder and the sinks that later code may want to read."""

    def __init__(
        self,
        *,
        recorder: Recorder,
        prometheus: PrometheusSink | None,
        windows: LiveWindows | None,
        defaults: Attribution,
        enabled: bool = True,
    ) -> None:
        self.recorder = recorder
        self.prometheus = prometheus
        self.windows = windows
        self.defaults = defaults
        self.enabled = enabled


class RuntimeOptions(TypedDict, total=False):
    """What `build_runtime` and `configure` take, by keyword; see `configure` for each."""

    sinks: Sequence[InlineSink | BatchSink]
    prometheus: bool
    registry: CollectorRegistry | None
    log_to: str | Path | None
    store: str | Path | SqlStore | Literal[False] | None
    retention_days: float | None
    store_writer: Literal["thread", "process", "auto"] | None
    endpoint: str | Literal[False] | None
    api_key: str | None
    spool_dir: str | Path | None
    price_overrides: str | Path | None
    windows_minutes: int
    label_limits: LabelLimits | None
    timezone: str | None
    environment: str | None
    feature: str | None
    team: str | None
    tags: Mapping[str, object] | None
    queue_size: int
    batch_size: int
    flush_interval_s: float
    enabled: bool | None
    evaluators: bool | Sequence[str]
    judge: JudgeConfig | None
    capture_content: bool | CaptureConfig


def build_runtime(**options: Unpack[RuntimeOptions]) -> Runtime:
    """A recorder with its sinks, windows and pricer, as `configure` describes; nothing global.

    The caller owns it: nothing is installed as the process default, no port is opened, nothing
    runs at exit; close it with ``runtime.recorder.close()``. `aivitals serve` and tests build
    their own this way.

    >>> from aivitals.sinks.memory import MemorySink
    >>> runtime = build_runtime(sinks=[MemorySink()], store=False, endpoint=False)
    >>> runtime.recorder.durable, runtime.windows is not None
    (False, True)
    >>> runtime.recorder.close()
    """
    env = read_env()
    zone = check_timezone(options.get("timezone") or env.timezone)
    evaluators = check_names(options.get("evaluators", True))
    pricer = Pricer.from_file(options.get("price_overrides") or env.price_overrides)
    limits = options.get("label_limits")
    inline: list[InlineSink] = []
    batch: list[BatchSink] = []
    prometheus_sink = (
        PrometheusSink(registry=options.get("registry"), limits=limits)
        if options.get("prometheus", True)
        else None
    )
    windows = LiveWindows(minutes=options.get("windows_minutes", 60), tz=zone, limits=limits)
    if prometheus_sink is not None:
        inline.append(prometheus_sink)
        prometheus_sink.overflow.watch(*windows.caps)
    inline.append(windows)
    log_target = options.get("log_to") or env.log
    if log_target is not None:
        batch.append(_log_sink(log_target))
    store = options.get("store")
    store_target = None if store is False else (store or env.store)
    asked = _capture(options.get("capture_content", False))
    capture = None
    if store_target is not None:
        writer = check_store_writer(options.get("store_writer") or env.store_writer or "thread")
        store_sink = _store_sink(store_target, options.get("retention_days"), writer)
        batch.append(store_sink)
        if asked is not None:
            capture = _content_capture(store_sink, asked)
            # A batch sink only for its retention tick; it reads content on the quality stage.
            batch.append(capture)
    elif asked is not None:
        raise ConfigError(
            "capture_content needs a store (store=PATH or AIVITALS_STORE): captured content is "
            "kept in the store's contents table, and sent nowhere else"
        )
    endpoint = options.get("endpoint")
    endpoint_target = None if endpoint is False else (endpoint or env.endpoint)
    if endpoint_target is not None:
        batch.append(
            _http_exporter(
                endpoint_target,
                options.get("api_key") or env.api_key,
                options.get("spool_dir") or env.spool_dir,
            )
        )
    for sink in options.get("sinks", ()):
        if isinstance(sink, BatchSink):
            batch.append(sink)
        elif isinstance(sink, InlineSink):
            inline.append(sink)
        else:
            raise ConfigError(f"{sink!r} is neither an inline nor a batch sink")
    meters = application_meter_provider()
    if meters is not None:  # the application's OpenTelemetry metrics get the GenAI histograms
        batch.append(OtelMetricsSink(meters))
    recorder = Recorder(
        pricer=pricer,
        inline_sinks=inline,
        batch_sinks=batch,
        queue_size=options.get("queue_size", 10_000),
        batch_size=options.get("batch_size", BATCH_SIZE),
        flush_interval_s=options.get("flush_interval_s", 1.0),
    )
    if prometheus_sink is not None:
        prometheus_sink.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
    if evaluators:
        recorder.quality.register(
            EvaluatorConsumer(
                recorder.record_score,
                evaluators=options.get("evaluators", True),
                count_error=recorder.quality.count_error,
            ),
            name=EVALUATORS,
        )
    if capture is not None:
        capture.errors = recorder.stats.quality.errors
        recorder.quality.register(capture, name=capture.name)
    judge = options.get("judge")
    if judge is not None:
        _attach_judge(judge, recorder, prometheus_sink, zone.key)
    defaults = Attribution().merged(
        environment=options.get("environment") or env.environment,
        feature=options.get("feature"),
        team=options.get("team"),
        tags=options.get("tags"),
    )
    enabled = options.get("enabled")
    return Runtime(
        recorder=recorder,
        prometheus=prometheus_sink,
        windows=windows,
        defaults=defaults,
        enabled=(not env.disabled) if enabled is None else enabled,
    )


def _attach_judge(
    config: JudgeConfig, recorder: Recorder, prometheus: PrometheusSink | None, zone: str
) -> None:
    # Imported here: httpx and the rubric are only paid for by processes that judge.
    from aivitals.quality.judge import LlmJudge  # noqa: PLC0415
    from aivitals.quality.judge_metrics import JudgeCollector  # noqa: PLC0415

    try:
        judge = LlmJudge(config, recorder=recorder, timezone=zone)
    except ConfigError:
        recorder.close()
        raise
    recorder.quality.register(judge, name="judge")
    if prometheus is not None:
        prometheus.registry.register(
            JudgeCollector(judge.stats, judge.budget, lambda: judge.queue_depth)
        )


def _capture(given: bool | CaptureConfig) -> CaptureConfig | None:
    """The capture settings asked for; None when capture is off (the default)."""
    if isinstance(given, CaptureConfig):
        return given if given.enabled else None
    return CaptureConfig(enabled=True) if given else None


def _content_capture(store_sink: BatchSink, config: CaptureConfig) -> ContentCapture:
    from aivitals.sinks.capture import ContentCapture  # noqa: PLC0415  # the store's imports
    from aivitals.sinks.store import StoreSink  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415

    store = store_sink.store if isinstance(store_sink, StoreSink) else None
    if not isinstance(store, SqlStore):  # what _store_sink opens; never otherwise
        raise ConfigError("capture_content needs an SQL store")
    return ContentCapture(store, config)


def _store_sink(
    target: str | Path | SqlStore, retention_days: float | None, writer: str
) -> BatchSink:
    # Imported here: SQLAlchemy is only paid for by processes that keep a store.
    from aivitals.sinks.store import StoreSink  # noqa: PLC0415
    from aivitals.store.errors import StoreError  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415
    from aivitals.store.writer_process import ProcessWrittenStore, open_written  # noqa: PLC0415

    if retention_days is not None and retention_days <= 0:
        raise ConfigError(f"retention_days must be above 0, got {retention_days}")
    if (
        writer != "thread"
        and isinstance(target, SqlStore)
        and not isinstance(target, ProcessWrittenStore)
    ):
        raise ConfigError(
            f"store_writer={writer!r} opens the store itself: give store a path or URL, not an "
            "opened SqlStore (or open a ProcessWrittenStore)"
        )
    try:
        opened = target if isinstance(target, SqlStore) else open_written(target, writer)
    except StoreError as exc:
        raise ConfigError(f"store: {exc}") from exc
    retention = timedelta(days=retention_days) if retention_days is not None else None
    return StoreSink(opened, retention=retention, pending_dir=opened.pending_dir)


def _http_exporter(endpoint: str, api_key: str | None, spool_dir: str | Path | None) -> BatchSink:
    # Imported here: httpx is only paid for by processes that export.
    try:
        from aivitals.sinks.http import HttpExporter  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(f"endpoint: sending to a server needs httpx ({exc})") from exc
    try:
        return HttpExporter(endpoint, api_key=api_key, spool_dir=spool_dir)
    except ValueError as exc:
        raise ConfigError(f"endpoint: {exc}") from exc
    except OSError as exc:
        raise ConfigError(
            f"spool_dir: {exc}; set spool_dir (or AIVITALS_SPOOL_DIR) to a writable directory"
        ) from exc


def _log_sink(target: str | Path) -> JsonLogSink:
    if target == "stderr":
        return JsonLogSink(stream=sys.stderr)
    if target == "stdout":
        return JsonLogSink(stream=sys.stdout)
    try:
        return JsonLogSink(path=target)
    except OSError as exc:
        raise ConfigError(
            f"log_to: cannot write {target} ({exc.strerror or exc}); give a writable file, "
            '"stderr" or "stdout"'
        ) from None
