"""`GroupCommit`: many threads ask for their items to be durable; one transaction serves them all.

A durable acknowledgement (the ingest API answers 2xx only once its calls are committed) costs a
transaction per request if every request commits alone, and SQLite takes one writer at a time.
Group commit, as databases do for their own logs: the first thread to arrive becomes the leader
and writes everything that is waiting in one transaction; threads that arrive meanwhile queue
behind it and are all served by the next leader's single write. Under load a transaction carries
many requests; alone, a request pays for exactly one.

No library offers this for an arbitrary write function (it is a few lines over a
`threading.Condition`), hence written here.

A write may say which of its items were new (a store skips a call it already has): each caller
then learns which of *its* items those were, so what comes after the store counts a retried
request once.

>>> written = []
>>> group = GroupCommit(written.append)
>>> group.commit([1, 2])
[1, 2]
>>> group.commit([3])
[3]
>>> written
[[1, 2], [3]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Ticket(Generic[T]):
    __slots__ = ("done", "error", "items", "new")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.done = False
        self.error: BaseException | None = None
        self.new: list[T] = []


class GroupCommit(Generic[T]):
    """Serialise ``write`` calls, merging the items of every thread waiting into one call.

    ``commit`` returns once ``write`` has returned for a list holding the caller's items, and
    raises what it raised. ``write`` returns the items it newly wrote (the very objects it was
    given), or None when every item was new; ``commit`` returns the caller's items among them,
    each written object going to one caller only. When a merged write fails with an error that ``isolate`` says is
    about the data (not an outage), each request of the group is written again on its own, so
    one request's bad item never fails its neighbours. ``max_items`` bounds one merged write.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Collection[T] | None],
        *,
        isolate: Callable[[BaseException], bool] = lambda exc: True,
        max_items: int = 20_000,
    ) -> None:
        self._write = write
        self._isolate = isolate
        self._max_items = max_items
        self._cond = threading.Condition()
        self._waiting: list[_Ticket[T]] = []
        self._leading = False

    def commit(self, items: Sequence[T]) -> list[T]:
        """Write ``items`` (with whatever else is waiting); those of them that were new.

        Raises what the write raised.
        """
        ticket = _Ticket(items)
        with self._cond:
            self._waiting.append(ticket)
            while self._leading and not ticket.done:
                self._cond.wait()
            if not ticket.done:
                self._leading = True
                group = self._take()
        if not ticket.done:
            try:
                self._serve(group)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.new

    def _take(self) -> list[_Ticket[T]]:
        group: list[_Ticket[T]] = []
        size = 0
        while self._waiting and (
            not group or size + len(self._waiting[0].items) <= self._max_items
        ):
            ticket = self._waiting.pop(0)
            group.append(ticket)
            size += len(ticket.items)
        return group

    def _serve(self, group: list[_Ticket[T]]) -> None:
        try:
            written = self._write([item for ticket in group for item in ticket.items])
            _hand_out(written, group)
        except BaseException as exc:
            if len(group) == 1 or not self._isolate(exc):
                for ticket in group:
                    ticket.error = exc
            else:
                for ticket in group:
                    try:
                        _hand_out(self._write(list(ticket.items)), [ticket])
                    except BaseException as alone:
                        ticket.error = alone
        finally:
            with self._cond:
                for ticket in group:
                    ticket.done = True


def _hand_out(written: Collection[T] | None, group: list[_Ticket[T]]) -> None:
    """Give each ticket its items among ``written``, by identity, each object to one ticket."""
    if written is None:
        for ticket in group:
            ticket.new = list(ticket.items)
        return
    unclaimed = {id(item) for item in written}
    for ticket in group:
        for item in ticket.items:
            if id(item) in unclaimed:
                unclaimed.discard(id(item))
                ticket.new.append(item)
