"""JSON out: msgspec, with money as plain JSON numbers.

Money is `Decimal` inside aivitals; the API writes it as a JSON number with the exact decimal
digits (``0.00021``, never ``2.1e-4`` rounded through a float). Clients that parse numbers as
floats get the nearest float, which is fine for display; a client that needs the exact figure
reads the number's text. Dataclasses and msgspec structs encode as objects, datetimes as ISO 8601.

>>> JsonResponse({"cost_usd": Decimal("0.00021")}).body
b'{"cost_usd":0.00021}'
"""

from __future__ import annotations

from decimal import Decimal  # noqa: F401  # used by the doctest
from typing import Any

import msgspec
from starlette.responses import Response

_encoder = msgspec.json.Encoder(decimal_format="number")


class JsonResponse(Response):
    """A JSON response encoded by msgspec; see the module docstring for how money is written."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)
