"""Which provider serves an API base URL, by the price catalog's own URL patterns.

An OpenAI-compatible client pointed at Groq, Together or OpenRouter is an ``openai.OpenAI`` all
the same; its calls must be recorded (and priced) as that provider's, not OpenAI's. genai-prices
keeps a URL pattern per provider (``api_pattern``) and matches API URLs against it for
``calc_price(provider_api_url=...)``; this asks the same matcher, so a URL the catalog learns in
a new release is recognised without a change here.

>>> provider_for_url("https://api.groq.com/openai/v1/")
'groq'
>>> provider_for_url("http://127.0.0.1:8000/v1") is None
True
"""

from __future__ import annotations

import functools
import logging

from genai_prices import data_snapshot

log = logging.getLogger("aivitals")


@functools.lru_cache(maxsize=256)
def provider_for_url(url: str) -> str | None:
    """The catalog's id of the provider whose API ``url`` is; None for one it does not know
    (localhost, a self-hosted server, a company proxy). Never raises."""
    try:
        # The snapshot's find_provider is the matcher calc_price uses for provider_api_url.
        return data_snapshot.get_snapshot().find_provider(None, None, url).id
    except LookupError:
        return None
    except Exception:
        log.exception("aivitals: could not match %r against the catalog's provider URLs", url)
        return None
