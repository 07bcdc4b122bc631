"""Live windows: what the last minutes and the current day and month look like, in bounded memory.

Per (provider, model, feature, team) and per minute the windows keep counts, sums and mergeable
quantile sketches (DDSketch, 1% relative accuracy, at most 2048 bins each), never a list of every
latency. Completed minutes are folded into the current day and month and then kept frozen
(`aivitals.frozen_sketch`: their used bins only, about a byte each, a tenth of a live sketch), so
memory is bounded by the number of distinct keys times (minutes kept + 2), whatever the number of
calls; and the keys are
capped (`LabelLimits`: 1,000 keys, 200 models, 500 features, 200 teams by default). A key past
its cap is counted under ``_other`` (``model="_other"``, say), so totals stay whole while a read
filtered on a folded value finds nothing; `LiveWindows.caps` count the folds.

Alerts read from here when there is no store (with one, they read the store, which also holds
what other processes recorded and what came before a restart):

>>> from datetime import UTC, datetime
>>> windows = LiveWindows(clock=lambda: 1_790_000_000.0)
>>> windows.on_call(Call(provider="openai", model="gpt-4o-mini", latency_ms=250.0,
...                      started_at=datetime.fromtimestamp(1_789_999_999.0, UTC)))
>>> view = windows.read(minutes=5)
>>> view.calls, abs((view.latency_p50_ms or 0) - 250.0) / 250.0 <= 0.01
(1, True)

A call is placed by the time it ended (``started_at`` + latency), so calls replayed late (from a
spool, say) land in the minute they belong to, or are left to the store when that day has passed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal

from ddsketch.ddsketch import BaseDDSketch

from aivitals.cardinality import KeyCap, LabelLimits, ValueCap
from aivitals.frozen_sketch import FrozenSketch, Sketch, combine, live, new_sketch
from aivitals.model import Call, Score
from aivitals.percentile import rank

Key = tuple[str, str, str, str]
"""(provider, model, feature, team); feature and team are "" when absent."""
QualityKey = tuple[str, str, str]
"""(model, feature, score name)."""


@dataclass(slots=True)
class _Agg:
    calls: int = 0
    errors: int = 0
    cancelled: int = 0
    errors_by_type: Counter[str] = field(default_factory=Counter)
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_hits: int = 0
    cache_lookups: int = 0
    # Live while the minute takes calls, frozen once it has ended (`freeze`).
    latency: Sketch = field(default_factory=new_sketch)
    ttft: Sketch | None = None

    def add(self, call: Call) -> None:
        self._add_counts(call)
        latency = self.latency
        if isinstance(latency, FrozenSketch):  # a call late for a minute that had ended
            latency = self.latency = latency.thawed()
        latency.add(call.latency_ms)
        if call.ttft_ms is not None:
            ttft = self.ttft
            if ttft is None:
                ttft = self.ttft = new_sketch()
            elif isinstance(ttft, FrozenSketch):
                ttft = self.ttft = ttft.thawed()
            ttft.add(call.ttft_ms)

    def _add_counts(self, call: Call) -> None:
        self.calls += 1
        if call.status == "error":
            self.errors += 1
            self.errors_by_type[call.error_type or "other"] += 1
        elif call.status == "cancelled":
            self.cancelled += 1
        if call.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += call.cost_usd
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.cached_input_tokens += call.cached_input_tokens
        if call.cache is not None and call.cache != "bypass":
            self.cache_lookups += 1
            if call.cache == "hit":
                self.cache_hits += 1

    def merge(self, other: _Agg) -> None:
        self.merge_counts(other)
        if other.latency.count:
            self.latency = live(self.latency)
            self.latency.merge(live(other.latency))
        if other.ttft is not None and other.ttft.count:
            self.ttft = new_sketch() if self.ttft is None else live(self.ttft)
            self.ttft.merge(live(other.ttft))

    def merge_counts(self, other: _Agg) -> None:
        """Everything but the sketches."""
        self.calls += other.calls
        self.errors += other.errors
        self.cancelled += other.cancelled
        self.errors_by_type.update(other.errors_by_type)
        self.cost_usd += other.cost_usd
        self.unpriced += other.unpriced
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_hits += other.cache_hits
        self.cache_lookups += other.cache_lookups

    def freeze(self) -> None:
        """Its minute has ended: keep the sketches compact (`aivitals.frozen_sketch`)."""
        if isinstance(self.latency, BaseDDSketch):
            self.latency = FrozenSketch.of(self.latency)
        if isinstance(self.ttft, BaseDDSketch):
            self.ttft = FrozenSketch.of(self.ttft)


@dataclass(slots=True)
class _Period:
    """Aggregates of one span of time (a minute, a day, a month), per key."""

    aggs: dict[Key, _Agg] = field(default_factory=dict)
    quality: dict[QualityKey, list[float]] = field(default_factory=dict)

    def merge(self, other: _Period) -> None:
        for key, agg in other.aggs.items():
            mine = self.aggs.get(key)
            if mine is None:
                mine = self.aggs[key] = _Agg()
            mine.merge(agg)
        self.merge_quality(other)

    def merge_quality(self, other: _Period) -> None:
        for qkey, (total, count) in other.quality.items():
            slot = self.quality.setdefault(qkey, [0.0, 0.0])
            slot[0] += total
            slot[1] += count

    def freeze(self) -> None:
        for agg in self.aggs.values():
            agg.freeze()


@dataclass(frozen=True, slots=True)
class WindowView:
    """What a window holds for the keys asked for. Percentiles are `aivitals.percentile`'s
    nearest rank, within 1% relative error, and so is the maximum (the slowest call)."""

    calls: int
    errors: int
    cancelled: int
    errors_by_type: dict[str, int]
    cost_usd: Decimal
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_hit_ratio: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    quality: dict[str, float]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        priced = self.calls - self.unpriced_calls
        return self.cost_usd / priced if priced else None


class LiveWindows:
    """Bounded-memory live aggregates; an inline sink. Thread-safe.

    ``minutes`` is how far back `read(minutes=...)` can look; ``tz`` sets where a day and a month
    begin (budgets reset there). ``clock`` returns epoch seconds; tests inject it. ``limits``
    caps the keys kept (see the module's docstring).
    """

    name = "windows"

    def __init__(
        self,
        *,
        minutes: int = 60,
        tz: tzinfo = UTC,
        clock: Callable[[], float] = time.time,
        limits: LabelLimits | None = None,
    ) -> None:
        if minutes < 1:
            raise ValueError("minutes must be >= 1")
        limits = limits if limits is not None else LabelLimits()
        values = limits.value_caps()
        # The provider never folds: past the cap a call still counts for its provider.
        self._key_cap = KeyCap(
            "live_windows",
            ("provider", "model", "feature", "team"),
            max_keys=limits.live_keys,
            values=values,
            fold_order=("team", "feature", "model"),
        )
        self._quality_cap = KeyCap(
            "live_windows_quality",
            ("model", "feature", "name"),
            max_keys=limits.model_series,
            values={
                "model": values["model"],
                "feature": values["feature"],
                "name": ValueCap(limits.score_names),
            },
        )
        self._keep = minutes
        self._tz = tz
        self._clock = clock
        self._lock = threading.Lock()
        self._minutes: dict[int, _Period] = {}
        self._late: set[int] = set()
        self._folded_through = int(clock() // 60) - 1
        self._day_of = self._local_day(self._folded_through)
        self._month_of = self._day_of.replace(day=1)
        self._day = _Period()
        self._month = _Period()

    def on_call(self, call: Call) -> None:
        minute = int((call.started_at.timestamp() + call.latency_ms / 1000.0) // 60)
        key = (call.provider, call.model, call.feature or "", call.team or "")
        admitted = False
        with self._lock:
            for period in self._targets(minute):
                agg = period.aggs.get(key)
                if agg is None:
                    if not admitted:
                        # Once per call, however many periods it lands in: one fold, counted once.
                        key, admitted = self._key_cap.admit(key), True
                        agg = period.aggs.get(key)
                    if agg is None:
                        agg = period.aggs[key] = _Agg()
                agg.add(call)

    def on_score(self, score: Score) -> None:
        minute = int(score.created_at.timestamp() // 60)
        qkey = self._quality_cap.admit((score.model or "", score.feature or "", score.name))
        with self._lock:
            for period in self._targets(minute):
                slot = period.quality.setdefault(qkey, [0.0, 0.0])
                slot[0] += score.normalised
                slot[1] += 1

    @property
    def caps(self) -> tuple[KeyCap, KeyCap]:
        """The caps on call keys and on quality keys, for their folds to be exported."""
        return (self._key_cap, self._quality_cap)

    def tick(self) -> None:
        """Fold completed minutes into the day and month, and forget minutes past the horizon."""
        with self._lock:
            self._fold(int(self._clock() // 60) - 1)

    def read(
        self,
        *,
        minutes: int | None = None,
        period: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        feature: str | None = None,
        team: str | None = None,
    ) -> WindowView:
        """The last ``minutes`` (including the current one), or ``period="today"`` / ``"month"``."""
        match = (provider, model, feature, team)
        with self._lock:
            parts = self._parts(minutes=minutes, period=period)
            wanted: dict[Key, bool] = {}
            groups: dict[Key, list[_Agg]] = {}
            for part in parts:
                for key, agg in part.aggs.items():
                    hit = wanted.get(key)
                    if hit is None:
                        hit = wanted[key] = all(
                            want is None or want == have
                            for want, have in zip(match, key, strict=True)
                        )
                    if hit:
                        groups.setdefault(key, []).append(agg)
            # Added up per key and then across keys, in the order the calls came: the same sums
            # as merging the periods first (a Decimal sum rounds in the order it is added).
            total = _Agg()
            for aggs in groups.values():
                of_key = _Agg()
                for agg in aggs:
                    of_key.merge_counts(agg)
                total.merge_counts(of_key)
            latency = combine([[agg.latency for agg in aggs] for aggs in groups.values()])
            ttft = combine(
                [[agg.ttft for agg in aggs if agg.ttft is not None] for aggs in groups.values()]
            )
            scores = _Period()
            for part in parts:
                scores.merge_quality(part)
        quality = _quality_means(
            (qkey, slot)
            for qkey, slot in scores.quality.items()
            if (model is None or model == qkey[0]) and (feature is None or feature == qkey[1])
        )
        return _view(total, latency, ttft, quality)

    def keys(self, *, minutes: int | None = None, period: str | None = None) -> list[Key]:
        """The (provider, model, feature, team) keys seen in a window, for per-group reads."""
        with self._lock:
            parts = self._parts(minutes=minutes, period=period)
            return sorted({key for part in parts for key in part.aggs})

    def _parts(self, *, minutes: int | None, period: str | None) -> list[_Period]:
        """The periods a read adds up, in the order they took calls; the lock is held."""
        if (minutes is None) == (period is None):
            raise ValueError("read exactly one of minutes=N or period='today'|'month'")
        now_minute = int(self._clock() // 60)
        self._fold(now_minute - 1)
        if minutes is not None:
            if not 1 <= minutes <= self._keep:
                raise ValueError(f"minutes must be between 1 and {self._keep}, got {minutes}")
            return [
                part
                for minute, part in self._minutes.items()
                if now_minute - minutes < minute <= now_minute
            ]
        if period not in ("today", "month"):
            raise ValueError(f"period must be 'today' or 'month', got {period!r}")
        today = self._local_day(now_minute)
        parts: list[_Period] = []
        if period == "today":
            if self._day_of == today:
                parts.append(self._day)
        elif self._month_of == today.replace(day=1):
            parts.append(self._month)
        # Minutes not folded yet: the current one (and calls stamped in the future).
        parts.extend(
            part
            for minute, part in self._minutes.items()
            if minute > self._folded_through and self._same_period(minute, today, period)
        )
        return parts

    def _same_period(self, minute: int, today: date, period: str) -> bool:
        day = self._local_day(minute)
        return day == today if period == "today" else day.replace(day=1) == today.replace(day=1)

    def _local_day(self, minute: int) -> date:
        return datetime.fromtimestamp(minute * 60, self._tz).date()

    def _targets(self, minute: int) -> tuple[_Period, ...]:
        if minute > self._folded_through:
            period = self._minutes.get(minute)
            if period is None:
                period = self._minutes[minute] = _Period()
            return (period,)
        # A late arrival for a minute already folded: it is added to the day and month it belongs
        # to, if those are still current. Older calls are the store's business, not ours.
        day = self._local_day(minute)
        late: tuple[_Period, ...] = ()
        if minute > self._folded_through - self._keep:
            # Still within reach of read(minutes=...): keep it there too. It is never folded again
            # (it is at or before _folded_through), so nothing is counted twice.
            late = (self._minutes.setdefault(minute, _Period()),)
            self._late.add(minute)
        if day == self._day_of:
            return (*late, self._day, self._month)
        if day.replace(day=1) == self._month_of:
            return (*late, self._month)
        return late

    def _fold(self, through: int) -> None:
        if through <= self._folded_through:
            self._forget(through)
            return
        for minute in sorted(m for m in self._minutes if self._folded_through < m <= through):
            day = self._local_day(minute)
            if day != self._day_of:
                self._day = _Period()
                if day.replace(day=1) != self._month_of:
                    self._month = _Period()
                self._day_of = day
                self._month_of = day.replace(day=1)
            part = self._minutes[minute]
            self._day.merge(part)
            self._month.merge(part)
            part.freeze()
        for minute in self._late:
            # Thawed by a late call (`_targets`); they take no more once their minute is folded.
            if (thawed := self._minutes.get(minute)) is not None:
                thawed.freeze()
        self._late.clear()
        self._folded_through = through
        day = self._local_day(through)
        if day != self._day_of:
            # A quiet day change with no calls in between still starts a new day and month.
            self._day = _Period()
            if day.replace(day=1) != self._month_of:
                self._month = _Period()
            self._day_of = day
            self._month_of = day.replace(day=1)
        self._forget(through)

    def _forget(self, through: int) -> None:
        horizon = through + 1 - self._keep
        for minute in [m for m in self._minutes if m < horizon]:
            del self._minutes[minute]


def _quality_means(items: Iterable[tuple[QualityKey, list[float]]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for (_, _, name), (total, count) in items:
        slot = sums.setdefault(name, [0.0, 0.0])
        slot[0] += total
        slot[1] += count
    return {name: total / count for name, (total, count) in sums.items() if count}


def _quantile(sketch: BaseDDSketch | None, q: float) -> float | None:
    """The bin that holds the value of `aivitals.percentile.rank`, through ddsketch's reader.

    ddsketch reads rank ``q' × (n − 1)`` from 0 as the first bin whose running count exceeds it.
    Asking for the rank just under ``k`` (from 1), ``k − 0.5``, lands on the bin whose count
    reaches ``k``, whatever the float error in ``q' × (n − 1)``; ``k = n`` is ``q' = 1``.
    """
    if sketch is None or sketch.count == 0:
        return None
    n = round(sketch.count)
    wanted = rank(q, n)
    value = sketch.get_quantile_value(1.0 if wanted >= n else (wanted - 0.5) / (n - 1))
    return None if value is None else float(value)


def _view(
    agg: _Agg, latency: BaseDDSketch | None, ttft: BaseDDSketch | None, quality: dict[str, float]
) -> WindowView:
    return WindowView(
        calls=agg.calls,
        errors=agg.errors,
        cancelled=agg.cancelled,
        errors_by_type=dict(agg.errors_by_type),
        cost_usd=agg.cost_usd,
        unpriced_calls=agg.unpriced,
        input_tokens=agg.input_tokens,
        output_tokens=agg.output_tokens,
        cached_input_tokens=agg.cached_input_tokens,
        cache_hit_ratio=agg.cache_hits / agg.cache_lookups if agg.cache_lookups else None,
        latency_p50_ms=_quantile(latency, 0.50),
        latency_p95_ms=_quantile(latency, 0.95),
        latency_p99_ms=_quantile(latency, 0.99),
        latency_max_ms=_quantile(latency, 1.0),
        ttft_p50_ms=_quantile(ttft, 0.50),
        ttft_p95_ms=_quantile(ttft, 0.95),
        quality=quality,
    )
