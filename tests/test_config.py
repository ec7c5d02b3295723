"""Configuration is validated at start; a bad value stops with one line naming the variable."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from checkin.config import ConfigError, load_settings
from checkin.phones import InvalidPhone, InvalidTimezone, check_timezone, normalise_phone
from checkin.quiet import check_schedule_time, is_quiet, next_allowed

TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "t",
    "TWILIO_FROM_NUMBER": "+16175550000",
}


def test_defaults_are_sqlite_in_the_instance_folder_and_console_sms() -> None:
    settings = load_settings({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("instance/checkin.sqlite3")
    assert settings.sms_backend == "console"
    assert settings.send_rate_per_second == 0


def test_twilio_is_the_backend_when_credentials_are_set() -> None:
    assert load_settings(TWILIO).sms_backend == "twilio"


def test_a_plain_postgresql_url_uses_psycopg_3() -> None:
    settings = load_settings({"CHECKIN_DATABASE_URL": "postgresql://u@db:5432/checkin"})
    assert settings.database_url == "postgresql+psycopg://u@db:5432/checkin"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CHECKIN_DATABASE_URL": "mysql://x/y"}, "CHECKIN_DATABASE_URL"),
        ({"CHECKIN_DATABASE_URL": "::nonsense::"}, "CHECKIN_DATABASE_URL"),
        ({"CHECKIN_SMS_BACKEND": "carrier-pigeon"}, "CHECKIN_SMS_BACKEND"),
        ({"CHECKIN_SMS_BACKEND": "twilio"}, "TWILIO_ACCOUNT_SID"),
        ({**TWILIO, "TWILIO_ACCOUNT_SID": "XX1"}, "TWILIO_ACCOUNT_SID"),
        (
            {**TWILIO, "TWILIO_FROM_NUMBER": "", "CHECKIN_SMS_BACKEND": "twilio"},
            "TWILIO_FROM_NUMBER",
        ),
        ({**TWILIO, "TWILIO_FROM_NUMBER": "12"}, "TWILIO_FROM_NUMBER"),
        ({**TWILIO, "TWILIO_MESSAGING_SERVICE_SID": "XY"}, "TWILIO_MESSAGING_SERVICE_SID"),
        ({"TWILIO_API_BASE_URL": "ftp://x"}, "TWILIO_API_BASE_URL"),
        ({"CHECKIN_PUBLIC_URL": "checkin.example.org"}, "CHECKIN_PUBLIC_URL"),
        ({"CHECKIN_SEND_RATE_PER_SECOND": "fast"}, "CHECKIN_SEND_RATE_PER_SECOND"),
        ({"CHECKIN_SEND_RATE_PER_SECOND": "-1"}, "CHECKIN_SEND_RATE_PER_SECOND"),
        ({"CHECKIN_SEND_RATE_PER_SECOND": "nan"}, "CHECKIN_SEND_RATE_PER_SECOND"),
        ({"CHECKIN_DEMO": "maybe"}, "CHECKIN_DEMO"),
        ({"CHECKIN_CLOCK_START": "2026-03-08T09:00"}, "CHECKIN_CLOCK_START"),
    ],
)
def test_a_bad_value_names_its_variable_in_one_line(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_the_web_needs_a_secret_key_and_a_webhook_token_outside_demo_mode() -> None:
    with pytest.raises(ConfigError, match="^CHECKIN_SECRET_KEY: "):
        load_settings(TWILIO).require_web()
    with pytest.raises(ConfigError, match="^TWILIO_AUTH_TOKEN: "):
        load_settings({"CHECKIN_SECRET_KEY": "s"}).require_web()
    load_settings({**TWILIO, "CHECKIN_SECRET_KEY": "s"}).require_web()
    load_settings({"CHECKIN_DEMO": "1"}).require_web()  # the demo signs with its own token


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 (617) 555-0101", "+16175550101"),
        ("617-555-0101", "+16175550101"),
        ("+44 20 7946 0958", "+442079460958"),
        ("  +16175550101 ", "+16175550101"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["12345", "", "call me", "+1 555", "+999 1234567"])
def test_invalid_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone(raw)


def test_timezones_must_be_real_iana_names() -> None:
    assert check_timezone("Australia/Lord_Howe").key == "Australia/Lord_Howe"
    for bad in ("Mars/Olympus", "EST5EDT6", "", "posixrules", "../etc/passwd"):
        with pytest.raises(InvalidTimezone):
            check_timezone(bad)


NY = ZoneInfo("America/New_York")
QUIET = (time(21, 0), time(8, 0))


def test_quiet_hours_run_from_21_00_to_08_00_local() -> None:
    assert is_quiet(datetime(2026, 3, 10, 1, 30, tzinfo=UTC), NY, *QUIET)  # 21:30 local
    assert not is_quiet(datetime(2026, 3, 10, 12, 0, tzinfo=UTC), NY, *QUIET)  # 08:00 local
    assert is_quiet(datetime(2026, 3, 10, 11, 59, tzinfo=UTC), NY, *QUIET)  # 07:59 local


def test_a_send_in_quiet_hours_moves_to_the_next_allowed_minute() -> None:
    late = datetime(2026, 3, 10, 2, 30, tzinfo=UTC)  # 22:30 local on the 9th
    assert next_allowed(late, NY, *QUIET) == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    early = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # 06:00 local on the 10th
    assert next_allowed(early, NY, *QUIET) == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    fine = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert next_allowed(fine, NY, *QUIET) == fine


def test_deferral_across_the_spring_dst_change_lands_on_08_00_local() -> None:
    saturday_night = datetime(2026, 3, 8, 2, 30, tzinfo=UTC)  # 21:30 EST on 7 March
    allowed = next_allowed(saturday_night, NY, *QUIET)
    assert allowed.astimezone(NY).hour == 8 and allowed.astimezone(NY).day == 8
    assert allowed == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # 08:00 EDT


def test_a_schedule_time_inside_quiet_hours_is_explained() -> None:
    reason = check_schedule_time(time(22, 0), *QUIET)
    assert reason is not None and "quiet hours" in reason and "22:00" in reason
    assert check_schedule_time(time(9, 0), *QUIET) is None


def test_with_only_a_messaging_service_texts_are_recorded_as_from_that_service() -> None:
    service = "MG" + "2" * 32
    settings = load_settings(
        {
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
            "TWILIO_AUTH_TOKEN": "token",
            "TWILIO_MESSAGING_SERVICE_SID": service,
        }
    )
    assert settings.sender == service  # never the demo's made-up number
    number = load_settings({**{"TWILIO_FROM_NUMBER": "+16175550000"}, "CHECKIN_DEMO": "1"})
    assert number.sender == "+16175550000"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CHECKIN_PROGRAM_NAME", "MS Ketamine Clinic"),
        ("CHECKIN_SUPPORT_CONTACT", "Depression line"),
    ],
)
def test_a_program_name_or_contact_naming_a_diagnosis_or_drug_is_refused(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"{variable}: is shown to patients in texts"):
        load_settings({variable: value})
    assert load_settings({variable: "Neurology Care Team"}).database_url
