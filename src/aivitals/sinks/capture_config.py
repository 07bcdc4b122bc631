"""`CaptureConfig`: whether content capture is on, its retention and the user's patterns to mask
(`aivitals.sinks.capture`). Light on purpose: `aivitals.runtime` names it without importing the
store.

>>> CaptureConfig(enabled=True, redact_patterns=("[",))
Traceback (most recent call last):
...
aivitals.config.ConfigError: capture.redact_patterns[0]: '[' is not a regular expression (unterminated character set at position 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aivitals.config import ConfigError


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """Whether content is captured, for how long it is kept, and the user's extra patterns to
    mask (regular expressions, Python's syntax). A bad value raises `ConfigError` naming it."""

    enabled: bool = False
    retention_days: float = 7.0
    redact_patterns: tuple[str, ...] = ()
    compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.retention_days > 0:
            raise ConfigError(f"capture.retention_days must be above 0, got {self.retention_days}")
        compiled = []
        for index, pattern in enumerate(self.redact_patterns):
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ConfigError(
                    f"capture.redact_patterns[{index}]: {pattern!r} is not a regular "
                    f"expression ({exc})"
                ) from None
        object.__setattr__(self, "compiled", tuple(compiled))


class CaptureSettings(BaseModel):
    """The config file's ``[capture]`` section (`aivitals serve --config`)::

    [capture]
    enabled = true
    retention_days = 7
    redact_patterns = ["EMP-\\\\d{4}"]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    retention_days: float = Field(default=7.0, gt=0)
    redact_patterns: list[str] = []

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"[{index}] {pattern!r} is not a regular expression ({exc})"
                ) from None
        return value

    def build(self) -> CaptureConfig:
        return CaptureConfig(
            enabled=self.enabled,
            retention_days=self.retention_days,
            redact_patterns=tuple(self.redact_patterns),
        )
