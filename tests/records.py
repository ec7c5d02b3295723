"""A few days of check-ins, answers, alerts and texts written straight into the database, for
the export and FHIR tests: every flow, every answer status, free text that names people, and
rows of the other program that must stay out of a program's export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from checkin.context import Context
from checkin.models import Alert, Answer, CheckIn, Message, TreatmentEvent
from tests.conftest import ALICE, BOB, ERIN, T0, World
from tests.fake_twilio import FROM_NUMBER

STRANGER = "+16175550177"
ALICE_NOTE = "legs numb since Alice Example fell"
RESOLUTION = "Called Alice Example at home on +16175550101"
SIDE_EFFECTS = (
    "se_dissociation",
    "se_nausea",
    "se_headache",
    "se_dizziness",
    "se_blurred_vision",
    "se_anxiety",
    "se_bladder_pain",
    "se_urinary_urgency",
    "se_blood_in_urine",
)


@dataclass
class History:
    alice_daily: int = 0
    alice_weekly: int = 0
    alice_post_infusion: int = 0
    alice_expired: int = 0
    alice_pending: int = 0
    erin_daily: int = 0
    # Everything that names or reaches a person: none of it may be in a de-identified file.
    identifying: list[str] = field(default_factory=list)


def checkin(
    ctx: Context,
    patient_id: int,
    flow: str,
    due: datetime,
    values: dict[str, int | None],
    *,
    status: str = "completed",
    infusion_days_before: int | None = None,
    note: str | None = None,
) -> int:
    """A check-in sent at `due`, answered a minute apart per measure; None is missing."""
    with ctx.db.session() as session:
        infusion_id = None
        if infusion_days_before is not None:
            infusion = TreatmentEvent(
                patient_id=patient_id,
                occurred_on=due.date() - timedelta(days=infusion_days_before),
                recorded_by="test",
                created_at=due,
            )
            session.add(infusion)
            session.flush()
            infusion_id = infusion.id
        run = CheckIn(
            patient_id=patient_id,
            flow=flow,
            flow_version=1,
            treatment_event_id=infusion_id,
            idempotency_key=f"records:{patient_id}:{flow}:{due.isoformat()}",
            local_date=due.date(),
            due_at=due,
            expires_at=due + timedelta(hours=12),
            status=status,
            state={},
            sent_at=due if status != "pending" else None,
            completed_at=due + timedelta(minutes=len(values)) if status == "completed" else None,
            created_at=due,
        )
        session.add(run)
        session.flush()
        for n, (measure, value) in enumerate(values.items(), start=1):
            session.add(
                Answer(
                    checkin_id=run.id,
                    patient_id=patient_id,
                    measure=measure,
                    value=value,
                    status="answered" if value is not None else "missing",
                    raw_text=f"{value} - {note}" if note and value is not None else str(value),
                    note=note if value is not None else None,
                    recorded_at=due + timedelta(minutes=n),
                )
            )
        return run.id


def seed(ctx: Context, world: World) -> History:
    """Alice (this program): a daily check-in with a note, a PHQ-2, a post-infusion check the
    day after an infusion, an expired daily with two missing answers and a planned one; an
    alert resolved with a note; texts with her, a page to bob and a stranger's text. Erin (the
    other program): one daily check-in and one text."""
    h = History()
    daily = {"fatigue": 4, "pain": 9, "mood": 6}
    h.alice_daily = checkin(ctx, world.alice_id, "daily_symptoms", _at(-3), daily, note=ALICE_NOTE)
    phq2 = {"phq2_interest": 2, "phq2_down": 1, "phq2_total": 3}
    h.alice_weekly = checkin(ctx, world.alice_id, "weekly_mood", _at(-2), phq2)
    post = {m: int(m == "se_headache") for m in SIDE_EFFECTS} | {"mood": 7}
    h.alice_post_infusion = checkin(
        ctx, world.alice_id, "post_infusion", _at(-1), post, infusion_days_before=1
    )
    expired = {"fatigue": 5, "pain": None, "mood": None}
    h.alice_expired = checkin(
        ctx, world.alice_id, "daily_symptoms", _at(-1, 4), expired, status="expired"
    )
    h.alice_pending = checkin(ctx, world.alice_id, "daily_symptoms", _at(1), {}, status="pending")
    erin = {"fatigue": 3, "pain": 2, "mood": 8}
    h.erin_daily = checkin(ctx, world.erin_id, "daily_symptoms", _at(-2), erin)
    _alert(ctx, world)
    _texts(ctx, world, h.alice_daily)
    h.identifying = [
        ALICE,
        ERIN,
        BOB,
        STRANGER,
        ALICE.removeprefix("+1"),
        "Alice",
        "Erin",
        "legs numb",
        "Called",
        "K7Q2X9",
        "SMalice0001",
        "How tired",
        "wrong number",
    ]
    return h


def _at(days: int, hours: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def _alert(ctx: Context, world: World) -> None:
    with ctx.db.session() as session:
        session.add(
            Alert(
                ref="K7Q2X9",
                patient_id=world.alice_id,
                kind="severe",
                severity="high",
                status="resolved",
                evidence=[{"rule": "pain at or above 9"}],
                created_at=_at(-3, 1),
                updated_at=_at(-3, 2),
                acknowledged_at=_at(-3, 1) + timedelta(minutes=10),
                acknowledged_by_id=world.bob_id,
                resolved_at=_at(-3, 2),
                resolved_by_id=world.bob_id,
                resolution_note=RESOLUTION,
            )
        )


def _texts(ctx: Context, world: World, checkin_id: int) -> None:
    at = _at(-3)
    rows = [
        (
            "outbound",
            world.alice_id,
            None,
            ALICE,
            FROM_NUMBER,
            "How tired have you felt?",
            "checkin",
        ),
        ("inbound", world.alice_id, None, FROM_NUMBER, ALICE, f"9 - {ALICE_NOTE}", "patient"),
        ("outbound", None, world.bob_id, BOB, FROM_NUMBER, "checkin alert K7Q2X9", "alert"),
        ("inbound", None, None, FROM_NUMBER, STRANGER, "wrong number?", "unknown_sender"),
        ("inbound", world.erin_id, None, FROM_NUMBER, ERIN, "Erin here: 3", "patient"),
    ]
    with ctx.db.session() as session:
        for n, (direction, patient_id, staff_id, to, sender, body, purpose) in enumerate(rows):
            session.add(
                Message(
                    direction=direction,
                    patient_id=patient_id,
                    staff_id=staff_id,
                    checkin_id=checkin_id if patient_id == world.alice_id else None,
                    to_number=to,
                    from_number=sender,
                    body=body,
                    purpose=purpose,
                    status="received" if direction == "inbound" else "delivered",
                    twilio_sid="SMalice0001" if n == 1 else f"SMother{n:04d}",
                    created_at=at + timedelta(minutes=n),
                    sent_at=at + timedelta(minutes=n) if direction == "outbound" else None,
                )
            )
