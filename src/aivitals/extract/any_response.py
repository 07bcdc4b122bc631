"""A response object of unknown kind (what `track`'s ``set_response`` is handed): read by its
shape, as a chat completion (``choices``), an Anthropic message (``stop_reason``) or a Responses
API response (``output``).

>>> content_of_response({"choices": [{"message": {"content": "Hi"}}]}, "stop").output_text
'Hi'
>>> content_of_response(object(), None) is None
True
"""

from __future__ import annotations

from aivitals.content import CallContent
from aivitals.extract.chat import chat_content
from aivitals.extract.fields import field
from aivitals.extract.messages import messages_content
from aivitals.extract.responses import responses_content


def content_of_response(response: object, finish_reason: str | None) -> CallContent | None:
    """The answer's content (no prompt: the response does not carry it); None if unknown."""
    if field(response, "choices") is not None:
        return chat_content({}, response, finish_reason=finish_reason)
    if field(response, "stop_reason") is not None or field(response, "type") == "message":
        return messages_content({}, response, finish_reason=finish_reason)
    if field(response, "output") is not None:
        return responses_content({}, response, finish_reason=finish_reason)
    return None
