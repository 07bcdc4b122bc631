"""`JudgeConfig`: which calls the LLM judge samples, where it sends them, and what it may spend.

The judge is off unless configured: ``aivitals.configure(judge=JudgeConfig(...))``, or the
``[judge]`` section of the serve config file (`aivitals.quality.judge_settings`). Every value is
checked on construction; a bad one raises `ConfigError` naming the field:

>>> JudgeConfig(base_url="http://127.0.0.1:8900/v1", model="gpt-4o-mini", sample_rate=2)
Traceback (most recent call last):
...
aivitals.config.ConfigError: judge.sample_rate: must be a probability in [0, 1], got 2

Sampling: the first of ``rules`` that matches a call gives its rate, ``sample_rate`` otherwise.
Only calls from the search feature, all of them:

>>> config = JudgeConfig(base_url="http://127.0.0.1:8900/v1", model="gpt-4o-mini",
...                      sample_rate=0.0, rules=(SampleRule(features=("search",), rate=1.0),))
>>> config.rate_for(model="gpt-4o", feature="search", prompt_version=None)
1.0
>>> config.rate_for(model="gpt-4o", feature="chat", prompt_version=None)
0.0
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from aivitals.config import ConfigError, check_timezone
from aivitals.retry import RetryPolicy

BUILTIN_CRITERIA = ("relevance", "hallucination")
"""The criteria the judge asks about unless told not to (``relevance=False``...)."""

JUDGE_FEATURE = "aivitals-judge"
"""The feature of the judge's own calls: recorded and priced like any call, never judged."""

_T = TypeVar("_T")
_CRITERION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeCriterion:
    """A criterion of your own: its ``name`` (the score is ``judge.<name>``) and what it means.

    The description goes to the judge model as written; say what 1 and 0 mean (1 is best).
    """

    name: str
    description: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _CRITERION_NAME.fullmatch(self.name):
            raise ConfigError(
                f"judge.criteria: name must be lower-case letters, digits and _ (at most 64, "
                f"starting with a letter), got {self.name!r}"
            )
        if self.name in BUILTIN_CRITERIA:
            raise ConfigError(
                f"judge.criteria: {self.name!r} is built in; turn it on or off with "
                f"{self.name}=True/False instead"
            )
        if not isinstance(self.description, str) or not self.description.strip():
            raise ConfigError(f"judge.criteria: {self.name!r} needs a description")


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleRule:
    """The sampling rate of the calls it matches: each list given must hold the call's value.

    An empty list matches any value; ``features=("search", "chat")`` matches either.
    """

    rate: float
    features: Sequence[str] = ()
    models: Sequence[str] = ()
    prompt_versions: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_probability("judge.rules.rate", self.rate)
        for name in ("features", "models", "prompt_versions"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
                raise ConfigError(
                    f"judge.rules.{name}: must be a list of non-empty names, got {values!r}"
                )
            object.__setattr__(self, name, tuple(values))

    def matches(self, *, model: str, feature: str | None, prompt_version: str | None) -> bool:
        """Whether a call with these fields falls under this rule."""
        return (
            (not self.features or feature in self.features)
            and (not self.models or model in self.models)
            and (not self.prompt_versions or prompt_version in self.prompt_versions)
        )


_DEFAULT_RETRY = RetryPolicy(first_s=1.0, max_s=30.0, max_attempts=3, jitter=0.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeConfig:
    """The LLM judge: an OpenAI-compatible endpoint, a rubric, sampling, a budget, bounds.

    ``base_url`` is the API's base (``https://api.openai.com/v1``; the judge POSTs to
    ``{base_url}/chat/completions``); the key is ``api_key`` or, better, the environment variable
    named by ``api_key_env`` (neither: no ``Authorization`` header, for local servers).
    ``provider`` says whose prices apply to the judge's calls. ``relevance`` and
    ``hallucination`` turn the built-in criteria on or off; ``criteria`` adds yours.

    ``max_daily_usd`` caps the judge's own spend per day (in ``timezone``, by default the
    runtime's, else UTC): once the day's priced judge calls reach it, calls are no longer judged
    (counted ``over_budget``) until the next day. ``max_concurrency`` bounds the requests in
    flight (one worker thread each), ``queue_size`` the calls waiting for them (a full queue
    drops and counts). Each request times out after ``timeout_s``; failures are retried by
    ``retry`` (429, 5xx, connection errors, timeouts), then counted ``failed``. ``headers`` go
    with every request (an OpenRouter ``HTTP-Referer``, say). ``max_tokens`` caps the verdict.
    ``redact`` masks personal data and secrets in what is sent (the detectors of ``pii_leak``);
    False sends the text as the call had it.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    provider: str = "openai"
    sample_rate: float = 0.1
    rules: Sequence[SampleRule] = ()
    relevance: bool = True
    hallucination: bool = True
    criteria: Sequence[JudgeCriterion] = ()
    max_daily_usd: Decimal | float | None = None
    timezone: str | None = None
    max_concurrency: int = 2
    queue_size: int = 1000
    timeout_s: float = 30.0
    retry: RetryPolicy = _DEFAULT_RETRY
    headers: Mapping[str, str] = field(default_factory=dict)
    max_tokens: int = 1024
    temperature: float = 0.0
    redact: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"judge.base_url: must be an http:// or https:// URL, got {self.base_url!r}"
            )
        for name in ("model", "provider"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"judge.{name}: must be a non-empty name, got {value!r}")
        _check_probability("judge.sample_rate", self.sample_rate)
        # Lists are welcome (TOML and YAML give lists); kept as tuples so the config is hashable.
        object.__setattr__(self, "rules", _tuple_of("judge.rules", self.rules, SampleRule))
        object.__setattr__(
            self, "criteria", _tuple_of("judge.criteria", self.criteria, JudgeCriterion)
        )
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ConfigError(f"judge.criteria: each name must be unique, got {names}")
        if not self.criterion_names:
            raise ConfigError("judge: no criterion left to judge (relevance, hallucination off)")
        if self.max_daily_usd is not None:
            cap = self.max_daily_usd
            if (
                isinstance(cap, bool)
                or not isinstance(cap, Decimal | float | int)
                or not math.isfinite(cap)
                or cap <= 0
            ):
                raise ConfigError(
                    f"judge.max_daily_usd: must be a number of dollars above 0, got {cap!r}"
                )
        if self.timezone is not None:
            check_timezone(self.timezone, setting="judge.timezone")
        for name in ("max_concurrency", "queue_size", "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"judge.{name}: must be a whole number >= 1, got {value!r}")
        for name, top in (("timeout_s", 3600.0), ("temperature", 2.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= top
            ):
                raise ConfigError(
                    f"judge.{name}: must be a number from 0 to {top:g}, got {value!r}"
                )
        if self.timeout_s == 0:
            raise ConfigError("judge.timeout_s: must be above 0")
        if not isinstance(self.redact, bool):
            raise ConfigError(f"judge.redact: must be true or false, got {self.redact!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError("judge.retry: must be an aivitals.retry.RetryPolicy")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise ConfigError("judge.headers: names and values must be text")

    @property
    def criterion_names(self) -> tuple[str, ...]:
        """Every criterion asked about, built-in first: each becomes a ``judge.<name>`` score."""
        builtin = tuple(name for name in BUILTIN_CRITERIA if getattr(self, name))
        return (*builtin, *(c.name for c in self.criteria))

    @property
    def daily_cap_usd(self) -> Decimal | None:
        """``max_daily_usd`` as `Decimal` (money is never a float inside)."""
        cap = self.max_daily_usd
        return None if cap is None else Decimal(str(cap))

    def rate_for(self, *, model: str, feature: str | None, prompt_version: str | None) -> float:
        """The sampling rate of a call with these fields: the first matching rule's, or
        ``sample_rate``."""
        for rule in self.rules:
            if rule.matches(model=model, feature=feature, prompt_version=prompt_version):
                return rule.rate
        return self.sample_rate

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key to send: ``api_key``, else the variable ``api_key_env`` names (which must be
        set), else None."""
        if self.api_key:
            return self.api_key
        if self.api_key_env is None:
            return None
        env = os.environ if environ is None else environ
        key = env.get(self.api_key_env) or None
        if key is None:
            raise ConfigError(
                f"judge.api_key_env: environment variable {self.api_key_env} is not set"
            )
        return key


def _tuple_of(name: str, values: object, kind: type[_T]) -> tuple[_T, ...]:
    if isinstance(values, list | tuple) and all(isinstance(v, kind) for v in values):
        return tuple(values)
    raise ConfigError(f"{name}: must be a list of {kind.__name__}, got {values!r}")


def _check_probability(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise ConfigError(f"{name}: must be a probability in [0, 1], got {value!r}")
