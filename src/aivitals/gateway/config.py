"""The gateway's config file (TOML or YAML): upstreams, keys, rate limits, budgets, the cache.

```toml
timezone = "Europe/Paris"          # where budget days and months start (default UTC)

[[upstreams]]
name = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"     # the variable holding the key, never the key itself
models = ["gpt-4o", "gpt-4o-mini"] # omit: any model
timeout_s = 120

[[upstreams]]
name = "anthropic"
api = "anthropic"                  # Anthropic's API: its key in x-api-key; /v1/messages goes here
base_url = "https://api.anthropic.com/v1"
api_key_env = "ANTHROPIC_API_KEY"  # provider defaults to "anthropic" with api = "anthropic"
models = ["claude-sonnet-4-6"]

[[upstreams]]
name = "local"                     # a self-hosted server (vLLM, llama.cpp, Ollama...)
base_url = "http://127.0.0.1:8000/v1"
quantization = "q4_K_M"            # recorded on its calls (a header or the model name otherwise)
gpu_hour_usd = 2.50                # its calls share this by busy time

[[keys]]                           # none: no gateway keys, the client's own key passes through
name = "search-prod"
secret_env = "AIVITALS_KEY_SEARCH" # or secret = "..." (at least 16 characters)
team = "search"
requests_per_minute = 600
tokens_per_minute = 200000
allow_user_header = false          # true: the key may name its calls' user (X-Aivitals-User)

[limits.per_user]                  # every user
requests_per_minute = 60
[limits.teams.search]              # one team, all its keys together
tokens_per_minute = 500000

[[budgets]]
team = "search"                    # one team (or user = "...", feature = "...")
per = "day"                        # or "month"
usd = 50
[[budgets]]
each = "user"                      # every user gets this budget
per = "day"
usd = 5

[cache]
routes = ["embeddings"]            # cached without asking (chat, completions, embeddings,
                                   # messages, responses); others opt in per request
ttl_s = 3600
max_mb = 64

[redis]                            # shared by every process and replica (docs/shared-state.md)
url = "redis://127.0.0.1:6379/0"   # or serve --redis URL
limits_on_failure = "open"         # Redis down: "open" lets requests through, "closed": 503
semantic = true                    # also by meaning (pip install 'aivitals[semantic]')
semantic_threshold = 0.90          # cosine similarity of the last user question, 0 to 1
scope = "team"                     # whose answers a question may get: key, user, team, global
semantic_routes = ["chat"]         # chat, messages, responses: cached without asking
semantic_models = []               # omit: every model
semantic_max_entries = 10000

[[guardrails]]                     # see aivitals.gateway.guardrail_settings and docs/gateway.md
name = "cards"
on = "input"                       # or "output"
detectors = ["card", "iban"]       # email, phone, card, iban, secret; or patterns, deny,
action = "redact"                  # prompt_injection, json_schema (output); redact, block, flag
```

`load_gateway_config` refuses a file with a mistake in one line naming the file, the key and the
reason (`ConfigError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aivitals.config import ConfigError, check_timezone
from aivitals.config_files import read_config_file, validation_problems
from aivitals.gateway.budgets import Budget, BudgetLedger
from aivitals.gateway.cache import ResponseCache
from aivitals.gateway.embedding import WordLlamaEmbedder
from aivitals.gateway.guardrail_settings import GuardrailSettings
from aivitals.gateway.guardrails import Guardrails, build_guardrails
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.limits import LimitPolicy
from aivitals.gateway.semantic_cache import DEFAULT_THRESHOLD, SemanticCache
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.model import utc_now
from aivitals.quality.judge_settings import JudgeSettings
from aivitals.quality.settings import QualitySettings
from aivitals.sinks.capture_config import CaptureSettings

_ROUTES: dict[str, str] = {
    "chat": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "messages": "messages",
    "responses": "responses",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamSettings(_Strict):
    name: str = Field(min_length=1)
    base_url: str
    api_key_env: str | None = None
    models: list[str] = []
    api: Literal["openai", "anthropic"] = "openai"
    provider: str | None = None
    """Whose prices apply; by default ``anthropic`` for Anthropic's API, else ``openai``."""
    timeout_s: float = Field(default=600.0, gt=0)
    quantization: str | None = None
    """Checked and normalised by `Upstream` (`aivitals.gateway.quantization`)."""
    gpu_hour_usd: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)


class KeySettings(_Strict):
    name: str = Field(min_length=1)
    secret: str | None = Field(default=None, min_length=16, repr=False)
    secret_env: str | None = None
    team: str | None = None
    user: str | None = None
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    allow_user_header: bool = False

    @model_validator(mode="after")
    def _one_secret(self) -> KeySettings:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_env (preferred) or secret")
        return self


class LimitSettings(_Strict):
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)

    @property
    def pair(self) -> tuple[int | None, int | None]:
        return (self.requests_per_minute, self.tokens_per_minute)


class LimitsSettings(_Strict):
    per_user: LimitSettings | None = None
    teams: dict[str, LimitSettings] = {}


class BudgetSettings(_Strict):
    user: str | None = None
    team: str | None = None
    feature: str | None = None
    each: Literal["user", "team", "feature"] | None = None
    per: Literal["day", "month"]
    usd: Decimal = Field(gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> BudgetSettings:
        given = [name for name in ("user", "team", "feature", "each") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "name exactly one of user, team, feature (one of them) or each (every one)"
            )
        return self

    def budget(self) -> Budget:
        if self.each is not None:
            return Budget(scope=self.each, period=self.per, usd=self.usd)
        scope: Literal["user", "team", "feature"] = (
            "user" if self.user else "team" if self.team else "feature"
        )
        return Budget(scope=scope, period=self.per, usd=self.usd, value=getattr(self, scope))


class CacheSettings(_Strict):
    routes: list[Literal["chat", "completions", "embeddings", "messages", "responses"]] = []
    ttl_s: float = Field(default=3600.0, gt=0)
    max_mb: float = Field(default=64.0, gt=0)
    semantic: bool = False
    """The semantic level (`aivitals.gateway.semantic_cache`), asked when the exact one misses."""
    semantic_threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0, le=1)
    scope: Literal["key", "user", "team", "global"] = "team"
    semantic_routes: list[Literal["chat", "messages", "responses"]] = ["chat"]
    semantic_models: list[str] = []
    semantic_max_entries: int = Field(default=10_000, gt=0)


class RedisSettings(_Strict):
    """``[redis]``: shared limits, budgets and cache across processes (docs/shared-state.md)."""

    url: str | None = None
    """``redis://host:port/db``; ``serve --redis URL`` gives or overrides it."""
    key_prefix: str = Field(default="aivitals:", min_length=1)
    limits_on_failure: Literal["open", "closed"] = "open"
    """Redis down: let requests through unchecked (open) or answer 503 (closed)."""
    connect_timeout_ms: float = Field(default=100.0, gt=0)
    socket_timeout_ms: float = Field(default=100.0, gt=0)
    retry_s: float = Field(default=0.5, gt=0)
    """How often a process whose Redis is down pings it."""
    hold_ttl_s: float = Field(default=30.0, ge=3)
    """A budget hold's lease, renewed while its call runs: what a crashed process leaks."""


class GatewayConfig(_Strict):
    """The parsed config file. Build the parts with the methods below."""

    timezone: str = "UTC"
    upstreams: list[UpstreamSettings] = []
    keys: list[KeySettings] = []
    limits: LimitsSettings = LimitsSettings()
    budgets: list[BudgetSettings] = []
    cache: CacheSettings | None = None
    guardrails: list[GuardrailSettings] = []
    """What is checked in requests and answers (`aivitals.gateway.guardrails`); none: nothing."""
    judge: JudgeSettings | None = None
    """The LLM judge (`aivitals.quality.judge_settings`); none: no judging."""
    quality: QualitySettings = QualitySettings()
    """Which evaluators run (`aivitals.quality.settings`); all by default."""
    capture: CaptureSettings = CaptureSettings()
    """Content capture (`aivitals.sinks.capture_config`); off by default."""
    redis: RedisSettings | None = None
    """Shared state in Redis (`aivitals.shared`); none: limits, budgets and cache in memory."""

    def build_upstreams(self, extra: list[Upstream] | None = None) -> Upstreams:
        found = [
            Upstream(
                name=u.name,
                base_url=u.base_url,
                models=tuple(u.models),
                api_key_env=u.api_key_env,
                provider=u.provider or ("anthropic" if u.api == "anthropic" else "openai"),
                timeout_s=u.timeout_s,
                api=u.api,
                quantization=u.quantization,
                gpu_hour_usd=u.gpu_hour_usd,
            )
            for u in self.upstreams
        ]
        return Upstreams([*found, *(extra or [])])

    def build_keys(self, environ: dict[str, str] | None = None) -> KeyRing:
        env = os.environ if environ is None else environ
        keys = []
        for k in self.keys:
            secret = k.secret
            if k.secret_env is not None:
                secret = env.get(k.secret_env) or None
                if secret is None:
                    raise ConfigError(
                        f"gateway key {k.name!r}: environment variable {k.secret_env} is not set"
                    )
            assert secret is not None
            keys.append(
                GatewayKey(
                    name=k.name,
                    secret=secret,
                    team=k.team,
                    user=k.user,
                    requests_per_minute=k.requests_per_minute,
                    tokens_per_minute=k.tokens_per_minute,
                    allow_user_header=k.allow_user_header,
                )
            )
        return KeyRing(keys)

    def build_policy(self) -> LimitPolicy:
        per_user = self.limits.per_user.pair if self.limits.per_user else None
        teams = {team: limit.pair for team, limit in self.limits.teams.items()}
        return LimitPolicy(per_user=per_user, per_team=teams or None)

    def build_budgets(self, *, clock: Callable[[], datetime] = utc_now) -> BudgetLedger:
        return BudgetLedger([b.budget() for b in self.budgets], timezone=self.timezone, clock=clock)

    def build_cache(self) -> tuple[ResponseCache | None, frozenset[str]]:
        if self.cache is None:
            return None, frozenset()
        cache = ResponseCache(ttl_s=self.cache.ttl_s, max_bytes=int(self.cache.max_mb * 1024**2))
        # The semantic level's answers live in the exact cache: its routes are cached too.
        semantic = self.cache.semantic_routes if self.cache.semantic else []
        return cache, frozenset(_ROUTES[route] for route in [*self.cache.routes, *semantic])

    def build_semantic_cache(self) -> SemanticCache | None:
        """The semantic level, or None; `ConfigError` naming the extra if wordllama is missing."""
        if self.cache is None or not self.cache.semantic:
            return None
        return SemanticCache(
            embedder=WordLlamaEmbedder(),
            threshold=self.cache.semantic_threshold,
            scope=self.cache.scope,
            routes=self.cache.semantic_routes,
            models=self.cache.semantic_models,
            max_entries=self.cache.semantic_max_entries,
            ttl_s=self.cache.ttl_s,
        )

    def build_guardrails(self) -> Guardrails | None:
        return build_guardrails(self.guardrails)


def parse_gateway_config(raw: Any, *, origin: str = "gateway config") -> GatewayConfig:
    """Validate an already-parsed mapping."""
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {validation_problems(exc)}") from None
    try:
        check_timezone(config.timezone, setting="timezone")
        if config.upstreams:
            config.build_upstreams()  # checks each base_url
        if config.judge is not None:
            config.judge.build()  # checks what pydantic cannot (names, the time zone)
        names = [k.name for k in config.keys]
        if len(set(names)) != len(names):
            raise ConfigError("keys: each name must be unique")
        guardrails = [g.name for g in config.guardrails]
        if len(set(guardrails)) != len(guardrails):
            raise ConfigError("guardrails: each name must be unique")
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    return config


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate the config file at ``path``."""
    try:
        raw = read_config_file(path, what="config file")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return parse_gateway_config(raw, origin=str(path))
