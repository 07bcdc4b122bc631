"""Shared state in Redis: rate limits, budgets and the exact cache, the same in every process.

See docs/shared-state.md. Optional: ``pip install aivitals[redis]``.
"""

from aivitals.shared.budgets import SharedBudgetLedger, SharedHold
from aivitals.shared.cache import SharedResponseCache
from aivitals.shared.limits import SharedRateLimiter
from aivitals.shared.link import RedisLink, Unavailable
from aivitals.shared.metrics import SharedMetrics
from aivitals.shared.state import SharedState
from aivitals.shared.writer import Write, Writer

__all__ = [
    "RedisLink",
    "SharedBudgetLedger",
    "SharedHold",
    "SharedMetrics",
    "SharedRateLimiter",
    "SharedResponseCache",
    "SharedState",
    "Unavailable",
    "Write",
    "Writer",
]
