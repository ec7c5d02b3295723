"""CHECKIN_SEND_RATE_PER_SECOND across every worker, counted in the database.

Each send takes a slot in the current window with one atomic upsert that only succeeds while
the window has room; a worker that finds the window full sleeps until the next one. Works the
same on PostgreSQL (many workers, many hosts) and SQLite (one worker). Windows are whole
seconds, or longer for rates below 1 per second (0.5/s = 1 send per 2 s window).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, text

from checkin.clock import Clock
from checkin.db import Database
from checkin.models import SendRateSlot

# Old windows are deleted now and then; nothing reads them.
KEEP_WINDOWS = 120

_TAKE = text(
    "INSERT INTO send_rate_slots (window_start, used) VALUES (:window, 1) "
    "ON CONFLICT (window_start) DO UPDATE SET used = send_rate_slots.used + 1 "
    "WHERE send_rate_slots.used < :limit RETURNING used"
)


class SendRateLimiter:
    def __init__(
        self,
        db: Database,
        per_second: float,
        clock: Clock,
        sleep: Callable[[float], None] = _time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("a rate limiter needs a rate above 0")
        self.db, self.clock, self.sleep = db, clock, sleep
        self.window_seconds = max(1, math.ceil(1 / per_second))
        self.per_window = max(1, math.floor(per_second * self.window_seconds))

    def acquire(self) -> None:
        """Block until this process may send one more message."""
        while True:
            now = self.clock()
            window = self._window(now)
            if self._take(window):
                return
            next_start = (window + 1) * self.window_seconds
            self.sleep(max(0.001, next_start - now.timestamp()))

    def _window(self, now: datetime) -> int:
        return int(now.timestamp() // self.window_seconds)

    def _take(self, window: int) -> bool:
        with self.db.session() as session:
            taken = session.execute(_TAKE, {"window": window, "limit": self.per_window})
            got = taken.first() is not None
            if got and window % KEEP_WINDOWS == 0:
                session.execute(
                    delete(SendRateSlot).where(SendRateSlot.window_start < window - KEEP_WINDOWS)
                )
            return got
