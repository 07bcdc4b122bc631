"""`aivitals prices`: the rates a model is priced at, per kind of token."""

from __future__ import annotations

from decimal import Decimal

import genai_prices
from typer.testing import CliRunner

from aivitals.cli.app import app

MILLION = 1_000_000


def rows(output: str) -> dict[str, Decimal]:
    found = {}
    for line in output.splitlines():
        parts = [part.strip() for part in line.strip().strip("│").split("│")]
        if len(parts) == 2 and parts[1].replace(".", "").isdigit():
            found[parts[0]] = Decimal(parts[1])
    return found


def catalog(model: str, provider: str, **usage: int) -> genai_prices.types.PriceCalculation:
    return genai_prices.calc_price(
        genai_prices.Usage(**usage), model_ref=model, provider_id=provider
    )


def test_the_rates_include_1_hour_writes() -> None:
    result = CliRunner().invoke(app, ["prices", "claude-sonnet-4-5", "--provider", "anthropic"])
    assert result.exit_code == 0, result.output
    shown = rows(result.output)
    one_hour = catalog(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=MILLION,
        cache_write_tokens=MILLION,
        cache_write_1h_tokens=MILLION,
    )
    assert shown["1-hour cache write"] == one_hour.input_price
    assert shown["1-hour cache write"] > shown["cache write"]


def test_a_request_fee_is_not_shown_as_a_token_price() -> None:
    result = CliRunner().invoke(app, ["prices", "sonar", "--provider", "perplexity"])
    assert result.exit_code == 0, result.output
    shown = rows(result.output)
    assert shown["input"] == catalog("sonar", "perplexity", input_tokens=MILLION).input_price
    assert shown["output"] == catalog("sonar", "perplexity", output_tokens=MILLION).output_price
