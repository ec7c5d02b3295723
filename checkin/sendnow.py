"""`checkin send-now`: start one check-in for one patient now, through the normal machinery."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from checkin import audit, flows, scheduler, schedules
from checkin.context import Context
from checkin.models import CheckIn
from checkin.patients import PatientError, get

_OUTCOMES = {
    "queued": "sent",
    "accepted": "sent",
    "sent": "sent",
    "delivered": "sent",
    "deferred": "deferred by quiet hours",
}


def start_now(ctx: Context, phone: str, flow_name: str, *, actor: str) -> str:
    """Create and start the check-in; returns a one-line result or raises PatientError."""
    flow = flows.current(flow_name)
    token = f"send-now:{actor}:{uuid.uuid4().hex[:8]}"
    with ctx.db.session() as session:
        now = ctx.clock()
        patient = get(session, phone)
        if patient.status == "opted_out":
            raise PatientError(f"patient {patient.phone} has opted out (STOP); not texting them")
        if patient.status == "number_invalid":
            raise PatientError(f"patient {patient.phone} has an invalid number; fix it first")
        if patient.status == "paused":
            raise PatientError(
                f"patient {patient.phone} is paused until {patient.paused_until}; resume them first"
            )
        zone = ZoneInfo(patient.timezone)
        local = now.astimezone(zone)
        checkin = CheckIn(
            patient_id=patient.id,
            flow=flow.name,
            flow_version=flow.version,
            idempotency_key=f"{patient.id}:{flow.name}:{local.date()}:now:{uuid.uuid4().hex}",
            local_date=local.date(),
            due_at=now,
            expires_at=schedules.end_of_local_day(now, zone),
            status="sending",
            claimed_by=token,
            lease_until=now + scheduler.CLAIM_LEASE,
            state={"requested_by": actor},
            created_at=now,
        )
        session.add(checkin)
        session.flush()
        audit.record(
            session,
            now,
            actor,
            "checkin.send_now",
            f"patient:{patient.id}",
            flow=flow.name,
            checkin=checkin.id,
        )
        checkin_id, shown = checkin.id, patient.phone
    result = scheduler.start_checkin(ctx, checkin_id, token)
    with ctx.db.session() as session:
        final = session.get_one(CheckIn, checkin_id)
        reason = final.state.get("reason") or final.state.get("deferred") or ""
        due = final.due_at.astimezone(ZoneInfo(final.patient.timezone))
    if result == "deferred":
        return f"{flow.name} for {shown}: deferred to {due:%Y-%m-%d %H:%M %Z} ({reason})"
    if result in _OUTCOMES:
        return f"{flow.name} for {shown}: {_OUTCOMES[result]}"
    raise PatientError(
        f"{flow.name} for {shown} not sent: {result}" + (f" ({reason})" if reason else "")
    )
