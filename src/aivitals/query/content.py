"""A captured call's content (prompt and answer, redacted), read from the ``contents`` table.

Present only for calls recorded while content capture was on (docs/quality.md, "Content
capture") and younger than its retention; a row that cannot be decoded reads as absent.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa

from aivitals.content import ContentMessage, ToolCallContent
from aivitals.model import Call
from aivitals.query.filters import Filters, call_conditions
from aivitals.query.window import Window
from aivitals.store.rows import readable_call
from aivitals.store.schema import calls, contents, scores


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
    return None if row is None else _stored(row)


def _stored(row: Any) -> StoredContent | None:
    try:
        return StoredContent(
            messages=_messages(row.messages) if row.messages else (),
            output_text=row.output_text,
            tool_calls=_tool_calls(row.tool_calls) if row.tool_calls else (),
            redactions=int(row.redactions or 0),
        )
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError):
        return None


Cursor = tuple[int, str]
"""Where a listing stopped: the last call's start (epoch ms) and id."""


@dataclass(frozen=True, slots=True)
class ContentPage:
    """Calls with captured content, oldest first, and where to go on from.

    ``skipped_rows`` counts rows of the page whose call or content could not be read (written
    by an older version or another tool); ``after`` is None once the window is done.
    """

    items: list[tuple[Call, StoredContent]]
    skipped_rows: int
    after: Cursor | None


def has_contents(connection: sa.Connection) -> bool:
    """Whether the store has the ``contents`` table (schema 4 on)."""
    return sa.inspect(connection).has_table(contents.name)


def count_calls(connection: sa.Connection, window: Window, filters: Filters) -> tuple[int, int]:
    """How many of the window's calls match ``filters``, and how many of them have content."""
    where = (
        calls.c.started_ms >= window.start_ms,
        calls.c.started_ms < window.end_ms,
        *call_conditions(filters),
    )
    every = connection.scalar(sa.select(sa.func.count()).select_from(calls).where(*where))
    captured = connection.scalar(
        sa.select(sa.func.count())
        .select_from(calls.join(contents, contents.c.call_id == calls.c.id))
        .where(*where)
    )
    return int(every or 0), int(captured or 0)


def calls_with_content(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    *,
    limit: int,
    after: Cursor | None = None,
) -> ContentPage:
    """Up to ``limit`` of the window's calls that have captured content, oldest first (ties by
    id), each with its content; from just after ``after`` (a keyset, so a long walk costs an
    index seek a page, not an offset)."""
    query = (
        sa.select(calls, *[column.label(f"content_{column.name}") for column in contents.c])
        .join(contents, contents.c.call_id == calls.c.id)
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            *call_conditions(filters),
        )
        .order_by(calls.c.started_ms, calls.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.or_(
                calls.c.started_ms > after[0],
                sa.and_(calls.c.started_ms == after[0], calls.c.id > after[1]),
            )
        )
    rows = connection.execute(query).all()
    items = []
    names = [column.name for column in calls.c]
    for row in rows:
        mapping = row._mapping
        call = readable_call({name: mapping[name] for name in names})
        content = _stored(_ContentColumns(row))
        if call is not None and content is not None:
            items.append((call, content))
    last = (int(rows[-1].started_ms), str(rows[-1].id)) if len(rows) == limit else None
    return ContentPage(items, len(rows) - len(items), last)


class _ContentColumns:
    """A joined row's content columns under their own names, for `_stored`."""

    def __init__(self, row: Any) -> None:
        self.messages = row.content_messages
        self.output_text = row.content_output_text
        self.tool_calls = row.content_tool_calls
        self.redactions = row.content_redactions


def scored(
    connection: sa.Connection, call_ids: Collection[str], names: Collection[str]
) -> set[tuple[str, str]]:
    """The (call id, score name) pairs among these that the store has a score for, whatever
    its source."""
    if not call_ids or not names:
        return set()
    query = sa.select(scores.c.call_id, scores.c.name).where(
        scores.c.call_id.in_(list(call_ids)), scores.c.name.in_(list(names))
    )
    return {(str(row.call_id), str(row.name)) for row in connection.execute(query)}
