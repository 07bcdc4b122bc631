"""Where the gateway sends a request: upstreams and the models each serves.

>>> upstreams = Upstreams([Upstream(name="mock", base_url="http://127.0.0.1:8900/v1", models=("gpt-4o",))])
>>> upstreams.route("gpt-4o").name, upstreams.route("claude-x") is None
('mock', True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from aivitals.config import ConfigError


@dataclass(frozen=True, slots=True)
class Upstream:
    """An OpenAI-compatible server the gateway forwards to.

    ``models`` empty means "any model"; ``api_key_env`` names the environment variable that holds
    its key (never the key itself, so configs can be committed). Without a key, the client's own
    ``Authorization`` header is passed through.
    """

    name: str
    base_url: str
    models: tuple[str, ...] = ()
    api_key_env: str | None = None
    provider: str = "openai"
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"upstream {self.name!r}: base_url must start with http:// or https://"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"upstream {self.name!r}: timeout_s must be above 0")

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

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


class Upstreams:
    """The configured upstreams, in order: the first that serves a model gets its requests."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        if not upstreams:
            raise ConfigError("the gateway needs at least one upstream (--upstream URL)")
        self.all = tuple(upstreams)

    def route(self, model: str) -> Upstream | None:
        for upstream in self.all:
            if not upstream.models or model in upstream.models:
                return upstream
        return None

    def models(self) -> list[str]:
        return sorted({model for upstream in self.all for model in upstream.models})
