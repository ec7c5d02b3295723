"""Reading staff forms: one-line errors naming the field, the same words the CLI uses.

Forms are plain HTML posted with a CSRF token (Flask-WTF's CSRFProtect checks it before any
view runs); validation lives in the domain modules (patients, schedules, staff), which raise
ValueError subclasses with a one-line reason. These helpers only turn form strings into
values, and a form into a ScheduleSpec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.sql.selectable import GenerativeSelect

from checkin.phones import zone_names
from checkin.schedules import DAY_NAMES, ScheduleError, ScheduleSpec, parse_time

# The zones most US clinics' patients live in, offered first in every time-zone picker.
COMMON_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
)
LANGUAGE_NAMES = {"en": "English", "es": "Spanish (español)"}
DAY_LABELS = dict(zip(DAY_NAMES, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))


S = TypeVar("S", bound=GenerativeSelect)


class FormError(ValueError):
    """A one-line reason a form cannot be accepted."""


@cache
def all_zones() -> tuple[str, ...]:
    """Every IANA zone name a patient can have, sorted (the long list under the common ones).
    All of them, so a patient's zone is always among the options and a save never changes it."""
    return tuple(sorted(zone_names()))


@dataclass(frozen=True)
class Paging:
    """Which page of a paged table to show: `page` of `pages`, `size` rows each."""

    page: int
    pages: int
    size: int

    @classmethod
    def of(cls, total: int, requested: str | None, size: int) -> Paging:
        """?page=N for `total` rows, clamped to a page that exists."""
        pages = max(1, -(-total // size))
        return cls(min(page_number(requested), pages), pages, size)

    def rows(self, stmt: S) -> S:
        return stmt.offset((self.page - 1) * self.size).limit(self.size)


def page_number(raw: str | None) -> int:
    """?page=N; junk, zero or below is page 1 (the caller clamps to the last page)."""
    try:
        # int() refuses '2.5', 'abc', '²' and strings of thousands of digits: all page 1.
        return max(1, int(raw or "1"))
    except ValueError:
        return 1


def field(form: Mapping[str, str], name: str, limit: int = 200) -> str:
    return (form.get(name) or "").strip()[:limit]


def form_date(form: Mapping[str, str], name: str, label: str) -> date | None:
    text = field(form, name, 20)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FormError(f"{label} must be a date (YYYY-MM-DD), got {text!r}") from None


def required_date(form: Mapping[str, str], name: str, label: str) -> date:
    value = form_date(form, name, label)
    if value is None:
        raise FormError(f"{label} is required")
    return value


def local_datetime(form: Mapping[str, str], name: str, label: str, zone: str) -> datetime | None:
    """A datetime-local input ('2026-12-01T09:30'), read in `zone`; None when left empty."""
    text = field(form, name, 30)
    if not text:
        return None
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        raise FormError(f"{label} must be a date and time, got {text!r}") from None
    return naive.replace(tzinfo=ZoneInfo(zone))


def schedule_spec(form: Mapping[str, str], days: list[str]) -> ScheduleSpec:
    """The schedule a form describes (`days`: the checked weekday boxes); ScheduleError names
    what is wrong. Validation against the program (quiet hours, flow) is ScheduleSpec.checked."""
    flow = field(form, "flow", 40)
    if not flow:
        raise ScheduleError("choose what to ask (the flow)")
    text = field(form, "time", 10)
    if not text:
        raise ScheduleError("time is required (HH:MM, 24-hour, the patient's local time)")
    at: time = parse_time(text)
    start = form_date(form, "start", "start date")
    end = form_date(form, "end", "end date")
    if field(form, "kind", 20) == "infusion":
        offsets = field(form, "offsets", 120)
        if not offsets:
            raise ScheduleError("give the days after each infusion, e.g. 1,3,7,14")
        return ScheduleSpec(flow, at, ",".join(DAY_NAMES), offsets, start, end)
    chosen = [d for d in DAY_NAMES if d in days]
    if not chosen:
        raise ScheduleError("choose at least one day of the week")
    return ScheduleSpec(flow, at, ",".join(chosen), None, start, end)
