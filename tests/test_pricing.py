"""Cost reconciliation: hand-computed figures for each provider convention, and the catalog."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals.price_overrides import PriceFileError, Rates, load_price_overrides
from aivitals.pricing import Pricer
from aivitals.usage import TokenUsage, usage_from_anthropic, usage_from_openai

# The catalog rates the hand computations below rely on (USD per million tokens). If the catalog
# changes one, test_catalog_rates_are_the_ones_computed_by_hand says which, before the table fails.
RATES = {
    ("openai", "gpt-4o"): ("2.5", "10", "1.25", None),
    ("openai", "o3-mini"): ("1.1", "4.4", "0.55", None),
    ("anthropic", "claude-3-7-sonnet-latest"): ("3", "15", "0.3", "3.75"),
    ("anthropic", "claude-sonnet-4-5"): ("3", "15", "0.3", "3.75"),
    ("openai", "text-embedding-3-small"): ("0.02", None, None, None),
}

ACME = Rates(
    input_mtok=Decimal("0.90"), output_mtok=Decimal("0.90"), cache_read_mtok=Decimal("0.45")
)

# (case, provider, model, raw usage as the provider reports it, input $, output $, total $)
# Every figure is worked by hand in the comment beside it.
TABLE = [
    # 1000 x 2.5 = 2500 µ$; 200 x 10 = 2000 µ$.
    (
        "openai-no-cache",
        "openai",
        "gpt-4o",
        {"prompt_tokens": 1000, "completion_tokens": 200},
        "0.0025",
        "0.002",
        "0.0045",
    ),
    # prompt_tokens 2000 INCLUDES 1536 cached: 464 x 2.5 = 1160, 1536 x 1.25 = 1920; 100 x 10 = 1000.
    (
        "openai-cached",
        "openai",
        "gpt-4o",
        {
            "prompt_tokens": 2000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 1536},
        },
        "0.00308",
        "0.001",
        "0.00408",
    ),
    # completion_tokens 1500 INCLUDES 1200 reasoning: priced once as output, 1500 x 4.4 = 6600.
    (
        "openai-reasoning",
        "openai",
        "o3-mini",
        {
            "prompt_tokens": 500,
            "completion_tokens": 1500,
            "completion_tokens_details": {"reasoning_tokens": 1200},
        },
        "0.00055",
        "0.0066",
        "0.00715",
    ),
    # Anthropic input_tokens 100 EXCLUDES the 2000 cache reads: 100 x 3 = 300, 2000 x 0.3 = 600.
    (
        "anthropic-cache-read",
        "anthropic",
        "claude-3-7-sonnet-latest",
        {"input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 250},
        "0.0009",
        "0.00375",
        "0.00465",
    ),
    # 100 x 3 = 300, 3000 cache writes x 3.75 = 11250; 50 x 15 = 750.
    (
        "anthropic-cache-write",
        "anthropic",
        "claude-3-7-sonnet-latest",
        {
            "input_tokens": 100,
            "cache_creation_input_tokens": 3000,
            "cache_read_input_tokens": 0,
            "output_tokens": 50,
        },
        "0.01155",
        "0.00075",
        "0.0123",
    ),
    # A tiered model (priced through genai-prices itself): 200 x 3 + 1000 x 0.3 + 500 x 3.75 = 2775.
    (
        "anthropic-tiered-model",
        "anthropic",
        "claude-sonnet-4-5",
        {
            "input_tokens": 200,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 500,
            "output_tokens": 100,
        },
        "0.002775",
        "0.0015",
        "0.004275",
    ),
    # Override: 6000 uncached x 0.9 = 5400, 4000 cached x 0.45 = 1800; 1000 x 0.9 = 900.
    (
        "override",
        "acme",
        "acme-70b",
        {
            "prompt_tokens": 10000,
            "completion_tokens": 1000,
            "prompt_tokens_details": {"cached_tokens": 4000},
        },
        "0.0072",
        "0.0009",
        "0.0081",
    ),
    # Embeddings: 5000 x 0.02 = 100 µ$, nothing for output.
    (
        "openai-embedding",
        "openai",
        "text-embedding-3-small",
        {"prompt_tokens": 5000, "total_tokens": 5000},
        "0.0001",
        "0",
        "0.0001",
    ),
]


@pytest.fixture
def pricer() -> Pricer:
    return Pricer(overrides={(None, "acme-70b"): ACME})


@pytest.mark.parametrize(("provider", "model"), list(RATES), ids=[m for _, m in RATES])
def test_catalog_rates_are_the_ones_computed_by_hand(provider: str, model: str) -> None:
    result = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=0, output_tokens=0), model_ref=model, provider_id=provider
    )
    price = result.model_price
    found = (price.input_mtok, price.output_mtok, price.cache_read_mtok, price.cache_write_mtok)
    as_text = tuple(
        None if value is None else str(getattr(value, "base", value)) for value in found
    )
    assert as_text == RATES[(provider, model)]


@pytest.mark.parametrize(
    ("provider", "model", "raw", "input_usd", "output_usd", "total_usd"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_reconciliation_table(
    pricer: Pricer,
    provider: str,
    model: str,
    raw: dict[str, object],
    input_usd: str,
    output_usd: str,
    total_usd: str,
) -> None:
    usage = usage_from_anthropic(raw) if provider == "anthropic" else usage_from_openai(raw)
    cost = pricer.price(provider=provider, model=model, usage=usage)
    assert cost is not None
    assert cost.input_usd == Decimal(input_usd)
    assert cost.output_usd == Decimal(output_usd)
    assert cost.total_usd == Decimal(total_usd)


def test_unknown_model_has_no_price_and_is_logged_once(
    pricer: Pricer, caplog: pytest.LogCaptureFixture
) -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="aivitals.pricing"):
        first = pricer.price(provider="openai", model="gpt-imaginary-9", usage=usage)
        second = pricer.price(provider="openai", model="gpt-imaginary-9", usage=usage)
    assert first is None and second is None
    warnings = [r for r in caplog.records if "gpt-imaginary-9" in r.getMessage()]
    assert len(warnings) == 1


def test_unknown_provider_is_matched_by_model_name_and_says_whose_price(pricer: Pricer) -> None:
    cost = pricer.price(
        provider="my-proxy", model="gpt-4o", usage=TokenUsage(input_tokens=1000, output_tokens=0)
    )
    assert cost is not None
    assert cost.total_usd == Decimal("0.0025")
    assert "openai/gpt-4o" in cost.source


def test_override_for_one_provider_does_not_apply_to_another() -> None:
    pricer = Pricer(overrides={("azure", "gpt-4o"): ACME})
    usage = TokenUsage(input_tokens=1_000_000, output_tokens=0)
    azure = pricer.price(provider="azure", model="gpt-4o", usage=usage)
    openai = pricer.price(provider="openai", model="gpt-4o", usage=usage)
    assert azure is not None and azure.total_usd == Decimal("0.90")
    assert openai is not None and openai.total_usd == Decimal("2.5")


def test_catalog_off_prices_only_overrides() -> None:
    pricer = Pricer(overrides={(None, "acme-70b"): ACME}, use_catalog=False)
    usage = TokenUsage(input_tokens=100, output_tokens=100)
    assert pricer.price(provider="openai", model="gpt-4o", usage=usage) is None
    assert pricer.price(provider="x", model="acme-70b", usage=usage) is not None


FLAT_MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-3-7-sonnet-latest"),
    ("anthropic", "claude-haiku-4-5"),
    ("openai", "chatgpt-4o-latest"),  # no cache-read price: cached tokens pay the input rate
]


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from(FLAT_MODELS),
    uncached=st.integers(0, 2_000_000),
    read=st.integers(0, 2_000_000),
    write=st.integers(0, 2_000_000),
    output=st.integers(0, 500_000),
)
def test_fast_path_agrees_with_genai_prices(
    model: tuple[str, str], uncached: int, read: int, write: int, output: int
) -> None:
    provider, name = model
    usage = TokenUsage(
        input_tokens=uncached + read + write,
        cached_input_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
    )
    ours = Pricer().price(provider=provider, model=name, usage=usage)
    theirs = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=read,
            cache_write_tokens=write,
            output_tokens=output,
        ),
        model_ref=name,
        provider_id=provider,
    )
    assert ours is not None
    assert ours.total_usd == theirs.total_price
    assert ours.input_usd == theirs.input_price
    assert ours.output_usd == theirs.output_price


def test_override_file_toml(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."acme-70b"]\ninput = 0.15\noutput = 0.6\ncached_input = 0.075\n'
        "context_window = 131072\n"
    )
    rates = load_price_overrides(path)[(None, "acme-70b")]
    # 0.15 as a binary float is 0.1499999...; the loader must keep the decimal the user wrote.
    assert rates.input_mtok == Decimal("0.15")
    assert rates.cache_read_mtok == Decimal("0.075")
    assert rates.context_window == 131072
    pricer = Pricer.from_file(path)
    assert pricer.context_window(provider="any", model="acme-70b") == 131072


def test_override_file_yaml_with_provider(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  acme-70b:\n    provider: acme\n    input: 1\n    output: 2\n")
    assert (("acme", "acme-70b")) in load_price_overrides(path)


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('[models."m"]\ninput = -1\noutput = 1\n', ".toml", "models.m.input"),
        ('[models."m"]\ninput = 1\n', ".toml", "models.m.output"),
        ('[models."m"]\ninput = 1\noutput = 1\ncolour = "red"\n', ".toml", "colour"),
        ("models: [1, 2", ".yaml", "not valid yaml"),
        ("[models\n", ".toml", "not valid toml"),
    ],
    ids=["negative", "missing-output", "unknown-key", "bad-yaml", "bad-toml"],
)
def test_bad_override_file_says_where(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"prices{suffix}"
    path.write_text(text)
    with pytest.raises(PriceFileError, match=message):
        load_price_overrides(path)


def test_missing_override_file() -> None:
    with pytest.raises(PriceFileError, match="cannot read"):
        load_price_overrides("/nonexistent/prices.toml")
