"""Play the patient: post an inbound webhook exactly as Twilio would, signature and all."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
from xml.etree import ElementTree

from twilio.request_validator import RequestValidator

from checkin.config import Settings

DEMO_ACCOUNT_SID = "AC" + "0" * 32


def twilio_inbound_params(
    settings: Settings, from_number: str, body: str, message_sid: str | None = None
) -> dict[str, str]:
    """Every form field Twilio sends with an inbound SMS webhook."""
    sid = message_sid or "SM" + secrets.token_hex(16)
    params = {
        "ToCountry": "US",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "US",
        "To": settings.sender,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": settings.twilio_account_sid or DEMO_ACCOUNT_SID,
        "From": from_number,
        "ApiVersion": "2010-04-01",
    }
    if settings.twilio_messaging_service_sid:
        params["MessagingServiceSid"] = settings.twilio_messaging_service_sid
    return params


def sign(token: str, url: str, params: dict[str, str]) -> str:
    signature: str = RequestValidator(token).compute_signature(url, params)
    return signature


class SimulationError(RuntimeError):
    pass


def send_text(
    settings: Settings,
    from_number: str,
    body: str,
    *,
    url: str | None = None,
    message_sid: str | None = None,
) -> list[str]:
    """Post the webhook to the running app and return the reply texts (maybe none)."""
    token = settings.webhook_auth_token
    if token is None:
        raise SimulationError("TWILIO_AUTH_TOKEN is not set, so the request cannot be signed")
    public = f"{settings.public_url}/twilio/sms"
    params = twilio_inbound_params(settings, from_number, body, message_sid)
    request = urllib.request.Request(
        url or public,
        data=urllib.parse.urlencode(params).encode(),
        method="POST",
        headers={
            "X-Twilio-Signature": sign(token, public, params),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            xml = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise SimulationError(f"the app answered HTTP {exc.code} at {public}") from None
    except urllib.error.URLError as exc:
        raise SimulationError(f"cannot reach the app at {public}: {exc.reason}") from None
    return [m.text or "" for m in ElementTree.fromstring(xml).iter("Message")]
