"""docs/pricing.md's reconciliation table stays true: every row is read back and recomputed.

For each row: the usage as the provider reports it goes through aivitals' reader and must give
what the row says aivitals records; genai-prices, called directly on that usage, must give the
row's figures; and aivitals' pricer must give the same figures and the row's price source. The
override row is priced from the override example at the top of the same page.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices.types import ModelPrice

from aivitals.price_overrides import load_price_overrides
from aivitals.pricing import Pricer
from aivitals.usage import (
    TokenUsage,
    tool_uses_from_openai_response,
    usage_from_anthropic,
    usage_from_openai,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "pricing.md"
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
"""The date the table's figures are priced at (the page says so)."""

HEADER = "| convention | call | usage as the provider reports it | aivitals records |"
RECORDED = {
    "input": "input_tokens",
    "cached": "cached_input_tokens",
    "write": "cache_write_tokens",
    "write_1h": "cache_write_1h_tokens",
    "output": "output_tokens",
    "reasoning": "reasoning_tokens",
}
# How the page's tier names reach the catalog (docs/pricing.md, "Service tiers").
CONTEXTS = {"priority": "service_tier", "flex": "service_tier", "batch": "processing"}
# Override keys (USD per million tokens, or as named) to genai-prices price keys.
OVERRIDE_KEYS = {
    "input": ("input_mtok", 1),
    "output": ("output_mtok", 1),
    "cached_input": ("cache_read_mtok", 1),
    "cache_write": ("cache_write_mtok", 1),
    "cache_write_1h": ("cache_write_1h_mtok", 1),
    "web_search_kcount": ("web_searches_kcount", 1),
    "code_execution_kcount": ("code_executions_kcount", 1),
    "file_search_kcount": ("storage_searches_kcount", 1),
    "request_fee_usd": ("requests_kcount", 1000),
}


def table_rows() -> list[list[str]]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def code(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def override_example() -> str:
    return DOC.read_text().split("```toml\n", 1)[1].split("```", 1)[0]


def read_usage(provider: str, raw: dict[str, Any]) -> TokenUsage:
    if provider == "anthropic":
        return usage_from_anthropic(raw)
    if "usage" in raw:  # a whole Responses API answer: tool calls are output items
        usage = usage_from_openai(raw["usage"])
        tools = tool_uses_from_openai_response(raw)
        return TokenUsage(**{**_fields(usage), "server_tool_uses": tools})
    return usage_from_openai(raw)


def _fields(usage: TokenUsage) -> dict[str, Any]:
    return {name: getattr(usage, name) for name in usage.__struct_fields__}


def recorded(cell: str) -> TokenUsage:
    fields: dict[str, Any] = {}
    tools: dict[str, int] = {}
    for pair in code(cell)[0].split():
        name, value = pair.split("=")
        if name in RECORDED:
            fields[RECORDED[name]] = int(value)
        else:
            tools[name] = int(value)
    return TokenUsage(**fields, server_tool_uses=tools)


def genai_usage(usage: TokenUsage) -> genai_prices.Usage:
    tools = usage.server_tool_uses
    return genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
        web_searches=tools.get("web_search", 0),
        code_executions=tools.get("code_execution", 0),
        storage_searches=tools.get("file_search", 0),
    )


def genai_figures(
    provider: str, model: str, tier: str | None, usage: TokenUsage
) -> tuple[tuple[Decimal, Decimal, Decimal], str] | None:
    """(input, output, total) and whose price, from genai-prices alone; None when it has none."""
    if provider == "acme":
        rates = tomllib.loads(override_example())["models"][model]
        price = ModelPrice(
            **{
                key: Decimal(str(rates[name])) * scale
                for name, (key, scale) in OVERRIDE_KEYS.items()
                if name in rates
            }
        )
        result = price.calc_price(genai_usage(usage))
        return (result["input_price"], result["output_price"], result["total_price"]), "override"
    context = {CONTEXTS.get(tier, "service_tier"): tier} if tier else None
    try:
        found = genai_prices.calc_price(
            genai_usage(usage),
            model_ref=model,
            provider_id=provider,
            genai_request_timestamp=AT,
            price_context=context,
        )
    except LookupError as error:
        if "Unable to find provider" not in str(error):
            return None  # a provider the catalog knows, without this model: no price
        # A provider the catalog does not know: the model by its name alone.
        found = genai_prices.calc_price(
            genai_usage(usage), model_ref=model, genai_request_timestamp=AT
        )
    return (found.input_price, found.output_price, found.total_price), (
        f"{found.provider.id}/{found.model.id}"
    )


ROWS = table_rows()


def test_the_table_has_a_row_for_every_convention() -> None:
    conventions = " ".join(row[0] for row in ROWS).lower()
    for needed in (
        "openai chat",
        "responses",
        "embeddings",
        "reads",
        "5-minute",
        "1-hour",
        "tier",
        "web search",
        "long-context",
        "request fee",
        "override",
    ):
        assert needed in conventions, needed


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_each_row_is_what_aivitals_records_and_what_genai_prices_charges(
    row: list[str], tmp_path: Path
) -> None:
    _, call, raw, records, input_usd, output_usd, total_usd, source = row
    [provider_model, *tier] = code(call)
    provider, model = provider_model.split("/", 1)
    usage = read_usage(provider, json.loads(code(raw)[0]))
    assert usage == recorded(records)

    overrides_file = tmp_path / "prices.toml"
    overrides_file.write_text(override_example())
    pricer = Pricer(overrides=load_price_overrides(overrides_file))
    cost = pricer.price(
        provider=provider, model=model, usage=usage, at=AT, service_tier=tier[0] if tier else None
    )
    want = genai_figures(provider, model, tier[0] if tier else None, usage)
    if want is None:
        assert (input_usd, output_usd, total_usd) == ("null", "null", "null")
        assert cost is None
        return
    figures, priced_from = want
    assert tuple(Decimal(cell) for cell in (input_usd, output_usd, total_usd)) == figures
    assert cost is not None
    assert (cost.input_usd, cost.output_usd, cost.total_usd) == figures
    [shown] = code(source)
    assert shown.startswith(priced_from)
    prefix = "" if priced_from == "override" else f"genai-prices {genai_prices.__version__}: "
    assert cost.source == prefix + shown
