"""The patient simulator (demo mode only): a phone-like page to play a demo patient.

Pick a patient, read the texts they received and sent, and reply. A reply is a real inbound
webhook: the same form Twilio posts, signed with the webhook token, dispatched to this app's
own /twilio/sms view, so the signature check and the conversation code run exactly as they do
for Twilio. Outside demo mode every route here is a 404. Staff sign-in is still required: the
page shows patient data.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import or_, select
from werkzeug.wrappers import Response

from checkin import audit
from checkin.models import Message, Patient
from checkin.simulate import sign, twilio_inbound_params
from checkin.web import context
from checkin.web.auth import login_required, signed_in
from checkin.web.patients import patient_in_program

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

THREAD_LIMIT = 100  # the newest texts shown, oldest first like a phone
BODY_MAX = 1600  # Twilio's limit for one message body
WEBHOOK_PATH = "/twilio/sms"


@bp.before_request
def demo_only() -> None:
    if not context().settings.demo:
        abort(404)


@bp.get("")
@login_required
def phone() -> str:
    staff = signed_in()
    chosen = request.args.get("patient", type=int)
    with context().db.session() as db:
        patients = list(
            db.scalars(
                select(Patient)
                .where(Patient.program_id == staff.program_id)
                .order_by(Patient.name, Patient.id)
            )
        )
        patient = next((p for p in patients if p.id == chosen), None)
        if chosen is not None and patient is None:
            abort(404)
        thread: list[Message] = []
        if patient is not None:
            thread = list(
                db.scalars(
                    select(Message)
                    .where(
                        Message.patient_id == patient.id,
                        Message.channel == "sms",
                        or_(
                            Message.to_number == patient.phone,
                            Message.from_number == patient.phone,
                        ),
                    )
                    .order_by(Message.created_at.desc(), Message.id.desc())
                    .limit(THREAD_LIMIT)
                )
            )
            thread.reverse()
    return render_template(
        "simulator.html", patients=patients, patient=patient, thread=thread, body_max=BODY_MAX
    )


@bp.post("/<int:patient_id>/reply")
@login_required
def reply(patient_id: int) -> Response:
    ctx = context()
    staff = signed_in()
    body = request.form.get("body", "").strip()
    with ctx.db.session() as db:
        patient = patient_in_program(db, patient_id)
        phone_number = patient.phone
        if body:
            audit.record(db, ctx.clock(), staff.email, "simulator.reply", f"patient:{patient_id}")
    back = redirect(url_for("simulator.phone", patient=patient_id), code=303)
    if not body:
        flash("Type a reply first.", "info")
        return back
    if len(body) > BODY_MAX:
        flash(f"A text is at most {BODY_MAX} characters.", "error")
        return back
    status = _send_as_patient(phone_number, body[:BODY_MAX])
    if status != 200:
        flash(f"The webhook answered HTTP {status}; the reply was not taken.", "error")
    return back


def _send_as_patient(phone_number: str, body: str) -> int:
    """Post the signed inbound-SMS webhook to this app's own view, as Twilio would."""
    settings = context().settings
    token = settings.webhook_auth_token
    if token is None:  # demo mode always has one (config.DEMO_AUTH_TOKEN)
        abort(404)
    params = twilio_inbound_params(settings, phone_number, body)
    signature = sign(token, settings.public_url + WEBHOOK_PATH, params)
    # buffered: the response is read and closed, so pages queued by the view go out.
    response = current_app.test_client().post(
        WEBHOOK_PATH, data=params, headers={"X-Twilio-Signature": signature}, buffered=True
    )
    return response.status_code
