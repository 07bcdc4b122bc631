"""The whole catalog, swept: aivitals' price of a call equals genai-prices' for every model.

For every model of the installed catalog, a usage with every quantity a call can carry set
(uncached input, cache reads, 5-minute and 1-hour cache writes, output with reasoning, web
searches, code executions, file searches), below and above every long-context tier, at three
times (prices change by date and by time of day), in the default tier and in every tier the
model has a price variant for. The expected figure is genai-prices' ``calc_price`` called
directly on the same usage, in genai-prices' own usage keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, PriceCalculation

from aivitals.pricing import Pricer
from aivitals.usage import TokenUsage

# Below the lowest long-context threshold of the catalog (32,000), and above the highest (524,288).
INPUTS = (20_000, 600_000)
# Earlier and later prices, and DeepSeek's hours: 02:00 and 14:00 UTC fall in some of its
# time-of-day prices, 20:00 in none.
WHEN = (
    datetime(2025, 3, 1, 2, 0, tzinfo=UTC),
    datetime(2026, 11, 20, 14, 0, tzinfo=UTC),
    datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
)
TIERS_BY_CONTEXT = {"service_tier": None, "speed": None, "processing": "batch"}


def usage_pair(input_tokens: int) -> tuple[TokenUsage, genai_prices.Usage]:
    """One call's usage as aivitals records it, and the same usage in genai-prices' keys."""
    read, write, write_1h = input_tokens // 4, input_tokens // 5, input_tokens // 20
    output, reasoning = 3_000, 1_200
    ours = TokenUsage(
        input_tokens=input_tokens,
        cached_input_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
        output_tokens=output,
        reasoning_tokens=reasoning,
        server_tool_uses={"web_search": 3, "code_execution": 2, "file_search": 5, "web_fetch": 4},
    )
    theirs = genai_prices.Usage(
        input_tokens=input_tokens,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_5m_tokens=write - write_1h,
        cache_write_1h_tokens=write_1h,
        output_tokens=output,
        output_reasoning_tokens=reasoning,
        web_searches=3,
        code_executions=2,
        storage_searches=5,
    )
    return ours, theirs


def tiers_of(model: ModelInfo) -> list[tuple[str, dict[str, str]]]:
    """The tiers a provider can report that the model has prices for, with their price context."""
    found: dict[str, dict[str, str]] = {}
    for variant in model.price_variants or ():
        [(key, value)] = variant.when.items()
        if key in TIERS_BY_CONTEXT:
            tier = TIERS_BY_CONTEXT[key] or value
            # A model with both a service tier and a speed of one name: the service tier wins.
            found.setdefault(tier, dict(variant.when))
    return sorted(found.items())


def catalog() -> Iterator[tuple[str, ModelInfo]]:
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            yield provider.id, model


def expected(
    theirs: genai_prices.Usage,
    provider: str,
    model: str,
    at: datetime,
    context: dict[str, str] | None,
) -> PriceCalculation | None:
    try:
        return genai_prices.calc_price(
            theirs,
            model_ref=model,
            provider_id=provider,
            genai_request_timestamp=at,
            price_context=context,
        )
    except (LookupError, ValueError):
        return None


def test_every_model_of_the_catalog_is_priced_as_genai_prices_prices_it() -> None:
    pricer = Pricer()
    checked = tiered = priced = 0
    mismatches: list[str] = []
    for provider, model in catalog():
        cases: list[tuple[str | None, dict[str, str] | None]] = [(None, None), *tiers_of(model)]
        for input_tokens in INPUTS:
            ours, theirs = usage_pair(input_tokens)
            for at in WHEN:
                for tier, context in cases:
                    want = expected(theirs, provider, model.id, at, context)
                    got = pricer.price(
                        provider=provider, model=model.id, usage=ours, at=at, service_tier=tier
                    )
                    checked += 1
                    tiered += tier is not None
                    if want is None:
                        if got is not None:
                            mismatches.append(
                                f"{provider}/{model.id}: priced, genai-prices refuses"
                            )
                        continue
                    priced += 1
                    figures = (want.total_price, want.input_price, want.output_price)
                    if got is None or (got.total_usd, got.input_usd, got.output_usd) != figures:
                        mismatches.append(
                            f"{provider}/{model.id} input={input_tokens} at={at:%Y-%m-%d} "
                            f"tier={tier}: {got} != {figures}"
                        )
                    elif f"/{want.model.id}" not in got.source:
                        mismatches.append(f"{provider}/{model.id}: source {got.source!r}")
    assert mismatches == [], f"{len(mismatches)} of {checked}: {mismatches[:10]}"
    # The sweep is what it says: the whole catalog (some of whose entries no name reaches:
    # both sides leave those unpriced), and its tiers.
    assert checked > len(INPUTS) * len(WHEN) * 2000
    assert priced > len(INPUTS) * len(WHEN) * 1800, priced
    assert tiered > 800


def test_the_sweep_covers_every_unit_a_call_can_carry() -> None:
    # Each unit the usage above fills is priced by some model of the catalog; if one were
    # priced by none, the sweep would not be testing it.
    priced: set[str] = set()
    for _, model in catalog():
        conditional = model.prices if isinstance(model.prices, list) else None
        prices = [c.prices for c in conditional] if conditional else [model.prices]
        for price in prices:
            priced |= {key for key, value in vars(price).items() if value is not None}
    for key in (
        "cache_read_mtok",
        "cache_write_mtok",
        "cache_write_1h_mtok",
        "output_reasoning_mtok",
        "web_searches_kcount",
        "storage_searches_kcount",
        "requests_kcount",
    ):
        assert key in priced


@pytest.mark.parametrize("tier", ["scale", "no-such-tier"])
def test_a_tier_the_catalog_does_not_price_is_priced_at_the_default_and_said(tier: str) -> None:
    ours, theirs = usage_pair(20_000)
    at = WHEN[1]
    want = expected(theirs, "openai", "gpt-5", at, None)
    assert want is not None
    cost = Pricer().price(provider="openai", model="gpt-5", usage=ours, at=at, service_tier=tier)
    assert cost is not None
    assert cost.total_usd == want.total_price
    assert cost.source.endswith(f"(tier {tier} not in the catalog: default prices)")
    assert want.total_price > Decimal(0)
