"""A fake OpenAI-compatible upstream for tests, demos and benchmarks: ``aivitals mock-llm``; it
also answers Anthropic's Messages API (``/v1/messages``) and OpenAI's Responses API.

See docs/mock-llm.md for every option, header and injected error.

>>> with MockServer(MockConfig(time_scale=0)) as server:
...     server.base_url.startswith("http://127.0.0.1:"), server.stats()["total"]
(True, 0)
"""

from aivitals.mock_llm.app import MockStats, create_app
from aivitals.mock_llm.config import (
    DEFAULT_ERROR_TYPES,
    DEFAULT_MODELS,
    ERROR_KINDS,
    ErrorKind,
    MockConfig,
)
from aivitals.mock_llm.controls import HEADER_NAMES
from aivitals.mock_llm.runner import MockServer, serve

__all__ = [
    "DEFAULT_ERROR_TYPES",
    "DEFAULT_MODELS",
    "ERROR_KINDS",
    "HEADER_NAMES",
    "ErrorKind",
    "MockConfig",
    "MockServer",
    "MockStats",
    "create_app",
    "serve",
]
