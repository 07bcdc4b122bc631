"""The one exception the store raises: its message is a single line that says what to do."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be opened or written; ``str(error)`` tells the user what to do next.

    ``retryable`` is True when the same write may succeed later unchanged (the database is
    locked, unreachable or out of disk) and False when the data itself was refused (a value too
    long for its column on PostgreSQL, say), so a retry would fail the same way.
    ``retry_after_s``, when known, is how long a caller should wait before trying again.

    >>> error = StoreError("database is locked: retry later", retryable=True)
    >>> str(error), error.retryable
    ('database is locked: retry later', True)
    """

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
