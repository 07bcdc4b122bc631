"""User price overrides: a TOML or YAML file of per-model prices in USD per million tokens.

```toml
[models."acme-llm-70b"]        # the model name as the application sends it
provider = "acme"              # optional: the override then applies to this provider only
input = 0.90                   # USD per million input tokens (uncached)
output = 0.90                  # USD per million output tokens (reasoning included)
cached_input = 0.45            # optional: cached reads; defaults to `input`
cache_write = 1.10             # optional: cache writes (5-minute ones); defaults to `input`
cache_write_1h = 1.80          # optional: 1-hour cache writes; defaults to `cache_write`
web_search_kcount = 10         # optional: USD per thousand web searches (server-side tool)
code_execution_kcount = 0      # optional: USD per thousand code executions
file_search_kcount = 2.5       # optional: USD per thousand file searches
request_fee_usd = 0.0001       # optional: USD per request, whatever its tokens
context_window = 131072        # optional: the model's context window, for utilisation
```

The same keys work in YAML under a top-level ``models:`` mapping. Overrides win over the catalog,
and price every service tier alike. They are applied by the same code as the catalog's prices
(`rates_price` turns them into a genai-prices `ModelPrice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from genai_prices.types import ModelPrice
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aivitals.config_files import read_config_file, validation_problems


class PriceFileError(ValueError):
    """The override file cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Rates:
    """Prices of one model in USD per million tokens."""

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    context_window: int | None = None
    cache_write_1h_mtok: Decimal | None = None
    web_search_kcount: Decimal | None = None
    code_execution_kcount: Decimal | None = None
    file_search_kcount: Decimal | None = None
    request_fee_usd: Decimal | None = None


def rates_price(rates: Rates) -> ModelPrice:
    """The genai-prices `ModelPrice` of an override: what the catalog's own entry would say.

    A rate left out is not a price of its own: those tokens are billed by their parent unit
    (1-hour writes as cache writes, cache writes and reads as input), as in the catalog.
    """
    write = rates.cache_write_mtok
    if rates.cache_write_1h_mtok is not None and write is None:
        # genai-prices prices a 1-hour write only below a cache-write price: 5-minute writes
        # then cost `input`, as documented.
        write = rates.input_mtok
    return ModelPrice(
        input_mtok=rates.input_mtok,
        output_mtok=rates.output_mtok,
        cache_read_mtok=rates.cache_read_mtok,
        cache_write_mtok=write,
        cache_write_1h_mtok=rates.cache_write_1h_mtok,
        web_searches_kcount=rates.web_search_kcount,
        code_executions_kcount=rates.code_execution_kcount,
        storage_searches_kcount=rates.file_search_kcount,
        requests_kcount=None if rates.request_fee_usd is None else rates.request_fee_usd * 1000,
    )


class _ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = None
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write: Decimal | None = Field(default=None, ge=0)
    cache_write_1h: Decimal | None = Field(default=None, ge=0)
    web_search_kcount: Decimal | None = Field(default=None, ge=0)
    code_execution_kcount: Decimal | None = Field(default=None, ge=0)
    file_search_kcount: Decimal | None = Field(default=None, ge=0)
    request_fee_usd: Decimal | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, gt=0)

    @field_validator(
        "input",
        "output",
        "cached_input",
        "cache_write",
        "cache_write_1h",
        "web_search_kcount",
        "code_execution_kcount",
        "file_search_kcount",
        "request_fee_usd",
        mode="before",
    )
    @classmethod
    def _exact(cls, value: Any) -> Any:
        # TOML and YAML hand us binary floats; go through str so 0.15 stays exactly 0.15.
        if isinstance(value, float):
            return Decimal(str(value))
        return value


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, _ModelPrice]


def load_price_overrides(path: str | Path) -> dict[tuple[str | None, str], Rates]:
    """Read an override file into ``{(provider or None, model): Rates}``.

    Raises `PriceFileError` naming the file and the bad key when the file cannot be used.
    """
    try:
        raw = read_config_file(path, what="price override file")
    except ValueError as exc:
        raise PriceFileError(str(exc)) from exc
    return parse_price_overrides(raw, origin=str(path))


def parse_price_overrides(
    raw: Any, *, origin: str = "price overrides"
) -> dict[tuple[str | None, str], Rates]:
    """Validate an already-parsed mapping (``{"models": {...}}``) into rates."""
    try:
        parsed = _PriceFile.model_validate(raw)
    except ValidationError as exc:
        raise PriceFileError(f"{origin}: {validation_problems(exc)}") from exc
    return {
        (entry.provider, name): Rates(
            input_mtok=entry.input,
            output_mtok=entry.output,
            cache_read_mtok=entry.cached_input,
            cache_write_mtok=entry.cache_write,
            context_window=entry.context_window,
            cache_write_1h_mtok=entry.cache_write_1h,
            web_search_kcount=entry.web_search_kcount,
            code_execution_kcount=entry.code_execution_kcount,
            file_search_kcount=entry.file_search_kcount,
            request_fee_usd=entry.request_fee_usd,
        )
        for name, entry in parsed.models.items()
    }
