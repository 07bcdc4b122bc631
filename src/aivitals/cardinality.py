"""Bounded label cardinality: the first values of a label keep their own series, later ones fold.

Every label value that comes from outside (a model name, a feature, a team, a route, a status
code) would otherwise make new series without end: 10,000 distinct model names once made
``/metrics`` 178 MB. A `KeyCap` bounds the distinct label sets of one metric family; a `ValueCap`
bounds the distinct values of one label, and may be shared by several families so that they fold
the same values. What does not fit is kept under `OTHER`, never dropped, and each fold is counted
in ``aivitals_label_overflow_total{metric, label}`` (`OverflowCollector`).

>>> models = ValueCap(2)
>>> cap = KeyCap("demo_total", ("provider", "model"), max_keys=10, values={"model": models})
>>> [cap.admit(("openai", m)) for m in ("a", "b", "c", "a")]
[('openai', 'a'), ('openai', 'b'), ('openai', '_other'), ('openai', 'a')]
>>> cap.folds
{'model': 1}

Callers keep their own dict of what they count per admitted key and ask the cap only when a key
is not in it, so a known key costs them nothing more; a folded key asks every time (a few set
lookups), which only traffic past the cap pays.

Hand-written: prometheus_client has no cardinality limit (its ``labels()`` makes a child for every
new value), and OpenTelemetry's SDK cap folds into an ``otel.metric.overflow`` attribute set of
its own, per instrument, with no per-label choice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from aivitals.metric_schema import LABEL_OVERFLOW

_Key = TypeVar("_Key", bound=tuple[str, ...])

OTHER = "_other"
"""The one value that every label value past its cap is counted under."""

OVERFLOW_METRIC = LABEL_OVERFLOW.family
"""``aivitals_label_overflow_total{metric, label}``: values recorded under `OTHER` instead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelLimits:
    """How many distinct values each attribution label, and label sets each family, may keep.

    The defaults are sized to what a real fleet sends, with room: a few providers, tens of models
    (200 holds several providers' whole catalogues), tens to hundreds of features, tens of teams.
    A (provider, model, operation) label set costs about 90 samples (its histograms), so 500 of
    them bound the per-model families to ~45k samples, a scrape of a few MB, where uncapped
    traffic once made 730k; a (provider, model, feature, team) set costs one sample of
    ``aivitals_cost_usd_total`` but, in the live windows, an aggregate with a quantile sketch per
    minute kept (about 2.5 KB each when quiet), hence 2,000 and 1,000.

    >>> LabelLimits(models=1_000).models
    1000
    """

    providers: int = 50
    models: int = 200
    features: int = 500
    teams: int = 200
    score_names: int = 50
    model_series: int = 500
    """(provider, model, operation) sets: the per-model families; also quality's label sets."""
    attribution_series: int = 2_000
    """(provider, model, feature, team) sets of ``aivitals_cost_usd_total``."""
    live_keys: int = 1_000
    """(provider, model, feature, team) keys of the live windows."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"label limit {name} must be a whole number >= 1, got {value!r}")

    def value_caps(self) -> dict[str, ValueCap]:
        """One `ValueCap` per attribution label, for the families of one sink to share."""
        return {
            "provider": ValueCap(self.providers),
            "model": ValueCap(self.models),
            "feature": ValueCap(self.features),
            "team": ValueCap(self.teams),
        }


class ValueCap:
    """The first ``limit`` distinct values of one label; `fold` maps any later one to `OTHER`."""

    __slots__ = ("_lock", "_seen", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a label's value limit must be >= 1, got {limit}")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def fold(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER


class KeyCap:
    """At most ``max_keys`` distinct label sets of the family ``metric``; thread-safe.

    Each label with a `ValueCap` in ``values`` folds its own late values first. A label set that
    is still new once ``max_keys`` are kept folds its labels in ``fold_order`` (by default the
    labels with a `ValueCap`, last first) one by one, into the first set already kept; failing
    that, every label in ``fold_order`` becomes `OTHER`, a set admitted past ``max_keys``. So
    the family holds at most ``max_keys`` sets plus one per combination of the labels that never
    fold, which must therefore be bounded already (an operation, a status from a fixed list).
    """

    def __init__(
        self,
        metric: str,
        labels: Sequence[str],
        *,
        max_keys: int,
        values: Mapping[str, ValueCap] | None = None,
        fold_order: Sequence[str] | None = None,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"{metric}: max_keys must be >= 1, got {max_keys}")
        self.metric = metric
        self.labels = tuple(labels)
        self.max_keys = max_keys
        values = values or {}
        self._values = tuple(values.get(label) for label in self.labels)
        order = (
            fold_order
            if fold_order is not None
            else [label for label in reversed(self.labels) if label in values]
        )
        self._fold_at = tuple(self.labels.index(label) for label in order)
        self._foldable = tuple(
            label
            for i, label in enumerate(self.labels)
            if i in self._fold_at or self._values[i] is not None
        )
        self._keys: set[tuple[str, ...]] = set()
        self._folds = [0] * len(self.labels)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Label sets kept so far."""
        return len(self._keys)

    @property
    def folds(self) -> dict[str, int]:
        """Per label that can fold: how many admissions put it under `OTHER`."""
        return {label: self._folds[self.labels.index(label)] for label in self._foldable}

    def admit(self, key: _Key, *, count: bool = True) -> _Key:
        """The label set to record ``key`` under: itself, or with some labels `OTHER`.

        ``count=False`` for the second half of a pair that must fold alike and count once (the
        end of a call whose start was counted).
        """
        if key in self._keys:
            return key
        with self._lock:
            admitted = self._admit(key)
            if count:
                for i, (asked, kept) in enumerate(zip(key, admitted, strict=True)):
                    if asked != kept:
                        self._folds[i] += 1
            # Same length, and a label only ever becomes OTHER, a str like what it replaced.
            return cast("_Key", admitted)

    def _admit(self, key: tuple[str, ...]) -> tuple[str, ...]:
        folded = [
            value if cap is None else cap.fold(value)
            for value, cap in zip(key, self._values, strict=True)
        ]
        candidate = tuple(folded)
        if candidate in self._keys:
            return candidate
        if len(self._keys) < self.max_keys:
            self._keys.add(candidate)
            return candidate
        for i in self._fold_at:
            folded[i] = OTHER
            candidate = tuple(folded)
            if candidate in self._keys:
                return candidate
        self._keys.add(candidate)
        return candidate


class OverflowCollector:
    """``aivitals_label_overflow_total{metric, label}`` for every `KeyCap` it watches.

    Every label that can fold shows from the start, at 0, so ``increase(...) > 0`` alerts work.
    """

    def __init__(self, caps: Iterable[KeyCap] = ()) -> None:
        self._caps = list(caps)

    def watch(self, *caps: KeyCap) -> None:
        """Also count the folds of ``caps`` (another part's families)."""
        self._caps.extend(caps)

    def describe(self) -> Iterator[Metric]:
        yield overflow_family()

    def collect(self) -> Iterator[Metric]:
        family = overflow_family()
        for cap in list(self._caps):
            for label, count in cap.folds.items():
                family.add_metric([cap.metric, label], count)
        yield family


def overflow_family() -> CounterMetricFamily:
    """The empty ``aivitals_label_overflow`` family, for collectors to fill."""
    return CounterMetricFamily(
        LABEL_OVERFLOW.name, LABEL_OVERFLOW.help, labels=LABEL_OVERFLOW.labels
    )
