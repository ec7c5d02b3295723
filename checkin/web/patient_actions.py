"""What staff do from a patient's page: pause or resume, start a check-in now, record an
infusion, change time zone and language, and (admins) the patient's own schedules.

Each action is a small POST (CSRF-checked) that calls the same domain function as the CLI,
inside one transaction, and goes back to the patient page with a one-line result. Clinicians
may do everything here but the schedules, which are configuration (admins only).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from checkin import patients, schedules
from checkin.models import Patient, Program, Schedule
from checkin.sendnow import start_now
from checkin.web import context
from checkin.web.auth import login_required, role_required, signed_in
from checkin.web.forms import field, required_date, schedule_spec
from checkin.web.patients import patient_in_program

bp = Blueprint("patient_actions", __name__, url_prefix="/patients/<int:patient_id>")

# An action: (session, patient, now, actor email) -> the one-line result shown to staff.
Action = Callable[[Session, Patient, datetime, str], str]


@bp.post("/pause")
@login_required
def pause(patient_id: int) -> Response:
    def act(db: Session, patient: Patient, now: datetime, actor: str) -> str:
        until = required_date(request.form, "until", "Pause until")
        patients.pause(db, patient, until, now, actor=actor)
        return f"Paused: nothing is sent to {patient.name} until the end of {until}."

    return _act(patient_id, act, "status")


@bp.post("/resume")
@login_required
def resume(patient_id: int) -> Response:
    def act(db: Session, patient: Patient, now: datetime, actor: str) -> str:
        patients.resume(db, patient, now, actor=actor)
        return f"Resumed: {patient.name} is {patient.status.replace('_', ' ')}."

    return _act(patient_id, act, "status")


@bp.post("/send-now")
@login_required
def send_now(patient_id: int) -> Response:
    ctx = context()
    with ctx.db.session() as db:
        phone = patient_in_program(db, patient_id).phone
    try:
        result = start_now(ctx, phone, field(request.form, "flow", 40), actor=signed_in().email)
    except ValueError as exc:
        flash(f"Not sent: {exc}.", "error")
    else:
        flash(f"Check-in {result}.", "success")
    return _back(patient_id, "status")


@bp.post("/infusions")
@login_required
def add_infusion(patient_id: int) -> Response:
    def act(db: Session, patient: Patient, now: datetime, actor: str) -> str:
        on = required_date(request.form, "date", "Infusion date")
        # Recording is for infusions given: a planned one that is cancelled would still
        # send "after your infusion" check-ins.
        if on > now.astimezone(ZoneInfo(patient.timezone)).date():
            raise patients.PatientError(f"the infusion date {on} is in the future")
        patients.add_infusion(db, patient, on, now, actor=actor)
        return f"Infusion on {on} recorded."

    return _act(patient_id, act, "status")


@bp.post("/settings")
@login_required
def change_settings(patient_id: int) -> Response:
    def act(db: Session, patient: Patient, now: datetime, actor: str) -> str:
        changed = patients.change_settings(
            db,
            patient,
            timezone=field(request.form, "timezone", 64),
            language=field(request.form, "language", 5),
            now=now,
            actor=actor,
        )
        if not changed:
            return "Nothing to change."
        return f"Saved: {' and '.join(c.replace('timezone', 'time zone') for c in changed)}."

    return _act(patient_id, act, "settings")


@bp.post("/schedules")
@role_required("admin")
def add_schedule(patient_id: int) -> Response:
    def act(db: Session, patient: Patient, now: datetime, actor: str) -> str:
        spec = schedule_spec(request.form, request.form.getlist("days"))
        program = db.get_one(Program, patient.program_id)
        schedules.add_spec(db, program, spec, patient, now=now, actor=actor)
        return f"{patient.name} now has their own {spec.flow.replace('_', ' ')} schedule."

    return _act(patient_id, act, "schedules")


@bp.post("/schedules/<int:schedule_id>/remove")
@role_required("admin")
def remove_schedule(patient_id: int, schedule_id: int) -> Response:
    def act(db: Session, patient: Patient, now: datetime, actor: str) -> str:
        own = select(Schedule).where(Schedule.id == schedule_id, Schedule.patient_id == patient.id)
        schedule = db.scalar(own)
        if schedule is None:
            raise schedules.ScheduleError(f"{patient.name} has no schedule {schedule_id}")
        schedules.retire(db, schedule, now, actor=actor)
        return "Schedule removed; the program's schedule for that flow applies again."

    return _act(patient_id, act, "schedules")


def _act(patient_id: int, action: Action, section: str) -> Response:
    """Run `action` on the patient (404 outside the staff member's program) in one
    transaction; a refusal is flashed and nothing is written."""
    ctx = context()
    try:
        with ctx.db.session() as db:
            patient = patient_in_program(db, patient_id)
            done = action(db, patient, ctx.clock(), signed_in().email)
    except ValueError as exc:
        flash(f"Not done: {exc}.", "error")
    else:
        flash(done, "success")
    return _back(patient_id, section)


def _back(patient_id: int, section: str) -> Response:
    url = url_for("patients.patient_page", patient_id=patient_id, _anchor=section)
    return redirect(url, code=303)
