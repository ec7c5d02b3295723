"""What every entry point (web, scheduler, CLI) hands to the code below it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from checkin.clock import Clock, shifted_clock, system_clock
from checkin.config import Settings, load_settings
from checkin.db import Database
from checkin.ratelimit import SendRateLimiter
from checkin.transports import SmsTransport, sms_transport
from checkin.transports.smtp_email import SmtpEmail


@dataclass
class Context:
    settings: Settings
    db: Database
    sms: SmsTransport
    clock: Clock
    limiter: SendRateLimiter | None = None
    email: SmtpEmail | None = None  # None when no CHECKIN_SMTP_HOST is set
    last_planned: datetime | None = None  # the scheduler's own bookkeeping (plan_if_due)

    @property
    def status_callback_url(self) -> str:
        return f"{self.settings.public_url}/twilio/status"


def make_context(settings: Settings | None = None) -> Context:
    settings = settings or load_settings()
    clock = shifted_clock(settings.clock_start) if settings.clock_start else system_clock
    db = Database(settings.database_url)
    ctx = Context(settings, db, sms_transport(settings), clock)
    if settings.smtp_host:
        ctx.email = SmtpEmail(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    if settings.send_rate_per_second > 0:
        ctx.limiter = SendRateLimiter(db, settings.send_rate_per_second, lambda: ctx.clock())
    return ctx
