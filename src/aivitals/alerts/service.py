"""`AlertService`: the engine on a thread, reloading its rule file when it changes.

What ``aivitals serve`` runs::

    service = AlertService(rules_path, windows=runtime.windows, queries=Queries(store.engine),
                           state_path=default_state_path(target))
    service.start()          # raises RuleFileError: the server refuses to start on a bad file
    ...                      # SIGHUP: service.request_reload(); an admin endpoint: reload()
    service.stop()

A rule file that changes on disk is reloaded at the next evaluation. A reload that finds a
mistake keeps the old rules and reports it (`last_error`, and a log line with the line number).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aivitals.alerts.engine import AlertEngine
from aivitals.alerts.notifiers.base import Notifier
from aivitals.alerts.notifiers.build import NotifierConfigError
from aivitals.alerts.rules import RuleFileError, RuleSet, load_rules
from aivitals.query import Queries
from aivitals.retry import RetryPolicy
from aivitals.windows import LiveWindows

if TYPE_CHECKING:
    from aivitals.gateway.budgets import Budget

logger = logging.getLogger("aivitals.alerts")


class AlertService:
    """Evaluates the rules in ``rules_path`` every ``interval`` (from the file) on a thread."""

    def __init__(
        self,
        rules_path: str | Path,
        *,
        windows: LiveWindows | None = None,
        queries: Queries | None = None,
        state_path: str | Path | None = None,
        notifiers: Mapping[str, Notifier] | None = None,
        clock: Callable[[], float] = time.time,
        live_minutes: int = 60,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        budgets: Sequence[Budget] = (),
    ) -> None:
        self.rules_path = Path(rules_path)
        self._make: Callable[[RuleSet], AlertEngine] = functools.partial(
            AlertEngine,
            windows=windows,
            queries=queries,
            state_path=state_path,
            notifiers=notifiers,
            clock=clock,
            live_minutes=live_minutes,
            retry=retry,
            environ=environ,
            budgets=budgets,
        )
        self.engine: AlertEngine | None = None
        self.last_error: str | None = None
        self._mtime: float | None = None
        self._reload_asked = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load the rules (raising `RuleFileError` if they are wrong) and start evaluating."""
        rules = load_rules(self.rules_path)
        self._mtime = self._modified()
        try:
            self.engine = self._make(rules)
        except NotifierConfigError as exc:
            raise RuleFileError(str(self.rules_path), None, str(exc)) from None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="aivitals-alerts", daemon=True)
        self._thread.start()

    def reload(self) -> str | None:
        """Read the rule file again; on a mistake keep the old rules and return the error.

        The next evaluation follows at once (alerts of removed rules resolve in it).
        """
        error = self._reload()
        self._wake.set()
        return error

    def request_reload(self) -> None:
        """Reload on the service's own thread, soon: safe to call from a signal handler (SIGHUP)."""
        self._reload_asked = True
        self._wake.set()

    def _reload(self) -> str | None:
        if self.engine is None:
            raise RuntimeError("start the service before reloading it")
        self._mtime = self._modified()
        try:
            rules = load_rules(self.rules_path)
            self.engine.replace_rules(rules)
        except (RuleFileError, NotifierConfigError) as exc:
            self.last_error = str(exc)
            logger.error("alert rules not reloaded, the old ones stay: %s", exc)
            return self.last_error
        self.last_error = None
        logger.info("alert rules reloaded from %s", self.rules_path)
        return None

    def run_now(self) -> None:
        """Evaluate at once instead of waiting for the interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the evaluation in progress, if any) and save the state."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _modified(self) -> float | None:
        try:
            return self.rules_path.stat().st_mtime
        except OSError:
            return None

    def _run(self) -> None:
        engine = self.engine
        assert engine is not None  # set by start() before the thread begins
        while not self._stop.is_set():
            # Cleared before evaluating: a run_now() or reload() during the evaluation is kept.
            self._wake.clear()
            if self._reload_asked or self._modified() != self._mtime:
                self._reload_asked = False
                self._reload()
            try:
                engine.run_once()
            except Exception:
                logger.exception("alert evaluation failed")
            self._wake.wait(engine.rules.interval_s)
