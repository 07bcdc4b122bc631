"""The ``contents`` table: captured prompts and answers, written and expired (reads: `aivitals.
query.content`).

Only content capture writes here (`aivitals.sinks.capture`), after redaction, and only when
the user turned it on; a row is the call's id, its start (for retention), the prompt's messages
and the tool calls as JSON, the answer's text and how many spans redaction masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy
from sqlalchemy.dialects import postgresql, sqlite

from aivitals.content import ContentMessage, ToolCallContent
from aivitals.store import schema
from aivitals.store.engine import WRITE_OPTION, store_error
from aivitals.store.rows import epoch_ms
from aivitals.store.sql import SqlStore

_DELETE_CHUNK = 1000
_encode = msgspec.json.Encoder().encode


class ContentRow(msgspec.Struct, frozen=True, kw_only=True):
    """One captured call's content, as stored (already redacted)."""

    call_id: str
    started_at: datetime
    messages: tuple[ContentMessage, ...] = ()
    output_text: str | None = None
    tool_calls: tuple[ToolCallContent, ...] = ()
    redactions: int = 0


def content_values(row: ContentRow) -> dict[str, Any]:
    """The table's columns for ``row``."""
    return {
        "call_id": row.call_id,
        "started_ms": epoch_ms(row.started_at),
        "messages": _encode(row.messages).decode(),
        "output_text": row.output_text,
        "tool_calls": _encode(row.tool_calls).decode(),
        "redactions": row.redactions,
    }


def write_contents(store: SqlStore, rows: Sequence[ContentRow]) -> None:
    """Insert ``rows``; a call's content stored already stays as it was (a retry, a replay).

    Raises `StoreError` when the database refuses.
    """
    if not rows:
        return
    dialect = store.engine.dialect.name
    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(schema.contents)
    try:
        with store.engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
            connection.execute(
                insert.on_conflict_do_nothing(), [content_values(row) for row in rows]
            )
    except Exception as exc:
        raise store_error(exc, doing="writing captured content to", where=store.name) from exc


def delete_contents_before(store: SqlStore, cutoff: datetime) -> int:
    """Delete the content of calls started before ``cutoff``, in short transactions of
    `_DELETE_CHUNK` rows (writers wait milliseconds); returns how many rows went."""
    cutoff_ms = epoch_ms(cutoff)
    table = schema.contents
    deleted = 0
    try:
        while True:
            with store.engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
                ids = connection.scalars(
                    sqlalchemy.select(table.c.call_id)
                    .where(table.c.started_ms < cutoff_ms)
                    .limit(_DELETE_CHUNK)
                ).all()
                if ids:
                    connection.execute(sqlalchemy.delete(table).where(table.c.call_id.in_(ids)))
            deleted += len(ids)
            if len(ids) < _DELETE_CHUNK:
                return deleted
    except Exception as exc:
        raise store_error(
            exc, doing="deleting old captured content from", where=store.name
        ) from exc
