"""Quiet hours: pure local-time arithmetic (CLINICAL.md: no scheduled texts before 08:00 or
after 21:00 local; defer, do not drop)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_QUIET_START = time(21, 0)  # CLINICAL.md, TCPA 47 CFR 64.1200(c)(1) as best practice
DEFAULT_QUIET_END = time(8, 0)


def is_quiet(at: datetime, zone: ZoneInfo, start: time, end: time) -> bool:
    local = at.astimezone(zone).time()
    return local >= start or local < end


def next_allowed(at: datetime, zone: ZoneInfo, start: time, end: time) -> datetime:
    """`at` itself when texting is allowed then, else the first allowed minute after it."""
    if not is_quiet(at, zone, start, end):
        return at
    local = at.astimezone(zone)
    day = local.date() if local.time() < end else local.date() + timedelta(days=1)
    opening = datetime.combine(day, end, tzinfo=zone)
    # A DST gap can swallow the opening minute; zoneinfo then reads it with the old offset,
    # which round-trips to a real instant at or after the gap.
    return opening.astimezone(ZoneInfo("UTC")).astimezone(at.tzinfo)


def check_schedule_time(local: time, start: time, end: time) -> str | None:
    """A one-line reason when a schedule time falls in quiet hours, else None."""
    if local >= start or local < end:
        return (
            f"{local:%H:%M} is inside quiet hours ({start:%H:%M}-{end:%H:%M} local); "
            f"choose a time from {end:%H:%M} to before {start:%H:%M}"
        )
    return None
