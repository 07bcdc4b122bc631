"""Reading the user's TOML or YAML files (price overrides, the server config) with one error style.

Every problem becomes one line naming the file and what is wrong with it, so the CLI can print it
as it is.

>>> from pydantic import BaseModel
>>> class Port(BaseModel):
...     port: int
>>> try:
...     Port.model_validate({"port": "x"})
... except Exception as exc:
...     print(validation_problems(exc))  # doctest: +ELLIPSIS
port: Input should be a valid integer...
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def read_config_file(path: str | Path, *, what: str) -> Any:
    """The parsed contents of a ``.toml``, ``.yaml`` or ``.yml`` file (TOML for anything else).

    Raises `ValueError` with a one-line message naming the file (as ``what``) and the problem.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{file}: cannot read the {what} ({exc.strerror})") from exc
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text) or {}
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        kind = file.suffix.lstrip(".") or "TOML"
        detail = " ".join(str(exc).split())
        raise ValueError(f"{file}: not valid {kind}: {detail}") from exc


def validation_problems(exc: ValidationError | Exception) -> str:
    """Pydantic's errors as ``dotted.location: message; ...`` on one line."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
        for error in exc.errors()
    )
