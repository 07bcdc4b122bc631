"""The process-wide recorder that `track`, `observe` and `instrument` record into.

`configure` builds it once, at start-up; until then the first recorded call builds a default one
from the environment (`aivitals.config`). Nothing here runs at import time.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Unpack

from prometheus_client import start_http_server

from aivitals.attribution import EMPTY, Attribution
from aivitals.config import ConfigError, read_env
from aivitals.recorder import Recorder
from aivitals.runtime import Runtime, RuntimeOptions, build_runtime
from aivitals.sdk.handoff import handoff
from aivitals.sdk.handoff_metrics import HandOffCollector

__all__ = [
    "Runtime",
    "RuntimeOptions",
    "build_runtime",
    "configure",
    "flush",
    "get_runtime",
    "reset",
    "shutdown",
]

log = logging.getLogger("aivitals")


_lock = threading.Lock()
_runtime: Runtime | None = None


def configure(*, metrics_port: int | None = None, **options: Unpack[RuntimeOptions]) -> Runtime:
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
    than ``retention_days`` are then deleted (rollups are kept). ``store_writer="process"``
    (or ``AIVITALS_STORE_WRITER=process``) runs the store's writes in a child process, so a
    busy application thread does not hold them up; ``"auto"`` does when there are two cores
    or more and the child starts, else the thread (docs/store.md, "A writer process"; the
    default here is the thread). With ``endpoint`` (the aivitals
    server's URL), calls and scores are also sent there, ``api_key`` as a bearer token; batches
    the server cannot take now wait on disk in ``spool_dir`` (see ``docs/exporter.md``).
    ``store=False`` or ``endpoint=False`` means none, whatever the environment says.
    ``label_limits`` caps the distinct label values the metrics and live windows keep (see
    docs/metrics.md, "Label cardinality"). ``metrics_port`` serves the metrics on
    ``127.0.0.1:PORT/metrics``. ``judge`` (an `aivitals.JudgeConfig`)
    sends a sample of the calls to an LLM judge in the background (docs/quality.md, "Judge").

    ``evaluators`` (on by default) scores every call whose answer the SDK saw, off the
    application's thread: ``empty``, ``truncated``, ``refusal``, ``json_valid`` and
    ``pii_leak``, plus those registered with `aivitals.evaluator`; a list of names runs only
    those, False none (docs/quality.md, "Evaluators").

    ``capture_content=True`` (off by default; or an `aivitals.sinks.capture_config.
    CaptureConfig` for the retention and your own patterns to mask) keeps each call's prompt and
    answer, redacted, in the store's ``contents`` table for 7 days: it needs ``store``, and the
    text goes nowhere else (docs/quality.md, "Content capture").

    A bad setting raises `ConfigError` here, at start-up, in one line that names it (a port in
    use, a log file that cannot be written), never later inside a recorded call. This is
    `build_runtime` plus installing the result as the process default (closing the previous
    one) and flushing it at exit.
    """
    global _runtime  # the one process-wide handle, set at start-up only
    port = _metrics_port(metrics_port if metrics_port is not None else read_env().metrics_port)
    runtime = build_runtime(**options)
    if runtime.defaults == EMPTY:
        # No defaults configured: *the* empty attribution, which the SDK's merges skip by
        # identity (`aivitals.sdk.attributions.over`), rather than an equal copy that each
        # tracked call would look up in the merge cache.
        runtime.defaults = EMPTY
    if runtime.prometheus is not None:
        runtime.prometheus.registry.register(HandOffCollector(handoff))
    if port is not None and runtime.prometheus is not None:
        try:
            start_http_server(port, addr="127.0.0.1", registry=runtime.prometheus.registry)
        except OSError as exc:
            runtime.recorder.close()
            raise ConfigError(
                f"metrics_port: cannot serve metrics on 127.0.0.1:{port} "
                f"({exc.strerror or exc}); pick another port"
            ) from None
    with _lock:
        previous, _runtime = _runtime, runtime
    if previous is not None:
        previous.recorder.close()
    # Registered here rather than at import: importing aivitals has no side effects.
    atexit.unregister(shutdown)
    atexit.register(shutdown)
    return runtime


def _metrics_port(port: object) -> int | None:
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"metrics_port must be a port number from 1 to 65535, got {port!r}")
    return port


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
