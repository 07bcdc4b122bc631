"""Issue 16's findings, one test each: real provider response objects, through aivitals' usage
readers and pricer, against genai-prices called directly on the usage as the provider reports it.

Each expected figure comes from ``genai_prices.calc_price`` (or, for overrides, genai-prices'
own ``ModelPrice.calc_price``), never from aivitals' pricing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from anthropic.types import Message
from genai_prices.types import ModelPrice
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from aivitals.draft import CallDraft
from aivitals.price_overrides import parse_price_overrides
from aivitals.pricing import Pricer
from aivitals.recorder import Recorder
from aivitals.usage import (
    TokenUsage,
    tool_uses_from_openai_response,
    usage_from_anthropic,
    usage_from_openai,
)

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def catalog(
    model: str,
    provider: str | None = None,
    context: dict[str, str] | None = None,
    **usage: int,
) -> genai_prices.types.PriceCalculation:
    return genai_prices.calc_price(
        genai_prices.Usage(**usage),
        model_ref=model,
        provider_id=provider,
        genai_request_timestamp=AT,
        price_context=context,
    )


def anthropic_usage(**usage: Any) -> Any:
    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    ).usage


def openai_response(usage: dict[str, Any], **extra: Any) -> Response:
    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "gpt-5",
            "output": [],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {"total_tokens": 0, **usage},
            **extra,
        }
    )


def priced(provider: str, model: str, usage: TokenUsage, tier: str | None = None) -> Any:
    cost = Pricer().price(provider=provider, model=model, usage=usage, at=AT, service_tier=tier)
    assert cost is not None
    return cost


def test_1_hour_cache_writes_are_priced_at_their_own_rate() -> None:
    # Anthropic: 3,000 written, 2,000 of them with a 1-hour lifetime (2x input, not 1.25x).
    usage = usage_from_anthropic(
        anthropic_usage(
            input_tokens=100,
            cache_read_input_tokens=500,
            cache_creation_input_tokens=3000,
            cache_creation={"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
            output_tokens=200,
        )
    )
    want = catalog(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=3600,
        cache_read_tokens=500,
        cache_write_tokens=3000,
        cache_write_1h_tokens=2000,
        output_tokens=200,
    )
    as_5_minute = catalog(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=3600,
        cache_read_tokens=500,
        cache_write_tokens=3000,
        output_tokens=200,
    )
    cost = priced("anthropic", "claude-sonnet-4-5", usage)
    assert (cost.total_usd, cost.input_usd, cost.output_usd) == (
        want.total_price,
        want.input_price,
        want.output_price,
    )
    assert cost.total_usd > as_5_minute.total_price  # what was recorded before


def test_openai_cache_writes_are_priced_where_the_catalog_prices_them() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-6-sol",
            "choices": [],
            "usage": {
                "prompt_tokens": 10_000,
                "completion_tokens": 300,
                "total_tokens": 10_300,
                "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 6000},
            },
        }
    )
    assert completion.usage is not None
    cost = priced("openai", "gpt-6-sol", usage_from_openai(completion.usage))
    want = catalog(
        "gpt-6-sol",
        "openai",
        input_tokens=10_000,
        cache_read_tokens=2000,
        cache_write_tokens=6000,
        output_tokens=300,
    )
    assert cost.total_usd == want.total_price
    plain = catalog("gpt-6-sol", "openai", input_tokens=10_000, cache_read_tokens=2000)
    assert cost.input_usd > plain.input_price


def test_the_responses_api_usage_shape_is_priced() -> None:
    response = openai_response(
        {
            "input_tokens": 5000,
            "output_tokens": 800,
            "input_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 600},
        }
    )
    assert response.usage is not None
    cost = priced("openai", "gpt-5", usage_from_openai(response.usage))
    want = catalog(
        "gpt-5",
        "openai",
        input_tokens=5000,
        cache_read_tokens=4096,
        output_tokens=800,
        output_reasoning_tokens=600,
    )
    assert (cost.total_usd, cost.input_usd, cost.output_usd) == (
        want.total_price,
        want.input_price,
        want.output_price,
    )


@pytest.mark.parametrize(
    ("provider", "model", "tier", "context"),
    [
        ("openai", "gpt-5", "priority", {"service_tier": "priority"}),
        ("openai", "gpt-5", "flex", {"service_tier": "flex"}),
        ("openai", "gpt-4o", "priority", {"service_tier": "priority"}),
        ("anthropic", "claude-sonnet-4-5", "batch", {"processing": "batch"}),
        ("anthropic", "claude-opus-4-8", "fast", {"speed": "fast"}),
    ],
)
def test_the_service_tier_is_priced_at_the_tiers_prices(
    provider: str, model: str, tier: str, context: dict[str, str]
) -> None:
    usage = TokenUsage(input_tokens=20_000, cached_input_tokens=8000, output_tokens=1500)
    want = catalog(
        model,
        provider,
        context,
        input_tokens=20_000,
        cache_read_tokens=8000,
        output_tokens=1500,
    )
    default = catalog(model, provider, input_tokens=20_000, cache_read_tokens=8000)
    cost = priced(provider, model, usage, tier)
    assert cost.total_usd == want.total_price
    assert cost.input_usd != default.input_price  # the tier has prices of its own
    assert cost.source.endswith(f"(tier {tier})")
    # The default tier, as each provider names it, is the default price and says nothing more.
    for same in (None, "default", "standard", "auto"):
        plain = priced(provider, model, usage, same)
        assert plain.input_usd == default.input_price
        assert "tier" not in plain.source


def test_a_tier_the_catalog_lacks_for_the_model_is_priced_at_the_default_and_said() -> None:
    # Anthropic reports "priority"; the catalog has no priority prices for this model.
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    cost = priced("anthropic", "claude-sonnet-4-5", usage, "priority")
    want = catalog("claude-sonnet-4-5", "anthropic", input_tokens=1000, output_tokens=100)
    assert cost.total_usd == want.total_price
    assert cost.source == (
        f"genai-prices {genai_prices.__version__}: anthropic/claude-sonnet-4-5 "
        "(tier priority not in the catalog: default prices)"
    )


def test_the_recorder_prices_a_draft_by_its_service_tier() -> None:
    draft = CallDraft(provider="openai", model="gpt-5", started_at=AT)
    draft.set_tokens(TokenUsage(input_tokens=1000, output_tokens=100))
    draft.service_tier = "priority"
    recorder = Recorder()
    try:
        recorder.price_draft(draft)
        call = draft.freeze(latency_ms=10.0)
    finally:
        recorder.close()
    want = catalog(
        "gpt-5", "openai", {"service_tier": "priority"}, input_tokens=1000, output_tokens=100
    )
    assert call.cost_usd == want.total_price
    assert call.service_tier == "priority"
    assert call.price_source is not None and call.price_source.endswith("(tier priority)")


def test_anthropic_web_searches_are_billed_per_search() -> None:
    usage = usage_from_anthropic(
        anthropic_usage(
            input_tokens=2000,
            output_tokens=400,
            server_tool_use={"web_search_requests": 3, "web_fetch_requests": 2},
        )
    )
    cost = priced("anthropic", "claude-sonnet-4-5", usage)
    want = catalog(
        "claude-sonnet-4-5", "anthropic", input_tokens=2000, output_tokens=400, web_searches=3
    )
    tokens_only = catalog("claude-sonnet-4-5", "anthropic", input_tokens=2000, output_tokens=400)
    assert cost.total_usd == want.total_price
    assert cost.total_usd > tokens_only.total_price
    # The fee is in the total, in neither direction (as genai-prices counts it).
    assert (cost.input_usd, cost.output_usd) == (tokens_only.input_price, tokens_only.output_price)


def test_responses_api_web_and_file_searches_are_billed() -> None:
    search = {
        "type": "web_search_call",
        "id": "w",
        "status": "completed",
        "action": {"type": "search", "query": "q"},
    }
    files = {"type": "file_search_call", "id": "f", "status": "completed", "queries": ["q"]}
    response = openai_response(
        {
            "input_tokens": 3000,
            "output_tokens": 200,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        output=[search, search, files],
    )
    assert response.usage is not None
    usage = usage_from_openai(response.usage)
    usage = TokenUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        server_tool_uses=tool_uses_from_openai_response(response),
    )
    cost = priced("openai", "gpt-4o", usage)
    want = catalog(
        "gpt-4o",
        "openai",
        input_tokens=3000,
        output_tokens=200,
        web_searches=2,
        storage_searches=1,
    )
    assert cost.total_usd == want.total_price


def test_a_per_request_fee_is_billed_once_per_call() -> None:
    usage = TokenUsage(input_tokens=500, output_tokens=50)
    cost = priced("perplexity", "sonar", usage)
    want = catalog("sonar", "perplexity", input_tokens=500, output_tokens=50)
    assert cost.total_usd == want.total_price
    assert cost.total_usd > cost.input_usd + cost.output_usd  # the fee


def test_long_context_prices_apply_above_the_threshold() -> None:
    usage = TokenUsage(input_tokens=250_000, cached_input_tokens=50_000, output_tokens=2000)
    cost = priced("anthropic", "claude-sonnet-4-5", usage)
    want = catalog(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=250_000,
        cache_read_tokens=50_000,
        output_tokens=2000,
    )
    assert cost.total_usd == want.total_price


def test_a_known_provider_is_not_priced_from_another_providers_model() -> None:
    # deepseek-chat is in the catalog, under deepseek; sent as openai (an OpenAI-compatible
    # client pointed elsewhere, say) it is not OpenAI's price to give.
    assert catalog("deepseek-chat", input_tokens=1000).provider.id == "deepseek"
    pricer = Pricer()
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    assert pricer.price(provider="openai", model="deepseek-chat", usage=usage, at=AT) is None
    assert pricer.price(provider="deepseek", model="deepseek-chat", usage=usage, at=AT) is not None


def test_an_unknown_provider_is_priced_by_name_and_the_provider_priced_is_named() -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    cost = priced("my-proxy", "gpt-4o", usage)
    want = catalog("gpt-4o", input_tokens=1000, output_tokens=100)
    assert cost.total_usd == want.total_price
    assert cost.source == f"genai-prices {genai_prices.__version__}: openai/gpt-4o"


def test_a_reseller_the_catalog_names_is_priced_from_the_provider_it_resells() -> None:
    # The catalog says Azure sells OpenAI's models at OpenAI's prices: the source says whose.
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    cost = priced("azure", "gpt-4o", usage)
    want = catalog("gpt-4o", "azure", input_tokens=1000, output_tokens=100)
    assert cost.total_usd == want.total_price
    assert cost.source == f"genai-prices {genai_prices.__version__}: openai/gpt-4o"
    # Price variants are the reseller's to have: genai-prices applies none, and neither do we.
    tiered = priced("azure", "gpt-4o", usage, "priority")
    assert tiered.total_usd == want.total_price
    assert tiered.source.endswith("(tier priority not in the catalog: default prices)")


def test_overrides_price_1_hour_writes_tool_uses_and_a_request_fee() -> None:
    overrides = parse_price_overrides(
        {
            "models": {
                "house-70b": {
                    "input": 1,
                    "output": 4,
                    "cached_input": 0.1,
                    "cache_write": 1.25,
                    "cache_write_1h": 2,
                    "web_search_kcount": 10,
                    "file_search_kcount": 2.5,
                    "request_fee_usd": 0.0002,
                }
            }
        }
    )
    usage = TokenUsage(
        input_tokens=10_000,
        cached_input_tokens=1000,
        cache_write_tokens=3000,
        cache_write_1h_tokens=1000,
        output_tokens=500,
        server_tool_uses={"web_search": 2, "file_search": 4},
    )
    cost = Pricer(overrides=overrides).price(provider="acme", model="house-70b", usage=usage)
    assert cost is not None and cost.source == "override"
    want = ModelPrice(
        input_mtok=Decimal(1),
        output_mtok=Decimal(4),
        cache_read_mtok=Decimal("0.1"),
        cache_write_mtok=Decimal("1.25"),
        cache_write_1h_mtok=Decimal(2),
        web_searches_kcount=Decimal(10),
        storage_searches_kcount=Decimal("2.5"),
        requests_kcount=Decimal("0.2"),
    ).calc_price(
        genai_prices.Usage(
            input_tokens=10_000,
            cache_read_tokens=1000,
            cache_write_tokens=3000,
            cache_write_1h_tokens=1000,
            output_tokens=500,
            web_searches=2,
            storage_searches=4,
        )
    )
    assert (cost.total_usd, cost.input_usd, cost.output_usd) == (
        want["total_price"],
        want["input_price"],
        want["output_price"],
    )


def test_an_override_1_hour_rate_alone_leaves_5_minute_writes_at_the_input_rate() -> None:
    overrides = parse_price_overrides(
        {"models": {"m": {"input": 2, "output": 2, "cache_write_1h": 4}}}
    )
    usage = TokenUsage(input_tokens=3000, cache_write_tokens=2000, cache_write_1h_tokens=500)
    cost = Pricer(overrides=overrides, use_catalog=False).price(
        provider="x", model="m", usage=usage
    )
    want = ModelPrice(
        input_mtok=Decimal(2),
        output_mtok=Decimal(2),
        cache_write_mtok=Decimal(2),
        cache_write_1h_mtok=Decimal(4),
    ).calc_price(
        genai_prices.Usage(input_tokens=3000, cache_write_tokens=2000, cache_write_1h_tokens=500)
    )
    assert cost is not None and cost.total_usd == want["total_price"]
