"""GET /schedules (everyone), POST, PUT and DELETE /schedules/{id} (admins).

The same checkin.schedules functions as the schedule pages: quiet hours and flows are checked
there, an edit is a new schedule in place of the old one (the answer carries the new id), and
removing one drops the check-ins it planned but has not sent.
"""

from __future__ import annotations

from flask import url_for
from sqlalchemy import select

from checkin import schedules
from checkin.api.auth import admin_only, caller, context
from checkin.api.errors import fail
from checkin.api.paging import fetch
from checkin.api.patients import ID
from checkin.api.schemas import (
    NewScheduleIn,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    ScheduleQuery,
)
from checkin.api.scope import in_program
from checkin.api.spec import documented
from checkin.api.v1 import bp
from checkin.models import Patient, Program, Schedule


@bp.get("/schedules")
@documented(200, SchedulePage, 404, tags=("schedules",))
def list_schedules(query: ScheduleQuery) -> SchedulePage:
    """The schedules in force: the program's, then patients' own (`patient_id`: one patient's)."""
    stmt = select(Schedule).where(
        Schedule.program_id == caller().program_id, Schedule.active.is_(True)
    )
    with context().db.session() as db:
        if query.patient_id is not None:
            in_program(db, Patient, query.patient_id)
            stmt = stmt.where(Schedule.patient_id == query.patient_id)
        ordered = stmt.order_by(
            Schedule.patient_id.is_not(None), Schedule.patient_id, Schedule.flow, Schedule.id
        )
        page = fetch(db, ordered, query)
        items = [schedule_out(s) for s in page.rows]
    return SchedulePage(items=items, **page.meta())


@bp.get(f"/schedules/<{ID}:schedule_id>")
@documented(200, ScheduleOut, 404, tags=("schedules",))
def read_schedule(schedule_id: int) -> ScheduleOut:
    """One schedule of the program, in force or retired (`active`)."""
    with context().db.session() as db:
        return schedule_out(in_program(db, Schedule, schedule_id))


@bp.post("/schedules")
@admin_only
@documented(201, ScheduleOut, 403, 404, tags=("schedules",))
def create_schedule(json: NewScheduleIn) -> tuple[ScheduleOut, int, dict[str, str]]:
    """Add a schedule for the whole program, or a patient's own (admins only)."""
    ctx = context()
    holder = caller()
    try:
        with ctx.db.session() as db:
            patient = None
            if json.patient_id is not None:
                patient = in_program(db, Patient, json.patient_id)
            program = db.get_one(Program, holder.program_id)
            added = schedules.add_spec(
                db, program, _spec(json), patient, now=ctx.clock(), actor=holder.email
            )
            out = schedule_out(added)
    except ValueError as exc:  # ScheduleError: quiet hours, dates, offsets
        fail(400, str(exc))
    return out, 201, {"Location": url_for("api.read_schedule", schedule_id=out.id)}


@bp.put(f"/schedules/<{ID}:schedule_id>")
@admin_only
@documented(200, ScheduleOut, 403, 404, tags=("schedules",))
def replace_schedule(schedule_id: int, json: ScheduleIn) -> ScheduleOut:
    """Change a schedule (admins only): the old one is retired and the answer is its
    replacement, with a new id, for the same patient (or the whole program)."""
    ctx = context()
    holder = caller()
    try:
        with ctx.db.session() as db:
            old = in_program(db, Schedule, schedule_id, Schedule.active.is_(True))
            patient = db.get(Patient, old.patient_id) if old.patient_id is not None else None
            program = db.get_one(Program, holder.program_id)
            new = schedules.replace(
                db, old, program, _spec(json), patient, now=ctx.clock(), actor=holder.email
            )
            return schedule_out(new)
    except ValueError as exc:
        fail(400, str(exc))


@bp.delete(f"/schedules/<{ID}:schedule_id>")
@admin_only
@documented(204, None, 403, 404, tags=("schedules",))
def remove_schedule(schedule_id: int) -> tuple[str, int]:
    """Remove a schedule (admins only); what it planned but has not sent is dropped."""
    ctx = context()
    with ctx.db.session() as db:
        old = in_program(db, Schedule, schedule_id, Schedule.active.is_(True))
        schedules.retire(db, old, ctx.clock(), actor=caller().email)
    return "", 204


def _spec(body: ScheduleIn) -> schedules.ScheduleSpec:
    offsets = ",".join(map(str, body.after_infusion)) if body.after_infusion else None
    days = ",".join(body.days) if body.days else ",".join(schedules.DAY_NAMES)
    return schedules.ScheduleSpec(
        body.flow,
        schedules.parse_time(body.time),
        days,
        offsets,
        body.start_date,
        body.end_date,
    )


def schedule_out(schedule: Schedule) -> ScheduleOut:
    infusion = schedule.kind == "infusion"
    return ScheduleOut.model_validate(
        {
            "id": schedule.id,
            "patient_id": schedule.patient_id,
            "kind": schedule.kind,
            "flow": schedule.flow,
            "time": f"{schedule.local_time:%H:%M}",
            "days": None if infusion else schedule.days.split(","),
            "after_infusion": schedules.parse_offsets(schedule.day_offsets or "")
            if infusion
            else None,
            "start_date": schedule.start_date,
            "end_date": schedule.end_date,
            "active": schedule.active,
            "created_at": schedule.created_at,
        }
    )
