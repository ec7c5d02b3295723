"""`checkin demo` / `make run`: SQLite, console SMS, web and scheduler in one process.

Seeds a program, two staff members and three patients with four months of history, then serves
http://127.0.0.1:5000 and ticks the scheduler in a background thread. Texts are printed.
The story a first look shows: Chris's pain has worsened over the last days (an open
`worsening` alert, found by the same trend rules a reply runs) and Beatriz texted something
that opened a `crisis` alert. Alice is quiet, ready to be played in the patient simulator.
"""

from __future__ import annotations

import os
import random
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin import alerts, crisis, evaluation, flows, outbox, scheduler, schedules, trends
from checkin.catalog import render
from checkin.config import load_settings
from checkin.context import Context, make_context
from checkin.migrate import upgrade
from checkin.models import Answer, CheckIn, Message, Patient, TreatmentEvent
from checkin.patients import NewPatient, enrol
from checkin.programs import default_program
from checkin.staff import add as add_staff

DEMO_PHONES = ("+16175550101", "+13105550102", "+13125550103")
DEMO_NAMES = (("Alice Demo", "en"), ("Beatriz Demo", "es"), ("Chris Demo", "en"))
# Demo patients live where it is daytime when the demo is first seeded, so the loop can be
# tried at any hour without meeting quiet hours (which are never relaxed, not even here).
DEMO_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Europe/London",
    "America/Sao_Paulo",
)
DEMO_CLINICIAN_PHONE = "+16175550199"
WORSENING_PHONE = DEMO_PHONES[2]  # Chris: pain up over the last days
WORSENING_DAYS = 3  # the last days whose pain is well above the months before
HISTORY_DAYS = 120  # four months of check-ins: enough for the 90-day charts and more
INFUSION_DAYS_AGO = (110, 82, 54, 26)  # every four weeks, as clinics give boosters
MISSED_SHARE = 0.12  # about 88% answered, a little above CLINICAL.md's 80% target
TRANSCRIPT_DAYS = 14  # the texts themselves are seeded for the last two weeks
DEMO_FROM = "+15005550006"  # config.DEMO_FROM_NUMBER
CRISIS_PHONE = DEMO_PHONES[1]  # Beatriz: texted something that opened a crisis alert
CRISIS_TEXT = "ya no puedo más, quiero morirme"
DEMO_TICK_SECONDS = "5"


def run_demo(host: str, port: int) -> None:
    os.environ["CHECKIN_DEMO"] = "1"
    os.environ["CHECKIN_SMS_BACKEND"] = "console"  # never a real text from the demo
    os.environ.setdefault("CHECKIN_PUBLIC_URL", f"http://{host}:{port}")
    os.environ.setdefault("CHECKIN_SCHEDULER_TICK_SECONDS", DEMO_TICK_SECONDS)
    os.environ.setdefault("CHECKIN_PROGRAM_NAME", "Neuro Care Team")
    os.environ.setdefault("CHECKIN_SUPPORT_CONTACT", "617-555-0100")
    settings = load_settings()
    upgrade(settings.database_url)
    ctx = make_context(settings)
    seeded = seed(ctx)
    _start_scheduler_thread(ctx)
    _print_banner(host, port, seeded)
    from checkin import create_app

    create_app(settings=settings).run(host=host, port=port, threaded=True, use_reloader=False)


def seed(ctx: Context) -> bool:
    """Create the demo world once; returns False when it was already there."""
    pages: list[Message] = []
    with ctx.db.session() as session:
        if session.scalar(select(Patient.id).limit(1)) is not None:
            return False
        now = ctx.clock()
        add_staff(
            session,
            email="carol@example.org",
            name="Carol Admin",
            role="admin",
            phone=None,
            on_call=False,
            password="demo-password-carol",
            now=now,
            actor="demo",
        )
        add_staff(
            session,
            email="bob@example.org",
            name="Bob Clinician",
            role="clinician",
            phone=DEMO_CLINICIAN_PHONE,
            on_call=True,
            password="demo-password-bob",
            now=now,
            actor="demo",
        )
        for new in demo_patients(now):
            patient = enrol(
                session,
                new,
                now - timedelta(days=HISTORY_DAYS + 1),
                actor="demo",
                sender=ctx.settings.sender,
                welcome=False,
            )
            _history(session, patient, now)
            if patient.phone == WORSENING_PHONE:
                pages += _worsening_alerts(session, patient, now, alerts.Pager.of(ctx))
            elif patient.phone == CRISIS_PHONE:
                pages += _crisis_alert(session, patient, now, alerts.Pager.of(ctx))
        _clinic_schedules(session, now)
    # Pages go out once the alerts are committed, as after a webhook (printed in the demo).
    outbox.deliver_many(ctx, [page.id for page in pages])
    return True


def _worsening_alerts(
    session: Session, patient: Patient, now: datetime, pager: alerts.Pager
) -> list[Message]:
    """Run the trend rules on the seeded pain history, as a reply's answers would."""
    session.flush()
    params = evaluation.params_for(session, patient)
    history = evaluation.recent_readings(session, patient.id, "pain", trends.history_needed(params))
    pages: list[Message] = []
    for finding in trends.evaluate("pain", history, params):
        evidence = {**finding.evidence, "rule": finding.rule}
        if history and history[-1].checkin_id is not None:
            evidence["checkin_id"] = history[-1].checkin_id
        _, queued = alerts.raise_alert(
            session, patient, finding.kind, finding.severity, evidence, now, pager
        )
        pages += queued
    return pages


def _crisis_alert(
    session: Session, patient: Patient, now: datetime, pager: alerts.Pager
) -> list[Message]:
    """The patient's text and the crisis alert it opened, as the webhook records them."""
    at = now - timedelta(hours=1)
    text = Message(
        direction="inbound",
        patient_id=patient.id,
        to_number=pager.sms_from,
        from_number=patient.phone,
        body=CRISIS_TEXT,
        purpose="crisis",
        status="received",
        twilio_sid="SMdemo" + "0" * 26,
        created_at=at,
    )
    session.add(text)
    session.flush()
    matched = crisis.detect(CRISIS_TEXT) or CRISIS_TEXT
    evidence = {"matched": matched, "message_id": text.id, "phrase_list": crisis.LIST_VERSION}
    _, pages = alerts.raise_alert(session, patient, "crisis", "urgent", evidence, at, pager)
    return pages


def _clinic_schedules(session: Session, now: datetime) -> None:
    """What a clinic would add on top of the daily default (see README, "Set up a clinic")."""
    program = default_program(session, now)
    schedules.add(
        session,
        program,
        flow="weekly_mood",
        local_time=time(10, 0),
        days="mon",
        patient=None,
        now=now,
        actor="demo",
    )
    schedules.add(
        session,
        program,
        flow="post_infusion",
        local_time=time(10, 0),
        days=schedules.parse_days(None),
        patient=None,
        now=now,
        actor="demo",
        day_offsets="1",
    )


def demo_patients(now: datetime) -> list[NewPatient]:
    def daytime(zone: str) -> bool:
        return 10 <= now.astimezone(ZoneInfo(zone)).hour < 18

    zones = [z for z in DEMO_ZONES if daytime(z)] or list(DEMO_ZONES)
    return [
        NewPatient(phone, name, zones[i % len(zones)], language)
        for i, (phone, (name, language)) in enumerate(zip(DEMO_PHONES, DEMO_NAMES, strict=True))
    ]


def _history(session: Session, patient: Patient, now: datetime) -> None:
    """Four months of plausible check-ins, so the charts, response rates and exports have a
    story: an infusion every four weeks with mood lifting for about ten days after it
    (CLINICAL.md "Ketamine follow-up"), a weekly PHQ-2, some unanswered days, and the texts
    themselves for the last two weeks."""
    rng = random.Random(patient.phone)
    zone = ZoneInfo(patient.timezone)
    today = now.astimezone(zone).date()
    infusions = [today - timedelta(days=d) for d in INFUSION_DAYS_AGO]
    for day in infusions:
        session.add(
            TreatmentEvent(
                patient_id=patient.id,
                kind="infusion",
                occurred_on=day,
                recorded_by="demo",
                created_at=datetime.combine(day, time(16), tzinfo=zone),
            )
        )
    for days_ago in range(HISTORY_DAYS, 0, -1):
        day = today - timedelta(days=days_ago)
        since = min(((day - i).days for i in infusions if i < day), default=99)
        answered = days_ago <= WORSENING_DAYS or rng.random() > MISSED_SHARE
        values = _day_values(rng, since) if answered else {}
        if patient.phone == WORSENING_PHONE and days_ago <= WORSENING_DAYS:
            # Past every usual day (at most 5) and short of severe (9): 7, then 8, 8.
            values["pain"] = 7 if days_ago == WORSENING_DAYS else 8
        _checkin(session, patient, day, "daily_symptoms", values, days_ago <= TRANSCRIPT_DAYS)
        if day.weekday() == 0:  # the weekly PHQ-2 on Mondays
            phq = _phq2(rng, since) if answered else {}
            _checkin(session, patient, day, "weekly_mood", phq, days_ago <= TRANSCRIPT_DAYS)


def _day_values(rng: random.Random, since_infusion: int) -> dict[str, int]:
    lift = max(0, 3 - since_infusion // 4) if since_infusion >= 1 else 0  # gone by ~day 12
    noise = (-1, 0, 0, 1)
    return {
        "fatigue": _clamp(5 - lift // 2 + rng.choice(noise), 10),
        "pain": _clamp(4 - lift // 2 + rng.choice(noise), 10),
        "mood": _clamp(5 + lift + rng.choice(noise), 10),
    }


def _phq2(rng: random.Random, since_infusion: int) -> dict[str, int]:
    low = since_infusion <= 10
    interest = _clamp(rng.choice((0, 1, 1) if low else (1, 1, 2)), 3)
    down = _clamp(rng.choice((0, 1) if low else (1, 2)), 3)
    return {"phq2_interest": interest, "phq2_down": down, "phq2_total": interest + down}


def _clamp(value: int, top: int) -> int:
    return max(0, min(top, value))


def _checkin(
    session: Session,
    patient: Patient,
    day: date,
    flow_name: str,
    values: dict[str, int],
    with_texts: bool,
) -> None:
    """One finished check-in: completed with `values`, or expired with every answer missing."""
    zone = ZoneInfo(patient.timezone)
    at = time(9) if flow_name == "daily_symptoms" else time(10)
    due = datetime.combine(day, at, tzinfo=zone)
    flow = flows.current(flow_name)
    measures = [m for m in flow_measures(flow_name)]
    checkin = CheckIn(
        patient_id=patient.id,
        flow=flow.name,
        flow_version=flow.version,
        idempotency_key=f"{patient.id}:{flow.name}:{day}:{at:%H:%M}",
        local_date=day,
        due_at=due,
        expires_at=datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone),
        status="completed" if values else "expired",
        state={},
        sent_at=due,
        completed_at=due + timedelta(minutes=7) if values else None,
        created_at=due,
    )
    session.add(checkin)
    session.flush()
    for i, measure in enumerate(measures):
        value = values.get(measure)
        session.add(
            Answer(
                checkin_id=checkin.id,
                patient_id=patient.id,
                measure=measure,
                value=value,
                status="answered" if value is not None else "missing",
                raw_text=str(value) if value is not None and measure != "phq2_total" else None,
                recorded_at=due + timedelta(minutes=2 + i),
            )
        )
    if with_texts:
        _texts(session, patient, checkin, values, due)


def flow_measures(flow_name: str) -> list[str]:
    if flow_name == "weekly_mood":
        return ["phq2_interest", "phq2_down", "phq2_total"]
    return ["fatigue", "pain", "mood"]


def _texts(
    session: Session, patient: Patient, checkin: CheckIn, values: dict[str, int], due: datetime
) -> None:
    """The conversation as the patient's phone shows it (questions, replies, thanks)."""
    asked = [m for m in flow_measures(checkin.flow) if m != "phq2_total"]
    lines: list[tuple[str, str, str]] = []
    for measure in asked:
        lines.append(("outbound", render(f"ask_{measure}", patient.language, {}), "checkin"))
        if measure in values:
            lines.append(("inbound", str(values[measure]), "patient"))
        else:
            break
    if values:
        lines.append(("outbound", render("thanks", patient.language, {}), "reply"))
    for i, (direction, body, purpose) in enumerate(lines):
        outbound = direction == "outbound"
        session.add(
            Message(
                direction=direction,
                patient_id=patient.id,
                checkin_id=checkin.id,
                to_number=patient.phone if outbound else DEMO_FROM,
                from_number=DEMO_FROM if outbound else patient.phone,
                body=body,
                purpose=purpose,
                status="delivered" if outbound else "received",
                created_at=due + timedelta(minutes=i),
            )
        )


def _start_scheduler_thread(ctx: Context) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    clock = BackgroundScheduler(timezone="UTC")
    clock.add_job(
        scheduler.tick,
        IntervalTrigger(seconds=ctx.settings.scheduler_tick_seconds),
        args=[ctx],
        max_instances=1,
        coalesce=True,
    )
    clock.start()


def _print_banner(host: str, port: int, seeded: bool) -> None:
    alice = DEMO_PHONES[0]
    env = "CHECKIN_DEMO=1"
    click.echo(f"""
checkin demo {"(seeded demo data)" if seeded else "(existing demo data)"}
  web:      http://{host}:{port}/  (health: http://{host}:{port}/healthz)
  texts are printed here instead of being sent.

In another terminal, from this folder:
  start a check-in:   {env} .venv/bin/checkin send-now --phone {alice} --flow daily_symptoms
  play the patient:   {env} .venv/bin/checkin text --phone {alice} "7"
  try a keyword:      {env} .venv/bin/checkin text --phone {alice} "HELP"
  export answers:     {env} .venv/bin/checkin export observations --format csv
Staff sign-in at http://{host}:{port}/ :
  clinician bob@example.org / demo-password-bob (on call; pages are printed as texts to
  {DEMO_CLINICIAN_PHONE}), admin carol@example.org / demo-password-carol
""")
