"""Phone numbers and time zones as patients and admins type them, checked before they are stored."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers


class InvalidPhone(ValueError):
    pass


class InvalidTimezone(ValueError):
    pass


def normalise_phone(raw: str, region: str = "US") -> str:
    """Return the E.164 form of `raw` or raise InvalidPhone with a one-line reason.

    A number without a leading + is read as a `region` number, which is how US clinic staff
    write them ("(617) 555-0101").
    """
    text = (raw or "").strip()
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(f"not a phone number: {raw!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_timezone(name: str) -> ZoneInfo:
    """Return the zone for an IANA name such as 'America/New_York'; raise InvalidTimezone."""
    text = (name or "").strip()
    if not text:
        raise InvalidTimezone("time zone is missing: choose a time zone (e.g. America/New_York)")
    # available_timezones() excludes odd file names such as 'posixrules' that ZoneInfo accepts.
    if text not in _zone_names():
        raise InvalidTimezone(f"not an IANA time zone: {name!r} (e.g. America/New_York)")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(f"not an IANA time zone: {name!r}") from None


_ZONES: frozenset[str] | None = None


# Names zoneinfo lists that are not a place: the server's own zone, and tz-build artefacts.
NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


def _zone_names() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) - NOT_PLACES
    return _ZONES


def zone_names() -> frozenset[str]:
    """Every IANA zone a patient may have."""
    return _zone_names()
