"""The ``[judge]`` section of the serve config file, read into a `JudgeConfig`.

```toml
[judge]
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"   # the variable holding the key, never the key itself
model = "gpt-4o-mini"
sample_rate = 0.05               # calls no rule matches
max_daily_usd = 5
max_concurrency = 2
timeout_s = 30

[[judge.rules]]                  # the first rule that matches a call gives its rate
features = ["search"]
rate = 0.5

[[judge.criteria]]               # yours, besides relevance and hallucination
name = "politeness"
description = "Is the answer courteous? 1: warm and respectful; 0: rude."
```

A mistake fails the whole file at start-up, in one line naming ``judge.<field>``.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from aivitals.quality.judge_config import JudgeConfig, JudgeCriterion, SampleRule
from aivitals.retry import RetryPolicy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleRuleSettings(_Strict):
    rate: float = Field(ge=0, le=1)
    features: list[str] = []
    models: list[str] = []
    prompt_versions: list[str] = []


class CriterionSettings(_Strict):
    name: str
    description: str


class JudgeSettings(_Strict):
    """``[judge]``: see `JudgeConfig` for each field."""

    base_url: str
    model: str
    api_key_env: str | None = None
    provider: str = "openai"
    sample_rate: float = Field(default=0.1, ge=0, le=1)
    rules: list[SampleRuleSettings] = []
    relevance: bool = True
    hallucination: bool = True
    criteria: list[CriterionSettings] = []
    max_daily_usd: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    timezone: str | None = None
    """Where the budget's day starts; by default the file's ``timezone``."""
    max_concurrency: int = Field(default=2, ge=1)
    queue_size: int = Field(default=1000, ge=1)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_attempts: int = Field(default=3, ge=1)
    """Tries per call, the first included; back-off from 1 s, doubling to 30 s."""
    headers: dict[str, str] = {}
    max_tokens: int = Field(default=1024, ge=1)
    redact: bool = True

    def build(self) -> JudgeConfig:
        """The `JudgeConfig` (raises `ConfigError` naming ``judge.<field>``)."""
        return JudgeConfig(
            base_url=self.base_url,
            model=self.model,
            api_key_env=self.api_key_env,
            provider=self.provider,
            sample_rate=self.sample_rate,
            rules=tuple(
                SampleRule(
                    rate=rule.rate,
                    features=tuple(rule.features),
                    models=tuple(rule.models),
                    prompt_versions=tuple(rule.prompt_versions),
                )
                for rule in self.rules
            ),
            relevance=self.relevance,
            hallucination=self.hallucination,
            criteria=tuple(
                JudgeCriterion(name=c.name, description=c.description) for c in self.criteria
            ),
            max_daily_usd=self.max_daily_usd,
            timezone=self.timezone,
            max_concurrency=self.max_concurrency,
            queue_size=self.queue_size,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(first_s=1.0, max_s=30.0, max_attempts=self.max_attempts, jitter=0.2),
            headers=dict(self.headers),
            max_tokens=self.max_tokens,
            redact=self.redact,
        )
