"""`Lease`: a named leader lease in the store, so one process among many does a job at a time.

Workers of one ``aivitals serve --workers N`` and replicas on other machines share the store, so
the lease lives there and nobody's parent process decides. Taking and renewing are one atomic
``UPDATE ... WHERE name = :name AND (holder = :me OR expires_ms < :now)``: whoever's update finds
the row wins, on SQLite and PostgreSQL alike; a missing row is inserted with ``ON CONFLICT DO
NOTHING``, so two first contenders cannot both win. A holder that dies stops renewing and is
taken over once its lease expires; one that stops cleanly `release`\\ s it for an immediate
take-over. Times are the contenders' own clocks (epoch ms): replicas' clocks must agree to well
within ``ttl_s`` (NTP does).

The holder can `publish` a snapshot (text, JSON by convention) on its row for the others to
`read`: the alert engine's state, so a follower answers the alert routes with the leader's view.
The others can `send` the holder a message (a silence posted to a follower), which the holder
`receive`\\ s, in order, once.

>>> import sqlalchemy
>>> from aivitals.store import schema
>>> engine = sqlalchemy.create_engine("sqlite://")
>>> schema.leases.create(engine)
>>> now = [1000.0]
>>> a = Lease(engine, "alerts", holder="a", ttl_s=10, clock=lambda: now[0])
>>> b = Lease(engine, "alerts", holder="b", ttl_s=10, clock=lambda: now[0])
>>> a.hold(), b.hold()
(True, False)
>>> now[0] += 11  # a stopped renewing
>>> b.hold(), a.hold()
(True, False)
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy.dialects import postgresql, sqlite

from aivitals.store import schema

logger = logging.getLogger("aivitals.store")


def default_holder() -> str:
    """This process, as other contenders see it: host, pid and a random suffix (a pid reused
    after a restart is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """What the store says of a lease: its holder, until when, and the holder's snapshot."""

    holder: str
    expires_ms: int
    snapshot: str | None
    snapshot_ms: int | None


class Lease:
    """The lease ``name`` in the store behind ``engine``, contended for as ``holder``.

    Every method answers from one short transaction and never raises for a store that cannot be
    reached: `hold` says False then (a leader that cannot renew must stop acting as one; its
    lease expires for the others anyway) and the failure is logged.
    """

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        name: str,
        *,
        holder: str | None = None,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("a lease's ttl_s must be positive")
        self.engine = engine
        self.name = name
        self.holder = holder if holder is not None else default_holder()
        self.ttl_s = ttl_s
        self._clock = clock
        self._insert: Any = (
            postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def hold(self) -> bool:
        """Take the lease if it is free or expired, renew it if ours; whether we hold it now."""
        now = self._now_ms()
        expires = now + int(self.ttl_s * 1000)
        table = schema.leases
        try:
            with self.engine.begin() as connection:
                taken = connection.execute(
                    table.update()
                    .where(
                        table.c.name == self.name,
                        sqlalchemy.or_(table.c.holder == self.holder, table.c.expires_ms < now),
                    )
                    .values(holder=self.holder, expires_ms=expires)
                    .returning(table.c.name)
                )
                # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
                if taken.first() is not None:
                    return True
                inserted = connection.execute(
                    self._insert(table)
                    .values(name=self.name, holder=self.holder, expires_ms=expires)
                    .on_conflict_do_nothing()
                    .returning(table.c.name)
                )
                return inserted.first() is not None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("lease %s: cannot take or renew it (%s)", self.name, exc)
            return False

    def release(self) -> None:
        """Give the lease up now, if ours, so another contender takes it at once."""
        table = schema.leases
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    table.update()
                    .where(table.c.name == self.name, table.c.holder == self.holder)
                    .values(expires_ms=0)
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("lease %s: cannot release it (%s); it expires anyway", self.name, exc)

    def publish(self, snapshot: str) -> bool:
        """Store ``snapshot`` on the lease row if we still hold it; whether it was stored."""
        table = schema.leases
        try:
            with self.engine.begin() as connection:
                done = connection.execute(
                    table.update()
                    .where(
                        table.c.name == self.name,
                        table.c.holder == self.holder,
                        table.c.expires_ms >= self._now_ms(),
                    )
                    .values(snapshot=snapshot, snapshot_ms=self._now_ms())
                    .returning(table.c.name)
                )
                return done.first() is not None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("lease %s: cannot publish the snapshot (%s)", self.name, exc)
            return False

    def send(self, body: str) -> bool:
        """Leave ``body`` for whoever holds the lease to `receive`; whether it was stored."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    schema.lease_inbox.insert().values(
                        id=str(uuid.uuid4()), name=self.name, body=body, created_ms=self._now_ms()
                    )
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("lease %s: cannot send to the holder (%s)", self.name, exc)
            return False
        return True

    def receive(self) -> list[str]:
        """Take every message sent to the holder, oldest first (each is received once)."""
        inbox = schema.lease_inbox
        try:
            with self.engine.begin() as connection:
                rows = connection.execute(
                    sqlalchemy.select(inbox.c.id, inbox.c.body)
                    .where(inbox.c.name == self.name)
                    .order_by(inbox.c.created_ms, inbox.c.id)
                ).all()
                if rows:
                    connection.execute(
                        inbox.delete().where(inbox.c.id.in_([row.id for row in rows]))
                    )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("lease %s: cannot read the inbox (%s)", self.name, exc)
            return []
        return [row.body for row in rows]

    def read(self) -> LeaseRow | None:
        """The lease's row (None: never taken, or the store cannot be read now)."""
        table = schema.leases
        try:
            with self.engine.connect() as connection:
                row = connection.execute(
                    sqlalchemy.select(
                        table.c.holder, table.c.expires_ms, table.c.snapshot, table.c.snapshot_ms
                    ).where(table.c.name == self.name)
                ).first()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("lease %s: cannot read it (%s)", self.name, exc)
            return None
        if row is None:
            return None
        return LeaseRow(
            holder=row.holder,
            expires_ms=int(row.expires_ms),
            snapshot=row.snapshot,
            snapshot_ms=None if row.snapshot_ms is None else int(row.snapshot_ms),
        )
