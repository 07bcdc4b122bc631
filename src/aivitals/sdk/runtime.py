"""The process-wide recorder that `track`, `observe` and `instrument` record into.

`configure` builds it once, at start-up; until then the first recorded call builds a default one
from the environment (`aivitals.config`). Nothing here runs at import time.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, start_http_server

from aivitals.cardinality import LabelLimits
from aivitals.config import ConfigError, check_timezone, read_env
from aivitals.pricing import Pricer
from aivitals.recorder import Recorder
from aivitals.sdk.context import Attribution
from aivitals.sinks.base import BatchSink, InlineSink
from aivitals.sinks.log import JsonLogSink
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.windows import LiveWindows

if TYPE_CHECKING:
    from aivitals.store.sql import SqlStore

log = logging.getLogger("aivitals")


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


_lock = threading.Lock()
_runtime: Runtime | None = None


def configure(
    *,
    sinks: Sequence[InlineSink | BatchSink] = (),
    prometheus: bool = True,
    registry: CollectorRegistry | None = None,
    metrics_port: int | None = None,
    log_to: str | Path | None = None,
    store: str | Path | SqlStore | Literal[False] | None = None,
    retention_days: float | None = None,
    endpoint: str | Literal[False] | None = None,
    api_key: str | None = None,
    spool_dir: str | Path | None = None,
    price_overrides: str | Path | None = None,
    windows_minutes: int = 60,
    label_limits: LabelLimits | None = None,
    timezone: str | None = None,
    environment: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    tags: Mapping[str, object] | None = None,
    queue_size: int = 10_000,
    batch_size: int = 500,
    flush_interval_s: float = 1.0,
    enabled: bool | None = None,
) -> Runtime:
    """Set up recording for this process; call once at start-up. Returns what was built.

    >>> from aivitals.sinks.memory import MemorySink
    >>> runtime = configure(sinks=[MemorySink()], environment="test")
    >>> runtime.prometheus is not None and runtime.windows is not None
    True

    Arguments win over the ``AIVITALS_*`` environment variables. ``sinks`` adds your own
    (inline or batch) to the defaults: Prometheus metrics and live windows, plus a JSON log when
    ``log_to`` is ``"stderr"``, ``"stdout"`` or a file path, and the store (history for
    ``aivitals report``) when ``store`` is a SQLite path, a SQLAlchemy URL or an opened
    `SqlStore` (which the recorder then closes when it closes); raw calls older
    than ``retention_days`` are then deleted (rollups are kept). With ``endpoint`` (the aivitals
    server's URL), calls and scores are also sent there, ``api_key`` as a bearer token; batches
    the server cannot take now wait on disk in ``spool_dir`` (see ``docs/exporter.md``).
    ``store=False`` or ``endpoint=False`` means none, whatever the environment says. A bad
    setting raises `ConfigError` here, at start-up, never later inside a recorded call.
    ``label_limits`` caps the distinct label values the metrics and live windows keep (see
    docs/metrics.md, "Label cardinality").
    """
    global _runtime  # the one process-wide handle, set at start-up only
    env = read_env()
    zone = check_timezone(timezone or env.timezone)
    pricer = Pricer.from_file(price_overrides or env.price_overrides)
    inline: list[InlineSink] = []
    batch: list[BatchSink] = []
    prometheus_sink = PrometheusSink(registry=registry, limits=label_limits) if prometheus else None
    windows = LiveWindows(minutes=windows_minutes, tz=zone, limits=label_limits)
    if prometheus_sink is not None:
        inline.append(prometheus_sink)
        prometheus_sink.overflow.watch(*windows.caps)
    inline.append(windows)
    log_target = log_to or env.log
    if log_target is not None:
        batch.append(_log_sink(log_target))
    store_target = None if store is False else (store or env.store)
    if store_target is not None:
        batch.append(_store_sink(store_target, retention_days))
    endpoint_target = None if endpoint is False else (endpoint or env.endpoint)
    if endpoint_target is not None:
        batch.append(
            _http_exporter(endpoint_target, api_key or env.api_key, spool_dir or env.spool_dir)
        )
    for sink in sinks:
        if isinstance(sink, BatchSink):
            batch.append(sink)
        elif isinstance(sink, InlineSink):
            inline.append(sink)
        else:
            raise ConfigError(f"{sink!r} is neither an inline nor a batch sink")
    recorder = Recorder(
        pricer=pricer,
        inline_sinks=inline,
        batch_sinks=batch,
        queue_size=queue_size,
        batch_size=batch_size,
        flush_interval_s=flush_interval_s,
    )
    if prometheus_sink is not None:
        prometheus_sink.watch(recorder)
    port = metrics_port if metrics_port is not None else env.metrics_port
    if port is not None and prometheus_sink is not None:
        start_http_server(port, addr="127.0.0.1", registry=prometheus_sink.registry)
    defaults = Attribution().merged(
        environment=environment or env.environment, feature=feature, team=team, tags=tags
    )
    runtime = Runtime(
        recorder=recorder,
        prometheus=prometheus_sink,
        windows=windows,
        defaults=defaults,
        enabled=(not env.disabled) if enabled is None else enabled,
    )
    with _lock:
        previous, _runtime = _runtime, runtime
    if previous is not None:
        previous.recorder.close()
    # Registered here rather than at import: importing aivitals has no side effects.
    atexit.unregister(shutdown)
    atexit.register(shutdown)
    return runtime


def get_runtime() -> Runtime:
    """The configured runtime, building the default one on first use."""
    runtime = _runtime
    if runtime is not None:
        return runtime
    with _lock:
        if _runtime is not None:
            return _runtime
    try:
        return configure()
    except ConfigError:
        # Never let a bad environment variable break the application: record nothing, say why.
        log.exception("aivitals is disabled: its configuration could not be used")
        with _lock:
            fallback = Runtime(
                recorder=Recorder(inline_sinks=()),
                prometheus=None,
                windows=None,
                defaults=Attribution(),
                enabled=False,
            )
            return _set_if_unset(fallback)


def _set_if_unset(runtime: Runtime) -> Runtime:
    global _runtime  # noqa: PLW0603  # see configure
    if _runtime is None:
        _runtime = runtime
    return _runtime


def flush(timeout_s: float | None = 10.0) -> bool:
    """Wait until every recorded call has reached its sinks (store, logs, exports)."""
    runtime = _runtime
    return True if runtime is None else runtime.recorder.flush(timeout_s)


def shutdown(timeout_s: float | None = 10.0) -> None:
    """Flush and stop recording; registered to run at interpreter exit."""
    runtime = _runtime
    if runtime is not None:
        runtime.recorder.close(timeout_s)


def reset() -> None:
    """Close and forget the runtime; the next recorded call builds a default one. For tests."""
    global _runtime  # noqa: PLW0603  # see configure
    shutdown()
    with _lock:
        _runtime = None


def _store_sink(target: str | Path | SqlStore, retention_days: float | None) -> BatchSink:
    # Imported here: SQLAlchemy is only paid for by processes that keep a store.
    from aivitals.sinks.store import StoreSink  # noqa: PLC0415
    from aivitals.store.errors import StoreError  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415

    if retention_days is not None and retention_days <= 0:
        raise ConfigError(f"retention_days must be above 0, got {retention_days}")
    try:
        opened = target if isinstance(target, SqlStore) else SqlStore.open(target)
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
    return JsonLogSink(path=target)
