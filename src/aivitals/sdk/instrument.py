"""`instrument(client)`: record every call an official ``openai`` or ``anthropic`` client makes.

>>> import openai, aivitals
>>> client = aivitals.instrument(openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1"))
>>> aivitals.instrument(client) is client
True

The client is wrapped in place (its resource objects, never its class) and returned; the caller
gets from it exactly the objects it returns. Which wrapper applies is read from the client's
class: the ``anthropic`` package is only ever imported by the application.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TypeVar

from aivitals.attribution import Attribution
from aivitals.sdk.anthropic_client import instrument_anthropic, is_anthropic_client
from aivitals.sdk.openai_client import instrument_openai

log = logging.getLogger("aivitals.sdk")

C = TypeVar("C")
_MARK = "_aivitals_instrumented"


def instrument(
    client: C,
    *,
    provider: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    environment: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> C:
    """Wrap an ``openai.OpenAI`` / ``AsyncOpenAI`` (or Azure), or an ``anthropic.Anthropic`` /
    ``AsyncAnthropic`` client in place and return it. Never raises: a client it cannot wrap is
    returned as it is, and a warning says why.

    ``provider`` defaults to the provider whose API the client's base URL is, as the price
    catalog knows them (``https://api.groq.com/openai/v1`` is ``groq``); otherwise ``azure`` for
    Azure clients, ``anthropic`` for Anthropic's, ``openai`` for any other (a local or unknown
    OpenAI-compatible server). Attribution comes from, in rising order: these arguments,
    `aivitals.context` / `track` / `observe` around the call, the request's user (``user`` for
    OpenAI, ``metadata.user_id`` for Anthropic), and ``X-Aivitals-*`` entries in
    ``extra_headers`` (the same headers the aivitals gateway reads).
    """
    if getattr(client, _MARK, False):
        return client
    defaults = Attribution().merged(feature=feature, team=team, environment=environment, tags=tags)
    try:
        if is_anthropic_client(client):
            instrument_anthropic(client, provider=provider, defaults=defaults)
        else:
            instrument_openai(client, provider=provider, defaults=defaults)
        setattr(client, _MARK, True)
    except Exception:
        log.exception("aivitals: could not instrument %s; its calls are not recorded", type(client))
    return client
