"""Outbound channels behind one interface; `sms_transport` picks one from the settings."""

from __future__ import annotations

from checkin.config import Settings
from checkin.transports.base import SendResult, SmsTransport, TransportError
from checkin.transports.console_sms import ConsoleSms

__all__ = ["SendResult", "SmsTransport", "TransportError", "sms_transport"]


def sms_transport(settings: Settings) -> SmsTransport:
    if settings.sms_backend == "console":
        return ConsoleSms()
    from checkin.transports.twilio_sms import TwilioSms

    assert settings.twilio_account_sid and settings.twilio_auth_token  # checked by config
    return TwilioSms(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        from_number=settings.twilio_from_number,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        api_base_url=settings.twilio_api_base_url,
    )
