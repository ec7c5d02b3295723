"""The one place that asks what time it is.

Every function that needs "now" takes a Clock, so DST days, quiet hours and expiry are tested at
chosen instants. CHECKIN_CLOCK_START starts a process's clock at a given instant (it then runs at
normal speed): end-to-end tests and rehearsals use it; production leaves it unset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def shifted_clock(start: datetime) -> Clock:
    """A clock that reads `start` now and advances in real time from there."""
    origin = time.monotonic()
    start_utc = start.astimezone(UTC)

    def now() -> datetime:
        return start_utc + timedelta(seconds=time.monotonic() - origin)

    return now


class FrozenClock:
    """A clock for tests: it stands still until moved."""

    def __init__(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at
