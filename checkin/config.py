"""Settings from the environment, validated once, failing fast with the variable's name.

The names are a contract (DESIGN.md); a bad value stops the process with one line such as
``CHECKIN_SEND_RATE_PER_SECOND: must be a number >= 0, got 'fast'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Demo mode signs webhooks with this token when no Twilio token is configured, so that
# `checkin text` and `checkin demo` agree without any set-up. Never accepted outside demo mode.
DEMO_AUTH_TOKEN = "checkin-demo-auth-token"
DEMO_FROM_NUMBER = "+15005550006"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"
DEFAULT_TWILIO_API = "https://api.twilio.com"


class ConfigError(Exception):
    """A configuration value is missing or wrong; str() is one line naming the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True)
class Settings:
    database_url: str
    sms_backend: str
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_from_number: str | None
    twilio_messaging_service_sid: str | None
    twilio_api_base_url: str
    public_url: str
    secret_key: str | None
    send_rate_per_second: float
    demo: bool
    scheduler_tick_seconds: float
    clock_start: datetime | None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "checkin@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    escalate_after_minutes: float = 15.0
    digest_time: str = "08:00"
    digest_timezone: str = "UTC"
    # Reverse proxies in front of the app (nginx, a load balancer): their X-Forwarded-For is
    # trusted this many hops deep, so audit rows and sign-in limits see the client's address.
    trusted_proxies: int = 0

    @property
    def webhook_auth_token(self) -> str | None:
        """The key that Twilio's X-Twilio-Signature is checked against."""
        if self.twilio_auth_token:
            return self.twilio_auth_token
        return DEMO_AUTH_TOKEN if self.demo else None

    @property
    def sender(self) -> str:
        """What texts go out from, as each Message row records it: the number, or else the
        Messaging Service (its pool picks the number), or the demo's made-up number."""
        return self.twilio_from_number or self.twilio_messaging_service_sid or DEMO_FROM_NUMBER

    def require_web(self) -> None:
        """What a web process needs on top of the basics; called by create_app."""
        if not self.demo and not self.secret_key:
            raise ConfigError("CHECKIN_SECRET_KEY", "required outside demo mode")
        if self.webhook_auth_token is None:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN", "required to verify webhook signatures outside demo mode"
            )


def default_instance_path() -> Path:
    # Flask's own rule for where the instance folder lives, without building an app.
    from flask import Flask

    return Path(Flask("checkin").instance_path)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    demo = _flag(env, "CHECKIN_DEMO")
    _patient_facing(env)
    sid = _opt(env, "TWILIO_ACCOUNT_SID")
    token = _opt(env, "TWILIO_AUTH_TOKEN")
    from_number = _opt(env, "TWILIO_FROM_NUMBER")
    service_sid = _opt(env, "TWILIO_MESSAGING_SERVICE_SID")
    backend = _sms_backend(env, has_credentials=bool(sid and token))
    if backend == "twilio":
        _require_twilio(sid, token, from_number, service_sid)
    if from_number:
        from checkin.phones import InvalidPhone, normalise_phone

        try:
            from_number = normalise_phone(from_number)
        except InvalidPhone as exc:
            raise ConfigError("TWILIO_FROM_NUMBER", str(exc)) from None
    return Settings(
        database_url=_database_url(env),
        sms_backend=backend,
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=from_number,
        twilio_messaging_service_sid=service_sid,
        twilio_api_base_url=_url(env, "TWILIO_API_BASE_URL", DEFAULT_TWILIO_API),
        public_url=_url(env, "CHECKIN_PUBLIC_URL", DEFAULT_PUBLIC_URL),
        secret_key=_opt(env, "CHECKIN_SECRET_KEY"),
        send_rate_per_second=_number(env, "CHECKIN_SEND_RATE_PER_SECOND", 0.0, minimum=0.0),
        demo=demo,
        scheduler_tick_seconds=_number(env, "CHECKIN_SCHEDULER_TICK_SECONDS", 30.0, minimum=0.2),
        clock_start=_instant(env, "CHECKIN_CLOCK_START"),
        smtp_host=_opt(env, "CHECKIN_SMTP_HOST"),
        smtp_port=int(_number(env, "CHECKIN_SMTP_PORT", 25, minimum=1)),
        smtp_from=_opt(env, "CHECKIN_SMTP_FROM") or "checkin@localhost",
        smtp_username=_opt(env, "CHECKIN_SMTP_USERNAME"),
        smtp_password=_opt(env, "CHECKIN_SMTP_PASSWORD"),
        smtp_starttls=_flag(env, "CHECKIN_SMTP_STARTTLS"),
        escalate_after_minutes=_number(env, "CHECKIN_ESCALATE_AFTER_MINUTES", 15.0, minimum=1.0),
        digest_time=_hhmm(env, "CHECKIN_DIGEST_TIME", "08:00"),
        digest_timezone=_zone(env, "CHECKIN_DIGEST_TIMEZONE", "UTC"),
        trusted_proxies=_whole(env, "CHECKIN_TRUSTED_PROXIES", 0, maximum=5),
    )


def _patient_facing(env: Mapping[str, str]) -> None:
    """The program name and support contact go into texts: no diagnosis, drug or treatment."""
    from checkin.catalog import health_word

    for name in ("CHECKIN_PROGRAM_NAME", "CHECKIN_SUPPORT_CONTACT"):
        word = health_word(env.get(name, ""))
        if word:
            raise ConfigError(
                name,
                f"is shown to patients in texts and must not name a diagnosis, drug or "
                f"treatment, found {word!r} (e.g. 'Neurology Care Team')",
            )


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, f"must be 1 or 0, got {value!r}")


def _sms_backend(env: Mapping[str, str], *, has_credentials: bool) -> str:
    value = _opt(env, "CHECKIN_SMS_BACKEND")
    if value is None:
        return "twilio" if has_credentials else "console"
    if value not in ("twilio", "console"):
        raise ConfigError("CHECKIN_SMS_BACKEND", f"must be 'twilio' or 'console', got {value!r}")
    return value


def _require_twilio(
    sid: str | None, token: str | None, from_number: str | None, service_sid: str | None
) -> None:
    if not sid:
        raise ConfigError("TWILIO_ACCOUNT_SID", "required when CHECKIN_SMS_BACKEND is twilio")
    if not sid.startswith("AC"):
        raise ConfigError("TWILIO_ACCOUNT_SID", "must start with 'AC'")
    if not token:
        raise ConfigError("TWILIO_AUTH_TOKEN", "required when CHECKIN_SMS_BACKEND is twilio")
    if not (from_number or service_sid):
        raise ConfigError(
            "TWILIO_FROM_NUMBER",
            "set it or TWILIO_MESSAGING_SERVICE_SID when CHECKIN_SMS_BACKEND is twilio",
        )
    if service_sid and not service_sid.startswith("MG"):
        raise ConfigError("TWILIO_MESSAGING_SERVICE_SID", "must start with 'MG'")


def _database_url(env: Mapping[str, str]) -> str:
    value = _opt(env, "CHECKIN_DATABASE_URL")
    if value is None:
        return f"sqlite:///{default_instance_path() / 'checkin.sqlite3'}"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError("CHECKIN_DATABASE_URL", f"not a database URL: {value!r}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError("CHECKIN_DATABASE_URL", "only sqlite and postgresql are supported")
    if url.drivername == "postgresql":
        # psycopg 3 is the driver we ship; a bare postgresql:// would look for psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = _opt(env, name) or default
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(name, f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _whole(env: Mapping[str, str], name: str, default: int, *, maximum: int) -> int:
    raw = _opt(env, name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) > maximum:
        raise ConfigError(name, f"must be a whole number from 0 to {maximum}, got {raw!r}")
    return int(raw)


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = _opt(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also rejects NaN
        raise ConfigError(name, f"must be a number >= {minimum:g}, got {raw!r}")
    return value


def _instant(env: Mapping[str, str], name: str) -> datetime | None:
    raw = _opt(env, name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(name, f"must be an ISO 8601 instant, got {raw!r}") from None
    if value.tzinfo is None:
        raise ConfigError(name, "must include a UTC offset, e.g. 2026-03-08T08:59:00-05:00")
    return value


def _hhmm(env: Mapping[str, str], name: str, default: str) -> str:
    value = _opt(env, name) or default
    try:
        datetime.strptime(value, "%H:%M")
    except ValueError:
        raise ConfigError(name, f"must be HH:MM, got {value!r}") from None
    return value


def _zone(env: Mapping[str, str], name: str, default: str) -> str:
    value = _opt(env, name) or default
    from checkin.phones import InvalidTimezone, check_timezone

    try:
        check_timezone(value)
    except InvalidTimezone as exc:
        raise ConfigError(name, str(exc)) from None
    return value
