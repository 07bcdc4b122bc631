"""Cost of a call, exact to the last fraction of a cent.

Prices come from user overrides first, then from the installed ``genai-prices`` catalog (offline; its
network updates are never turned on here). A model found in neither gets no price: `Pricer.price`
returns ``None``, the call is recorded with ``cost_usd=None``, and the model is logged once.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices.types import ModelPrice

from aivitals.price_overrides import Rates, load_price_overrides
from aivitals.usage import TokenUsage

log = logging.getLogger("aivitals.pricing")

_MILLION = Decimal(1_000_000)
_CATALOG = f"genai-prices {genai_prices.__version__}"


@dataclass(frozen=True, slots=True)
class Cost:
    """What a call cost, split by direction, and where the price came from."""

    total_usd: Decimal
    input_usd: Decimal
    output_usd: Decimal
    source: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """A resolved price: flat rates we can apply ourselves, or a catalog model we must ask each time."""

    rates: Rates | None
    source: str
    context_window: int | None = None
    # Set when the catalog prices this model with tiers or time-dependent prices: then every call
    # goes through genai-prices itself, which knows those rules.
    catalog_model: str | None = None
    catalog_provider: str | None = None


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
    ) -> Cost | None:
        """The cost of ``usage`` on ``model``; ``None`` when the model has no known price."""
        entry = self._lookup(provider, model)
        if entry is None:
            return None
        if entry.rates is not None:
            return _apply(entry.rates, usage, entry.source)
        return self._price_with_catalog(entry, usage, at)

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
                return _Entry(rates=rates, source="override", context_window=rates.context_window)
        if not self._use_catalog:
            return None
        return _resolve_catalog(provider, model)

    def _price_with_catalog(
        self, entry: _Entry, usage: TokenUsage, at: datetime | None
    ) -> Cost | None:
        assert entry.catalog_model is not None  # _resolve_catalog sets it whenever rates is None
        try:
            result = genai_prices.calc_price(
                _catalog_usage(usage),
                model_ref=entry.catalog_model,
                provider_id=entry.catalog_provider,
                genai_request_timestamp=at or datetime.now(UTC),
            )
        except (LookupError, ValueError):
            return None
        return Cost(
            total_usd=result.total_price,
            input_usd=result.input_price,
            output_usd=result.output_price,
            source=entry.source,
        )


def _apply(rates: Rates, usage: TokenUsage, source: str) -> Cost:
    read_rate = rates.cache_read_mtok if rates.cache_read_mtok is not None else rates.input_mtok
    write_rate = rates.cache_write_mtok if rates.cache_write_mtok is not None else rates.input_mtok
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    input_usd = (
        uncached * rates.input_mtok
        + usage.cached_input_tokens * read_rate
        + usage.cache_write_tokens * write_rate
    ) / _MILLION
    output_usd = usage.output_tokens * rates.output_mtok / _MILLION
    return Cost(
        total_usd=input_usd + output_usd, input_usd=input_usd, output_usd=output_usd, source=source
    )


def _catalog_usage(usage: TokenUsage) -> genai_prices.Usage:
    # genai-prices takes input_tokens as the total including cache reads and writes: our convention.
    return genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
    )


def _resolve_catalog(provider: str, model: str) -> _Entry | None:
    probe = genai_prices.Usage(input_tokens=0, output_tokens=0)
    try:
        result = genai_prices.calc_price(probe, model_ref=model, provider_id=provider)
    except LookupError:
        # A provider the catalog does not know (an OpenAI-compatible proxy, say): match the model by
        # name across providers. The price source then names whose price was used.
        try:
            result = genai_prices.calc_price(probe, model_ref=model)
        except LookupError:
            return None
    source = f"{_CATALOG}: {result.provider.id}/{result.model.id}"
    context_window = result.model.context_window
    # Price variants apply only with a price context (service tier...), which we never pass.
    if isinstance(result.model.prices, ModelPrice):
        rates = _flat_rates(result.model_price)
        if rates is not None:
            return _Entry(rates=rates, source=source, context_window=context_window)
    return _Entry(
        rates=None,
        source=source,
        context_window=context_window,
        catalog_model=result.model.id,
        catalog_provider=result.provider.id,
    )


def _flat_rates(price: ModelPrice) -> Rates | None:
    """Rates we may apply ourselves: only when every token price is a plain number (no tiers)."""
    values = (price.input_mtok, price.output_mtok, price.cache_read_mtok, price.cache_write_mtok)
    if not all(value is None or isinstance(value, Decimal) for value in values):
        return None
    input_mtok, output_mtok, read, write = values
    if not isinstance(input_mtok, Decimal):
        return None
    return Rates(
        input_mtok=input_mtok,
        # No output price (embedding models): output is free, as genai-prices itself counts it.
        output_mtok=output_mtok if isinstance(output_mtok, Decimal) else Decimal(0),
        cache_read_mtok=read if isinstance(read, Decimal) else None,
        cache_write_mtok=write if isinstance(write, Decimal) else None,
    )
