"""`AlertService`: the engine on a thread, reloading its rule file when it changes.

What ``aivitals serve`` runs::

    service = AlertService(rules_path, windows=runtime.windows, queries=Queries(store.engine),
                           state_path=default_state_path(target))
    service.start()          # raises RuleFileError: the server refuses to start on a bad file
    ...                      # SIGHUP: service.request_reload(); an admin endpoint: reload()
    service.stop()

A rule file that changes on disk is reloaded at the next evaluation. A reload that finds a
mistake keeps the old rules and reports it (`last_error`, and a log line with the line number).

With a ``lease`` (`aivitals.store.leases.Lease`, which ``serve`` gives whenever there is a
store), only the process holding it evaluates and notifies: the workers of ``serve --workers N``
and replicas sharing the store contend for it every cycle, and a holder that dies is taken
over once its lease expires (one that stops cleanly releases it). The leader publishes the
engine's whole state (alerts, silences, deliveries still due) on the lease row after each cycle;
the others load it, so they answer the alert read routes with the leader's view, and a new
leader carries on from it. A silence set or ended on a follower (`silence`, `unsilence`) is sent
to the leader through the store, which applies it at its next cycle. The engine's state file is then left alone: the store holds the
state, shared by every contender.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aivitals.alerts.engine import AlertEngine
from aivitals.alerts.notifiers.base import Notifier
from aivitals.alerts.notifiers.build import NotifierConfigError
from aivitals.alerts.rules import RuleFileError, RuleSet, load_rules
from aivitals.alerts.state import Silence, StateFile, dump_state, load_state, silence_problem
from aivitals.query import Queries
from aivitals.retry import RetryPolicy
from aivitals.windows import LiveWindows

if TYPE_CHECKING:
    from aivitals.gateway.budgets import Budget
    from aivitals.store.leases import Lease

logger = logging.getLogger("aivitals.alerts")

LEASE_NAME = "alerts"
LEASE_CYCLES = 3
"""A leader's lease lasts this many evaluation intervals: a dead leader is taken over within
about four intervals (its lease expires, then a follower's next cycle takes it)."""
LEASE_MIN_TTL_S = 10.0


class AlertsUnavailable(Exception):
    """A follower cannot pass a change on to the leader now (the store cannot be written)."""


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
        lease: Lease | None = None,
    ) -> None:
        self.rules_path = Path(rules_path)
        self.lease = lease
        self._state_path = state_path
        self._leading = False
        # A follower's changes sent to the leader and not yet in its snapshot: kept in this
        # process's view meanwhile, so a silence posted here can be ended here at once.
        self._sent_silences: dict[str, Silence] = {}
        self._sent_unsilences: set[str] = set()
        self._make: Callable[[RuleSet], AlertEngine] = functools.partial(
            AlertEngine,
            windows=windows,
            queries=queries,
            # With a lease the store holds the state: no process writes a file of its own.
            state_path=None if lease is not None else state_path,
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
        if self.lease is not None:
            self._adopt(first=True)
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

    @property
    def evaluating(self) -> bool:
        """Whether this process runs the engine now (always, without a lease)."""
        return self.lease is None or self._leading

    @property
    def leader(self) -> str | None:
        """Who holds the lease now (None without a lease, or when the store cannot say)."""
        if self.lease is None:
            return None
        row = self.lease.read()
        return row.holder if row is not None else None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the evaluation in progress, if any) and save the state.

        A leader publishes its last state and releases its lease, for a take-over at once.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.lease is not None and self._leading and self.engine is not None:
            self.lease.publish(json.dumps(dump_state(self.engine.state)))
            self.lease.release()
            self._leading = False

    def silence(
        self,
        matchers: Mapping[str, str],
        *,
        ends_at: float,
        starts_at: float | None = None,
        comment: str = "",
    ) -> Silence:
        """`AlertEngine.silence`, wherever the engine evaluates: here, or on the lease's holder.

        Raises ValueError for a silence the engine refuses, `AlertsUnavailable` when a follower
        cannot reach the store to pass it on.
        """
        engine = self._engine()
        if self.lease is None or self._leading:
            made = engine.silence(matchers, ends_at=ends_at, starts_at=starts_at, comment=comment)
            self._wake.set()  # published by a cycle now, not an interval later
            return made
        if not matchers:
            raise ValueError("a silence needs at least one matcher (alertname=..., model=...)")
        begins = engine.clock() if starts_at is None else starts_at
        problem = silence_problem(begins, ends_at)
        if problem is not None:
            raise ValueError(problem)
        made = Silence(
            id=f"s{uuid.uuid4().hex[:12]}",  # unique without the leader's counter
            matchers=dict(matchers),
            starts_at=begins,
            ends_at=ends_at,
            comment=comment,
        )
        self._send({"op": "silence", "silence": dataclasses.asdict(made)})
        self._sent_silences[made.id] = made
        engine.state.silences.append(made)  # seen here at once, until the leader's snapshot
        return made

    def unsilence(self, silence_id: str) -> bool:
        """`AlertEngine.unsilence`, wherever the engine evaluates (see `silence`)."""
        engine = self._engine()
        if self.lease is None or self._leading:
            ended = engine.unsilence(silence_id)
            self._wake.set()
            return ended
        if not any(s.id == silence_id for s in engine.state.silences):
            return False
        self._send({"op": "unsilence", "id": silence_id})
        self._sent_silences.pop(silence_id, None)
        self._sent_unsilences.add(silence_id)
        engine.state.silences = [s for s in engine.state.silences if s.id != silence_id]
        return True

    def _engine(self) -> AlertEngine:
        if self.engine is None:
            raise RuntimeError("start the service first")
        return self.engine

    def _send(self, message: dict[str, object]) -> None:
        assert self.lease is not None
        if not self.lease.send(json.dumps(message)):
            raise AlertsUnavailable(
                "this process does not run the alert engine, and cannot pass the change on to "
                "the one that does (the store cannot be written); try again"
            )

    def _apply_inbox(self, engine: AlertEngine) -> None:
        assert self.lease is not None
        for body in self.lease.receive():
            try:
                message = json.loads(body)
                if message["op"] == "silence":
                    silence = Silence(**message["silence"])
                    if not any(s.id == silence.id for s in engine.state.silences):
                        engine.state.silences.append(silence)
                elif message["op"] == "unsilence":
                    engine.unsilence(str(message["id"]))
            except (ValueError, TypeError, KeyError) as exc:
                logger.error("alert engine: left out a message it cannot read (%s): %s", exc, body)

    def _adopt(self, *, first: bool = False) -> None:
        """Load the state the leader last published (at start: the state file, if it never did)."""
        assert self.engine is not None and self.lease is not None
        row = self.lease.read()
        if row is not None and row.snapshot is not None:
            try:
                state = load_state(json.loads(row.snapshot))
            except (ValueError, TypeError, KeyError) as exc:
                logger.error("the alert state in the store cannot be read, kept ours: %s", exc)
                return
            ids = {s.id for s in state.silences}
            for silence_id in list(self._sent_silences):
                if silence_id in ids:
                    del self._sent_silences[silence_id]  # the leader has it
            self._sent_unsilences &= ids  # the others the leader has ended
            state.silences = [
                *(s for s in state.silences if s.id not in self._sent_unsilences),
                *self._sent_silences.values(),
            ]
            self.engine.state = state
        elif first and self._state_path is not None:
            # A store that never had a leader: carry on from a single process's state file.
            self.engine.state = StateFile(self._state_path).load()

    def _cycle(self, engine: AlertEngine) -> None:
        if self.lease is None:
            engine.run_once()
            return
        # Renewed once a cycle: the lease outlives a few cycles, so a slow one does not lose it.
        self.lease.ttl_s = max(LEASE_MIN_TTL_S, LEASE_CYCLES * engine.rules.interval_s)
        held = self.lease.hold()
        if held != self._leading:
            logger.info(
                "alert engine: %s the lease %r as %s",
                "took" if held else "lost",
                self.lease.name,
                self.lease.holder,
            )
            if held:
                self._adopt()  # carry on from where the last leader stopped
        self._leading = held
        if not held:
            self._adopt()
            return
        self._apply_inbox(engine)
        engine.run_once()
        if not self.lease.publish(json.dumps(dump_state(engine.state))):
            logger.warning("alert engine: the state was not published (lease lost?)")

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
                self._cycle(engine)
            except Exception:
                logger.exception("alert evaluation failed")
            self._wake.wait(engine.rules.interval_s)
