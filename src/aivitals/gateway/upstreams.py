"""Where the gateway sends a request: upstreams and the models each serves.

>>> upstreams = Upstreams([Upstream(name="mock", base_url="http://127.0.0.1:8900/v1", models=("gpt-4o",))])
>>> upstreams.route("gpt-4o").name, upstreams.route("claude-x") is None
('mock', True)

An upstream speaks OpenAI's API (``api="openai"``: its key as ``Authorization: Bearer``) or
Anthropic's (``api="anthropic"``: its key in ``x-api-key``); `Upstreams.route` with ``api``
prefers an upstream of that kind for a model, so ``/v1/messages`` goes to Anthropic when both
could serve it:

>>> both = Upstreams([Upstream(name="any", base_url="http://a/v1"),
...                   Upstream(name="claude", base_url="http://b/v1", api="anthropic", provider="anthropic")])
>>> both.route("claude-sonnet-4-6").name, both.route("claude-sonnet-4-6", api="anthropic").name
('any', 'claude')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from aivitals.config import ConfigError
from aivitals.gateway.quantization import quantization_label

Api = Literal["openai", "anthropic"]
"""The wire an upstream speaks, which decides how its key is sent."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """A server the gateway forwards to: OpenAI-compatible, or Anthropic's API (``api``).

    ``models`` empty means "any model"; ``api_key_env`` names the environment variable that holds
    its key (never the key itself, so configs can be committed). Without a key, the client's own
    ``Authorization`` (or, to an Anthropic upstream, ``x-api-key``) is passed through.

    For a self-hosted server: ``quantization`` names the quantisation it serves (``q4_k_m``,
    ``fp8``...; see `aivitals.gateway.quantization`), and ``gpu_hour_usd`` what an hour of its
    hardware costs, which the gateway shares among its calls by busy time (`gpu_time`).
    """

    name: str
    base_url: str
    models: tuple[str, ...] = ()
    api_key_env: str | None = None
    provider: str = "openai"
    timeout_s: float = 600.0
    api: Api = "openai"
    quantization: str | None = None
    gpu_hour_usd: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"upstream {self.name!r}: base_url must start with http:// or https://"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"upstream {self.name!r}: timeout_s must be above 0")
        if self.quantization is not None:
            try:
                label = quantization_label(self.quantization, source="quantization")
            except ValueError as exc:
                raise ConfigError(f"upstream {self.name!r}: {exc}") from None
            object.__setattr__(self, "quantization", label)  # frozen: set once, normalised
        if self.gpu_hour_usd is not None and not (
            self.gpu_hour_usd.is_finite() and self.gpu_hour_usd > 0
        ):
            raise ConfigError(f"upstream {self.name!r}: gpu_hour_usd must be above 0")

    @property
    def api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"upstream {self.name!r}: environment variable {self.api_key_env} is not set"
            )
        return key

    def key_headers(self, key: str) -> dict[str, str]:
        """The headers that carry ``key`` to this upstream."""
        if self.api == "anthropic":
            return {"x-api-key": key}
        return {"authorization": f"Bearer {key}"}

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


class Upstreams:
    """The configured upstreams, in order: the first that serves a model gets its requests."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        if not upstreams:
            raise ConfigError("the gateway needs at least one upstream (--upstream URL)")
        self.all = tuple(upstreams)

    def route(self, model: str, *, api: Api | None = None) -> Upstream | None:
        """The first upstream serving ``model``; with ``api``, the first of that kind if one
        serves it (an OpenAI-compatible server may speak another API's route too)."""
        if api is not None:
            for upstream in self.all:
                if upstream.api == api and (not upstream.models or model in upstream.models):
                    return upstream
        for upstream in self.all:
            if not upstream.models or model in upstream.models:
                return upstream
        return None

    def models(self) -> list[str]:
        return sorted({model for upstream in self.all for model in upstream.models})
