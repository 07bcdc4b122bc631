"""A captured call's content (prompt and answer, redacted), read from the ``contents`` table.

Present only for calls recorded while content capture was on (docs/quality.md, "Content
capture") and younger than its retention; a row that cannot be decoded reads as absent.
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from aivitals.content import ContentMessage, ToolCallContent
from aivitals.store.schema import contents


class StoredContent(msgspec.Struct, frozen=True, kw_only=True):
    """What was captured of one call: its prompt's messages, its answer and tool calls, and
    how many spans redaction masked in them."""

    messages: tuple[ContentMessage, ...] = ()
    output_text: str | None = None
    tool_calls: tuple[ToolCallContent, ...] = ()
    redactions: int = 0


_messages = msgspec.json.Decoder(tuple[ContentMessage, ...]).decode
_tool_calls = msgspec.json.Decoder(tuple[ToolCallContent, ...]).decode


def content_of(connection: sa.Connection, call_id: str) -> StoredContent | None:
    """The captured content of call ``call_id``; None when none is stored (or it is unreadable)."""
    row = connection.execute(sa.select(contents).where(contents.c.call_id == call_id)).first()
    if row is None:
        return None
    try:
        return StoredContent(
            messages=_messages(row.messages) if row.messages else (),
            output_text=row.output_text,
            tool_calls=_tool_calls(row.tool_calls) if row.tool_calls else (),
            redactions=int(row.redactions or 0),
        )
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError):
        return None
