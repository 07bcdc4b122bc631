"""The ``[quality]`` section of the serve/gateway config file: which evaluators run.

```toml
[quality]
evaluators = ["empty", "truncated", "refusal"]   # or true (the default: all), or false (none)
```

A name that is no evaluator fails the file at start-up, naming ``quality.evaluators``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from aivitals.config import ConfigError
from aivitals.quality.evaluators.consumer import check_names


class QualitySettings(BaseModel):
    """``[quality]``: ``evaluators`` is true (all), false (none) or the names to run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluators: bool | list[str] = True

    @field_validator("evaluators")
    @classmethod
    def _known(cls, value: bool | list[str]) -> bool | list[str]:
        try:
            check_names(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("evaluators: ")) from None
        return value
