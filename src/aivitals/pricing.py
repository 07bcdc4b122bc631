"""Cost of a call, exact to the last fraction of a cent.

Prices come from user overrides first, then from the installed ``genai-prices`` catalog (offline; its
network updates are never turned on here). A model found in neither gets no price: `Pricer.price`
returns ``None``, the call is recorded with ``cost_usd=None``, and the model is logged once.

Every unit the price has is applied (`aivitals.price_plan`): cache reads, 5-minute and 1-hour
cache writes, reasoning tokens where they are priced apart, server-side tool uses, per-request
fees, long-context tiers, prices that change by date or time of day, and the service tier the
provider reported (`service_tier`, mapped to the catalog's price variants by `tier_context`).

Which catalog entry prices a call (docs/pricing.md, "Which price"): a provider the catalog knows
is priced from its own models (and the providers the catalog itself says it resells, such as
Azure's OpenAI models), never from another provider's model of the same name: no price means
``cost_usd=None``. A provider the catalog does not know (``vllm``, ``my-proxy``) is priced by the
model's name alone. ``price_source`` names the provider whose price was used, and the tier.

Money is `Decimal` from end to end; floats appear only at the edges (Prometheus, JSON for humans).

>>> from decimal import Decimal
>>> from aivitals.usage import TokenUsage
>>> pricer = Pricer(overrides={(None, "acme-70b"): Rates(input_mtok=Decimal("1"), output_mtok=Decimal("2"))})
>>> pricer.price(provider="acme", model="acme-70b", usage=TokenUsage(input_tokens=1000, output_tokens=500)).total_usd
Decimal('0.002')
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, PriceContext, PriceVariant

from aivitals.bounds import CALL_TEXT_CHARS
from aivitals.price_overrides import Rates, load_price_overrides, rates_price
from aivitals.price_plan import PricePlan, compile_plan
from aivitals.usage import TokenUsage

log = logging.getLogger("aivitals.pricing")

_CATALOG = f"genai-prices {genai_prices.__version__}"
_SOURCE_CHARS = CALL_TEXT_CHARS["price_source"]

DEFAULT_TIERS = frozenset({"default", "standard", "auto"})
"""Tiers that mean the default prices: OpenAI's ``default`` (and ``auto``, when a response says
no more), Anthropic's ``standard``."""

_MAX_TIERS_KEPT = 16  # per model: tier names come from records, so their cache is bounded


@dataclass(frozen=True, slots=True)
class Cost:
    """What a call cost, split by direction, and where the price came from.

    ``total_usd`` also holds what is billed in neither direction (tool uses, request fees), so
    it can be more than ``input_usd + output_usd``.
    """

    total_usd: Decimal
    input_usd: Decimal
    output_usd: Decimal
    source: str


@dataclass(frozen=True, slots=True)
class TierChoice:
    """How a reported service tier prices: the catalog's price context for it (None: the default
    prices), and what ``price_source`` says of it."""

    context: PriceContext | None
    variants: tuple[PriceVariant, ...]
    label: str


@dataclass(slots=True)
class _Entry:
    """A resolved price: an override's plan, or a catalog model whose plan depends on the date
    and the tier (compiled once per distinct price, then kept)."""

    source: str
    context_window: int | None = None
    plan: PricePlan | None = None  # an override, or a catalog price that never changes
    model: ModelInfo | None = None
    own: bool = True  # the model is the requested provider's own: its price variants apply
    plans: dict[tuple[int, tuple[int, ...]], tuple[ModelPrice, PricePlan | None]] = field(
        default_factory=dict
    )
    tiers: dict[str, TierChoice] = field(default_factory=dict)


class Pricer:
    """Prices calls from overrides and the installed catalog, with a lookup cache for the hot path.

    ``overrides`` maps ``(provider or None, model)`` to `Rates`; a ``None`` provider matches any.
    """

    def __init__(
        self,
        *,
        overrides: Mapping[tuple[str | None, str], Rates] | None = None,
        use_catalog: bool = True,
    ) -> None:
        self._overrides = dict(overrides or {})
        self._use_catalog = use_catalog
        self._cache: dict[tuple[str, str], _Entry | None] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._providers: dict[str, str | None] = {}

    @classmethod
    def from_file(cls, path: str | Path | None, *, use_catalog: bool = True) -> Pricer:
        """A pricer with the overrides of a TOML or YAML file (see `aivitals.price_overrides`)."""
        overrides = load_price_overrides(path) if path else None
        return cls(overrides=overrides, use_catalog=use_catalog)

    def price(
        self,
        *,
        provider: str,
        model: str,
        usage: TokenUsage,
        at: datetime | None = None,
        service_tier: str | None = None,
    ) -> Cost | None:
        """The cost of ``usage`` on ``model``; ``None`` when the model has no known price.

        ``service_tier`` is the tier the provider's response reported; a tier the catalog has no
        price for is priced at the default tier, and ``price_source`` says so.
        """
        entry = self._lookup(provider, model)
        if entry is None:
            return None
        source = entry.source
        plan = entry.plan
        if entry.model is not None and (
            plan is None or (service_tier is not None and service_tier not in DEFAULT_TIERS)
        ):
            plan, source = _catalog_plan(entry, entry.model, at, service_tier)
        if plan is None:
            return None
        priced = plan.apply(usage)
        if priced is None:
            return None
        total, input_usd, output_usd = priced
        return Cost(total_usd=total, input_usd=input_usd, output_usd=output_usd, source=source)

    def context_window(self, *, provider: str, model: str) -> int | None:
        """The model's context window from the overrides or the catalog, when known."""
        entry = self._lookup(provider, model)
        return entry.context_window if entry else None

    def is_priced(self, *, provider: str, model: str) -> bool:
        return self._lookup(provider, model) is not None

    def provider_for(self, model: str) -> str | None:
        """The provider the catalog (or an override) knows ``model`` from, to label calls that
        did not say; ``None`` when nobody knows the model."""
        try:
            return self._providers[model]
        except KeyError:
            pass
        found: str | None = next(
            (provider for provider, name in self._overrides if name == model and provider), None
        )
        if found is None and self._use_catalog:
            try:
                probe = genai_prices.Usage(input_tokens=0, output_tokens=0)
                found = genai_prices.calc_price(probe, model_ref=model).provider.id
            except LookupError:
                found = None
        self._providers[model] = found
        return found

    def _lookup(self, provider: str, model: str) -> _Entry | None:
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        entry = self._resolve(provider, model)
        with self._lock:
            self._cache[key] = entry
            if entry is None and key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "no price for model %r (provider %r): its calls are recorded with cost_usd=None "
                    "and counted as unpriced; add it to a price override file to price it",
                    model,
                    provider,
                )
        return entry

    def _resolve(self, provider: str, model: str) -> _Entry | None:
        for override_key in ((provider, model), (None, model)):
            rates = self._overrides.get(override_key)
            if rates is not None:
                plan = compile_plan(rates_price(rates))
                if plan is None:
                    return None
                return _Entry(source="override", context_window=rates.context_window, plan=plan)
        if not self._use_catalog:
            return None
        return _resolve_catalog(provider, model)


def _resolve_catalog(provider: str, model: str) -> _Entry | None:
    snapshot = data_snapshot.get_snapshot()
    try:
        found, info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        if _known_provider(snapshot, provider):
            # Not this provider's model: another provider's model of the same name is another
            # price (and often another model), so the call stays unpriced.
            return None
        try:
            found, info = snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return None
    # The model may come from a provider the catalog says `found` resells (Azure's OpenAI
    # models): that provider's price is the one used, and the one named.
    owner = next((p for p in snapshot.providers if any(m is info for m in p.models)), found)
    entry = _Entry(
        source=f"{_CATALOG}: {owner.id}/{info.id}",
        context_window=info.context_window,
        model=info,
        own=owner is found,
    )
    if isinstance(info.prices, ModelPrice):
        entry.plan = compile_plan(info.prices)
        if entry.plan is None:
            return None
    return entry


def _known_provider(snapshot: data_snapshot.DataSnapshot, provider: str) -> bool:
    try:
        snapshot.find_provider(None, provider, None)
    except LookupError:
        return False
    return True


def _catalog_plan(
    entry: _Entry, info: ModelInfo, at: datetime | None, tier: str | None
) -> tuple[PricePlan | None, str]:
    """The plan for a catalog model at ``at`` in ``tier``, and the ``price_source`` to give."""
    at = at or datetime.now(UTC)
    choice = _tier_choice(entry, info, tier)
    standard = info.get_prices(at)
    active = tuple(
        variant
        for variant in choice.variants
        if variant.constraint is None or variant.constraint.active(at)
    )
    label = choice.label
    if choice.context is not None and not active:
        label = f"tier {tier} not priced on that date: default prices"
    key = (id(standard), tuple(id(variant) for variant in active))
    kept = entry.plans.get(key)
    if kept is None:
        resolved = info.get_prices(at, choice.context if active else None)
        # The standard price is kept with its plan, so the id in the key stays its own.
        kept = entry.plans[key] = (standard, compile_plan(resolved))
    source = f"{entry.source} ({label})"[:_SOURCE_CHARS] if label else entry.source
    return kept[1], source


def tier_context(info: ModelInfo, tier: str) -> PriceContext | None:
    """The catalog's price context for a reported tier on this model, None when it has none.

    Tiers are named as providers report them (OpenAI ``response.service_tier``, Anthropic
    ``usage.service_tier``); the catalog names batch pricing ``processing=batch``, the
    others ``service_tier=<name>`` (OpenAI's priority, flex...) or ``speed=<name>`` (Anthropic's
    fast mode).

    >>> from genai_prices import data_snapshot
    >>> _, gpt5 = data_snapshot.get_snapshot().find_provider_model("gpt-5", None, "openai", None)
    >>> tier_context(gpt5, "priority"), tier_context(gpt5, "batch"), tier_context(gpt5, "scale")
    ({'service_tier': 'priority'}, {'processing': 'batch'}, None)
    """
    candidates = (
        ({"processing": "batch"},) if tier == "batch" else ({"service_tier": tier}, {"speed": tier})
    )
    for context in candidates:
        if any(variant.when == context for variant in info.price_variants or ()):
            return context
    return None


def _tier_choice(entry: _Entry, info: ModelInfo, tier: str | None) -> TierChoice:
    if tier is None or tier in DEFAULT_TIERS:
        return _DEFAULT_CHOICE
    choice = entry.tiers.get(tier)
    if choice is not None:
        return choice
    # genai-prices applies price variants only to a provider's own models, not to those it
    # resells from another provider's list.
    context = tier_context(info, tier) if entry.own else None
    if context is None:
        choice = TierChoice(None, (), f"tier {tier} not in the catalog: default prices")
    else:
        variants = tuple(
            variant
            for variant in info.price_variants or ()
            if all(context.get(name) == value for name, value in variant.when.items())
        )
        choice = TierChoice(context, variants, f"tier {tier}")
    if len(entry.tiers) < _MAX_TIERS_KEPT:
        entry.tiers[tier] = choice
    return choice


_DEFAULT_CHOICE = TierChoice(None, (), "")
