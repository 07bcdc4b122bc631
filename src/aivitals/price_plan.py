"""A model's price compiled once, then applied to each call: every unit the price has, by the
catalog's own rules.

A genai-prices `ModelPrice` names a price per *unit* (input tokens, cache reads, 5-minute and
1-hour cache writes, reasoning tokens, web searches, code executions, file searches, requests,
audio, images...), each a plain number or tiered by the call's total input tokens. Units nest:
a cache read is an input token, a 1-hour write a cache write; each token is billed once, at the
most specific unit the model prices (genai-prices calls these *leaf* values), so a model that
prices no 1-hour writes bills them as cache writes, and one that prices no cache writes at all as
input.

Why hand-written and not ``ModelPrice.calc_price`` per call: that function validates the price and
rebuilds the usage decomposition every time (about 70 µs), and the recorder prices every call on
the caller's thread. A `PricePlan` does the validation and the decomposition once per price (as
coefficients over the few quantities a `TokenUsage` holds) and each call is a few multiplications.
tests/test_pricing_sweep.py proves it equal to genai-prices for every model of the catalog.

>>> from decimal import Decimal
>>> from genai_prices.types import ModelPrice
>>> plan = compile_plan(ModelPrice(input_mtok=Decimal(3), output_mtok=Decimal(15),
...     cache_read_mtok=Decimal("0.3"), cache_write_mtok=Decimal("3.75"),
...     cache_write_1h_mtok=Decimal(6), web_searches_kcount=Decimal(10)))
>>> from aivitals.usage import TokenUsage
>>> plan.apply(TokenUsage(input_tokens=3000, cache_write_tokens=2000, cache_write_1h_tokens=1000,
...     output_tokens=100, server_tool_uses={"web_search": 2}))
(Decimal('0.03425'), Decimal('0.01275'), Decimal('0.0015'))
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from genai_prices.decompose import is_descendant_or_self
from genai_prices.types import ModelPrice, TieredPrices, _collect_resolved_model_prices
from genai_prices.units import UnitDef, _get_registry
from genai_prices.validation import validate_priced_units

from aivitals.usage import TokenUsage

# The quantities of a `TokenUsage`, by position in the tuple `_quantities` builds.
_INPUT, _OUTPUT, _READ, _WRITE, _WRITE_1H, _REASONING, _WEB, _CODE, _FILE, _ONE = range(10)

USAGE_KEYS: Mapping[str, Mapping[int, int]] = {
    "input_tokens": {_INPUT: 1},
    "output_tokens": {_OUTPUT: 1},
    "cache_read_tokens": {_READ: 1},
    "cache_write_tokens": {_WRITE: 1},
    "cache_write_5m_tokens": {_WRITE: 1, _WRITE_1H: -1},
    "cache_write_1h_tokens": {_WRITE_1H: 1},
    "output_reasoning_tokens": {_REASONING: 1},
    "web_searches": {_WEB: 1},
    "code_executions": {_CODE: 1},
    "storage_searches": {_FILE: 1},
}
"""genai-prices usage keys a `TokenUsage` fills, as coefficients over its quantities; every other
unit (audio, images, characters, pages...) counts 0 for a call aivitals records."""

TOOL_UNITS: Mapping[str, str] = {
    "web_search": "web_searches",
    "code_execution": "code_executions",
    "file_search": "storage_searches",
}
"""`aivitals.usage.TOOL_USE_KINDS` to genai-prices units. ``web_fetch`` has none: Anthropic bills
fetched content as input tokens only."""

_NO_DIRECTION, _IN, _OUT = 0, 1, 2
_Rate = Decimal | tuple[Decimal, tuple[tuple[int, Decimal], ...]]
_Term = tuple[tuple[tuple[int, int], ...], _Rate, int]


class PricePlan:
    """One `ModelPrice`, compiled: `apply` prices a usage as ``ModelPrice.calc_price`` would."""

    __slots__ = ("terms",)

    def __init__(self, terms: tuple[_Term, ...]) -> None:
        # Each term: (count as (quantity, coefficient) pairs, USD per million, direction).
        self.terms = terms

    def apply(self, usage: TokenUsage) -> tuple[Decimal, Decimal, Decimal] | None:
        """(total, input, output) in USD; None for a usage the price cannot split (a leaf below 0).

        Tool and request fees count in the total and in neither direction, as in genai-prices.
        """
        quantities = _quantities(usage)
        # Sums in micro-dollars-per-token units (USD per million), divided once at the end.
        other = input_sum = output_sum = _ZERO
        for counts, priced, direction in self.terms:
            count = 0
            for index, coefficient in counts:
                count += coefficient * quantities[index]
            if count <= 0:
                if count < 0:
                    return None
                continue  # adds 0
            if type(priced) is Decimal:
                rate = priced
            else:
                base, tiers = priced  # type: ignore[misc]  # the tiered form of _Rate
                # Cliff tiers: crossing a threshold of total input prices every token at its rate.
                rate = base
                for start, price in tiers:
                    if quantities[_INPUT] > start:
                        rate = price
                        break
            # Rates are stored per million units (a per-thousand price times 1,000): every step
            # is exact in Decimal, so the sum is genai-prices' own, to the last digit.
            cost = rate * count
            if direction == _IN:
                input_sum += cost
            elif direction == _OUT:
                output_sum += cost
            else:
                other += cost
        total = (input_sum + output_sum + other) / _MILLION
        return total, input_sum / _MILLION, output_sum / _MILLION


_ZERO = Decimal(0)
_MILLION = Decimal(1_000_000)


def compile_plan(price: ModelPrice) -> PricePlan | None:
    """The plan of ``price``; None when genai-prices refuses the price itself (a unit priced
    without its parent, say), so it would fail every call too."""
    registry = _get_registry()
    try:
        resolved = _collect_resolved_model_prices(price, registry)
        validate_priced_units(tuple(unit for unit, _ in resolved), registry)
    except ValueError:
        return None
    leaves = _leaf_counts([unit for unit, _ in resolved if unit.usage_key != "requests"])
    terms: list[_Term] = []
    for unit, value in resolved:
        # genai-prices counts one request per call whenever the model has a request fee.
        counts = ((_ONE, 1),) if unit.usage_key == "requests" else leaves[unit.usage_key]
        if not counts:
            continue  # a unit no recorded call has (audio, pages...): it adds 0
        if 1_000_000 % unit.per:
            return None  # no unit a call carries is priced so (tests/test_pricing_sweep.py)
        direction = {"input": _IN, "output": _OUT}.get(str(unit.dimensions.get("direction")), 0)
        terms.append((counts, _rate(value, unit.per), direction))
    return PricePlan(tuple(terms))


def _rate(value: Decimal | TieredPrices, per: int) -> _Rate:
    scale = 1_000_000 // per
    if isinstance(value, TieredPrices):
        tiers = tuple((tier.start, tier.price * scale) for tier in reversed(value.tiers))
        return value.base * scale, tiers
    return value * scale


def _leaf_counts(units: list[UnitDef]) -> dict[str, tuple[tuple[int, int], ...]]:
    """Each priced unit's own count: its usage less what its priced descendants take, worked
    out on coefficients in the order genai-prices' ``compute_leaf_values`` uses on numbers."""
    ordered = sorted(units, key=lambda unit: (-len(unit.dimensions), unit.usage_key))
    leaves: dict[str, dict[int, int]] = {}
    for unit in ordered:
        vector = dict(USAGE_KEYS.get(unit.usage_key, {}))
        for other in ordered:
            if other is not unit and is_descendant_or_self(unit, other):
                for index, coefficient in leaves[other.usage_key].items():
                    vector[index] = vector.get(index, 0) - coefficient
        leaves[unit.usage_key] = {index: c for index, c in vector.items() if c}
    return {key: tuple(sorted(vector.items())) for key, vector in leaves.items()}


def _quantities(usage: TokenUsage) -> tuple[int, ...]:
    tools = usage.server_tool_uses
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
        usage.reasoning_tokens,
        tools.get("web_search", 0) if tools else 0,
        tools.get("code_execution", 0) if tools else 0,
        tools.get("file_search", 0) if tools else 0,
        1,
    )
