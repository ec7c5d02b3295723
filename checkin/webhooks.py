"""Twilio's two doors: inbound texts and delivery status callbacks.

Thin by design: verify the signature, hand off, render TwiML. A request whose X-Twilio-Signature
does not match CHECKIN_PUBLIC_URL + path is refused with 403 and nothing is stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from checkin import outbox
from checkin.context import Context
from checkin.conversations import Inbound, handle_inbound

bp = Blueprint("webhooks", __name__, url_prefix="/twilio")
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
# Twilio's SIDs are two letters and 32 hex digits; its addresses are short. Anything else did not
# come from Twilio, and PostgreSQL would refuse to store a NUL or an over-long value (a 500).
TWILIO_SID = re.compile(r"[A-Za-z0-9]{1,64}")  # Message.twilio_sid is 64 long
ADDRESS_LENGTH = 254  # Message.to_number, Message.from_number
# Digits that fit an integer column: ErrorCode (Twilio's have five) and our own ?message=<id>.
SMALL_NUMBER = re.compile(r"[0-9]{1,9}")


def context() -> Context:
    ctx: Context = current_app.extensions["checkin"]
    return ctx


def signed_by_twilio(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = context()
        token = ctx.settings.webhook_auth_token
        query = request.query_string.decode()
        url = ctx.settings.public_url + request.path + (f"?{query}" if query else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not token or not RequestValidator(token).validate(url, request.form, signature):
            log.warning("rejected unsigned or mis-signed request to %s", request.path)
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@bp.post("/sms")
@signed_by_twilio
def inbound_sms() -> Response:
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    sender = form.get("From", "")
    if not sid or not sender:
        abort(400, "MessageSid and From are required")
    ctx = context()
    to = form.get("To", ctx.settings.sender)
    if not TWILIO_SID.fullmatch(sid) or not _address(sender) or not _address(to):
        abort(400, "MessageSid, From or To is not one Twilio sends")
    handled = handle_inbound(
        ctx,
        Inbound(
            sid=sid,
            from_number=sender,
            to_number=to,
            body=form.get("Body", ""),
            opt_out_type=form.get("OptOutType") or None,
        ),
    )
    twiml = MessagingResponse()
    for body in handled.replies:
        twiml.message(body)
    response = Response(str(twiml), mimetype="text/xml")
    if handled.pages:
        # The patient's reply (988 for a crisis) must not wait on Twilio or a mail server:
        # pages go out once the response is sent. They were saved first, so if this process
        # dies before sending them, the scheduler's next tick does.
        response.call_on_close(lambda: _send_pages(ctx, handled.pages))
    return response


def _address(value: str) -> bool:
    return len(value) <= ADDRESS_LENGTH and "\x00" not in value


def _send_pages(ctx: Context, message_ids: list[int]) -> None:
    try:
        outbox.deliver_many(ctx, message_ids)
    except Exception:  # the scheduler retries what is still pending
        log.exception("sending pages %s after the reply failed", message_ids)


@bp.post("/status")
@signed_by_twilio
def status_callback() -> Response:
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    code = form.get("ErrorCode", "")
    raw_id = request.args.get("message", "")
    message_id = int(raw_id) if SMALL_NUMBER.fullmatch(raw_id) else None
    ctx = context()
    if TWILIO_SID.fullmatch(sid) and status:
        with ctx.db.session() as session:
            error = int(code) if SMALL_NUMBER.fullmatch(code) else None
            outbox.record_status(session, sid, status, error, ctx.clock(), message_id)
    # Always 200: a non-2xx makes Twilio retry a callback we can do nothing more with.
    return Response("", status=200)
