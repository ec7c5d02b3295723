"""Twilio through the official client. TWILIO_API_BASE_URL points it at another server."""

from __future__ import annotations

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from checkin.transports.base import SendResult, TransportError

# Twilio error codes after which a retry cannot succeed (https://www.twilio.com/docs/api/errors):
# 21610 recipient replied STOP; 21211 invalid 'To'; 21614 not a mobile number;
# 21612 cannot route to this number; 21408 region not enabled; 21606 bad 'From'.
PERMANENT_CODES = frozenset({21610, 21211, 21614, 21612, 21408, 21606, 21617})
# How long a send waits on Twilio: a stuck connection must not hold a scheduler worker.
HTTP_TIMEOUT_SECONDS = 10


class TwilioSms:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None,
        messaging_service_sid: str | None,
        api_base_url: str,
    ) -> None:
        http = TwilioHttpClient(timeout=HTTP_TIMEOUT_SECONDS)
        self.client = Client(account_sid, auth_token, http_client=http)
        self.client.api.base_url = api_base_url
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid

    def send_sms(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None,
        validity_seconds: int | None = None,
    ) -> SendResult:
        sender: dict[str, str] = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid
            else {"from_": self.from_number or ""}
        )
        kwargs: dict[str, object] = {"to": to, "body": body, **sender}
        if status_callback:
            kwargs["status_callback"] = status_callback
        if validity_seconds is not None:
            kwargs["validity_period"] = validity_seconds
        try:
            message = self.client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise _rest_error(exc) from exc
        except TwilioException as exc:  # connection refused, timeout, bad response
            raise TransportError(f"Twilio unreachable: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"Twilio unreachable: {exc}") from exc
        return SendResult(sid=message.sid, status=message.status or "queued")


def _rest_error(exc: TwilioRestException) -> TransportError:
    code = exc.code if isinstance(exc.code, int) else None
    # A 400 is about this message (bad body, bad number) and will fail again; 401/403 and 429
    # are about the account or the rate and clear up, so those sends are retried.
    permanent = code in PERMANENT_CODES or exc.status in (400, 404)
    return TransportError(f"Twilio {exc.status}: {exc.msg}", code=code, permanent=permanent)
