"""`instrument(client)` for the official ``openai`` client: record every call it makes.

>>> import openai
>>> openai_provider(openai.OpenAI(api_key="gsk-test", base_url="https://api.groq.com/openai/v1"))
'groq'

Chat completions, legacy completions, embeddings and the Responses API (`aivitals.sdk.
openai_responses`) are wrapped, sync and async, streaming and not. The caller gets exactly the
object the client returns: for streams, the same ``Stream`` whose iterator aivitals watches on its
way through. To read token usage from a chat stream, aivitals asks for
``stream_options={"include_usage": True}`` when the caller did not set ``stream_options``, and
then removes the extra usage chunk so the caller sees the stream it asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aivitals.attribution import Attribution
from aivitals.content import CallContent
from aivitals.estimate import estimate_prompt_tokens
from aivitals.extract.chat import chat_content, chat_stream_content
from aivitals.model import Operation
from aivitals.provider_urls import provider_for_url
from aivitals.sdk.openai_responses import ResponsesApi
from aivitals.sdk.streams import StreamWatch
from aivitals.sdk.track import TrackedCall
from aivitals.sdk.wrapping import Api, Target, wrap_async, wrap_sync
from aivitals.usage import TokenUsage, usage_from_openai

log = logging.getLogger("aivitals.sdk")


def openai_provider(client: Any) -> str:
    """The provider an ``openai`` client's calls go to: Azure by its class, any other by the
    catalog's match of its base URL (Groq, Together, OpenRouter, ...), else ``openai``."""
    if "Azure" in type(client).__name__:
        return "azure"
    return provider_for_url(str(getattr(client, "base_url", ""))) or "openai"


def instrument_openai(client: Any, *, provider: str | None, defaults: Attribution) -> None:
    """Wrap an ``openai.OpenAI`` / ``AsyncOpenAI`` (or Azure) client's resources in place."""
    is_async = type(client).__name__.startswith("Async")
    target = Target(
        provider=provider or openai_provider(client),
        base_url=str(getattr(client, "base_url", "")) or None,
        defaults=defaults,
    )
    wrap = wrap_async if is_async else wrap_sync
    creators: list[tuple[Any, Api]] = [
        (client.chat.completions, ChatApi("chat")),
        (client.completions, ChatApi("text_completion")),
        (client.embeddings, ChatApi("embeddings")),
    ]
    responses = getattr(client, "responses", None)  # openai >= 1.66
    if responses is not None:
        # responses.stream(...) makes its request through responses.create, so wrapping create
        # records the helper's calls too (and only once).
        creators.append((responses, ResponsesApi()))
    for resource, api in creators:
        resource.create = wrap(resource.create, api, target)
    if responses is not None and hasattr(responses, "parse"):
        responses.parse = wrap(responses.parse, ResponsesApi(), target)


def read_service_tier(tracker: TrackedCall, source: Any) -> None:
    """The tier the provider says it served the call at (``service_tier``), when it says one."""
    tier = getattr(source, "service_tier", None)
    if isinstance(tier, str) and tier:
        tracker.service_tier = tier


class ChatApi(Api):
    """Chat Completions, legacy Completions and Embeddings: ``usage`` and ``choices``."""

    name = "an openai"

    def __init__(self, operation: Operation) -> None:
        self.operation = operation

    def prepare(self, kwargs: dict[str, Any]) -> bool:
        """Ask a stream for its usage; True when aivitals added the request (and must hide it)."""
        if self.is_stream(kwargs) and not isinstance(kwargs.get("stream_options"), Mapping):
            kwargs["stream_options"] = {"include_usage": True}
            return True
        return False

    def read(self, tracker: TrackedCall, response: Any) -> None:
        model = getattr(response, "model", None)
        if isinstance(model, str) and model:
            tracker.response_model = model
        usage = getattr(response, "usage", None)
        if usage is not None:
            tracker.set_tokens(usage_from_openai(usage))
        choices = getattr(response, "choices", None)
        if choices:
            tracker.finish_reason = getattr(choices[0], "finish_reason", None)
        read_service_tier(tracker, response)

    def content(
        self, request: Mapping[str, Any], response: Any, finish_reason: str | None
    ) -> CallContent | None:
        if self.operation == "embeddings":
            return None
        return chat_content(request, response, finish_reason=finish_reason)

    def watch(self, tracker: TrackedCall, kwargs: Mapping[str, Any], note: Any) -> StreamWatch:
        return ChatWatch(tracker, injected=note is True, kwargs=kwargs)


class ChatWatch(StreamWatch):
    """A chat or completion stream: usage arrives in the last chunk, when asked for."""

    def __init__(self, tracker: TrackedCall, *, injected: bool, kwargs: Mapping[str, Any]) -> None:
        super().__init__(tracker)
        self.injected = injected
        self.kwargs = kwargs
        self.content_chunks = 0
        self.saw_usage = False

    def observe(self, chunk: Any) -> bool:
        tracker = self.tracker
        tracker.mark_first_token()
        usage = getattr(chunk, "usage", None)
        choices = getattr(chunk, "choices", None)
        if usage is not None:
            self.saw_usage = True
            tracker.set_tokens(usage_from_openai(usage))
        if choices:
            self.content_chunks += 1
            reason = getattr(choices[0], "finish_reason", None)
            if reason:
                tracker.finish_reason = reason
        model = getattr(chunk, "model", None)
        if isinstance(model, str) and model:
            tracker.response_model = model
        if self.content_chunks <= 1:
            tracker.set_response_id(getattr(chunk, "id", None))
        read_service_tier(tracker, chunk)
        return not (self.injected and usage is not None and not choices)

    def content(self, events: list[Any]) -> CallContent | None:
        return chat_stream_content(self.request, events, finish_reason=self.tracker.finish_reason)

    def complete(self) -> None:
        if not self.saw_usage:
            # Usage never came (cut short, or the caller set stream_options without it): estimate,
            # and say so on the record.
            estimate = TokenUsage(
                input_tokens=estimate_prompt_tokens(
                    self.kwargs.get("messages"), self.kwargs.get("prompt")
                ),
                output_tokens=self.content_chunks,
            )
            self.tracker.set_tokens(estimate, estimated=True)
