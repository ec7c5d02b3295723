"""Program schedules (create, read, update, delete) with a live preview of the next sends,
and the program's texting hours.

The preview is the scheduler's own arithmetic (schedules.preview): local time in a chosen
zone, DST, quiet hours and one send per flow a day. It is a server-rendered fragment; a small
script (static/schedule-preview.js) refreshes it as the form changes, and without JavaScript
the "Preview" button shows the same thing on a full page.

An edit retires the old row and adds a new one, so past check-ins keep pointing at what was
actually asked, and a removed schedule's planned-but-unsent check-ins are dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from checkin import audit, schedules
from checkin.flows import FLOW_NAMES
from checkin.models import Patient, Program, Schedule
from checkin.phones import check_timezone
from checkin.programs import ProgramError, set_texting_hours
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import COMMON_ZONES, DAY_LABELS, all_zones, field, schedule_spec
from checkin.web.scope import in_program

# The preview looks this far ahead and lists at most this many sends.
PREVIEW_DAYS = 28
PREVIEW_LIMIT = 10
# A preview of an infusion-relative schedule assumes an infusion today.
ASSUMED_INFUSION_ID = 0


@bp.get("/schedules")
def schedule_list() -> str:
    staff = signed_in()
    with context().db.session() as db:
        program = db.get_one(Program, staff.program_id)
        rows = db.execute(
            select(Schedule, Patient)
            .outerjoin(Patient, Patient.id == Schedule.patient_id)
            .where(Schedule.program_id == staff.program_id, Schedule.active.is_(True))
            .order_by(Schedule.patient_id.is_not(None), Schedule.flow, Schedule.local_time)
        ).all()
    return render_template(
        "admin/schedules.html",
        program_rows=[s for s, p in rows if p is None],
        patient_rows=[(s, p) for s, p in rows if p is not None],
        program=program,
        day_labels=DAY_LABELS,
    )


@bp.get("/schedules/new")
def new_schedule() -> str:
    if request.args:
        return _form_page(request.args, schedule=None)
    values = MultiDict({"flow": FLOW_NAMES[0], "time": "09:00", "kind": "recurring"})
    values.setlist("days", list(DAY_LABELS))
    return _form_page(values, schedule=None)


@bp.post("/schedules/new")
def create_schedule() -> tuple[str, int] | Response:
    return _save(request.form, old_id=None)


@bp.get("/schedules/<int:schedule_id>/edit")
def edit_schedule(schedule_id: int) -> str:
    with context().db.session() as db:
        schedule = _program_schedule(db, schedule_id)
    values = request.args if request.args else _values_of(schedule)
    return _form_page(values, schedule=schedule)


@bp.post("/schedules/<int:schedule_id>/edit")
def update_schedule(schedule_id: int) -> tuple[str, int] | Response:
    return _save(request.form, old_id=schedule_id)


@bp.post("/schedules/<int:schedule_id>/remove")
def remove_schedule(schedule_id: int) -> Response:
    ctx = context()
    try:
        with ctx.db.session() as db:
            schedule = _program_schedule(db, schedule_id)
            schedules.retire(db, schedule, ctx.clock(), actor=signed_in().email)
            what = f"{schedule.flow.replace('_', ' ')} at {schedule.local_time:%H:%M}"
    except schedules.ScheduleError as exc:
        flash(f"Not done: {exc}.", "error")
    else:
        flash(f"Removed the {what} schedule; nothing more is planned from it.", "success")
    return redirect(url_for("admin.schedule_list"), code=303)


@bp.get("/schedules/preview")
def preview_fragment() -> str:
    """The preview alone, for static/schedule-preview.js to put in the form's live region."""
    return render_template("admin/_schedule_preview.html", **_preview(request.args))


@bp.post("/texting-hours")
def texting_hours() -> Response:
    ctx = context()
    start, until = field(request.form, "from", 5), field(request.form, "until", 5)
    try:
        with ctx.db.session() as db:
            program = db.get_one(Program, signed_in().program_id)
            set_texting_hours(program, schedules.parse_time(start), schedules.parse_time(until))
            audit.record(
                db,
                ctx.clock(),
                signed_in().email,
                "program.texting_hours",
                f"program:{program.id}",
                start=start,
                until=until,
            )
    except (ProgramError, schedules.ScheduleError) as exc:
        flash(f"Not saved: {exc}.", "error")
    else:
        flash(f"Scheduled texts now go out from {start} until {until}, local time.", "success")
    return redirect(url_for("admin.schedule_list"), code=303)


def _save(form: Any, old_id: int | None) -> tuple[str, int] | Response:
    ctx = context()
    staff = signed_in()
    try:
        spec = schedule_spec(form, form.getlist("days"))
        with ctx.db.session() as db:
            program = db.get_one(Program, staff.program_id)
            now = ctx.clock()
            if old_id is None:
                schedules.add_spec(db, program, spec, None, now=now, actor=staff.email)
            else:
                old = _program_schedule(db, old_id)
                schedules.replace(db, old, program, spec, None, now=now, actor=staff.email)
    except ValueError as exc:
        schedule = None
        if old_id is not None:
            with ctx.db.session() as db:
                schedule = _program_schedule(db, old_id)
        return _form_page(form, schedule=schedule, error=str(exc)), 400
    flash(f"Saved: {spec.flow.replace('_', ' ')} at {spec.local_time:%H:%M}.", "success")
    return redirect(url_for("admin.schedule_list"), code=303)


def _program_schedule(db: Session, schedule_id: int) -> Schedule:
    """An active program-wide schedule of the admin's program, else 404."""
    return in_program(
        db, Schedule, schedule_id, Schedule.patient_id.is_(None), Schedule.active.is_(True)
    )


def _values_of(schedule: Schedule) -> MultiDict[str, str]:
    values = MultiDict(
        {
            "flow": schedule.flow,
            "time": f"{schedule.local_time:%H:%M}",
            "kind": schedule.kind,
            "offsets": schedule.day_offsets or "",
            "start": schedule.start_date.isoformat() if schedule.start_date else "",
            "end": schedule.end_date.isoformat() if schedule.end_date else "",
        }
    )
    values.setlist("days", schedule.days.split(","))
    return values


def _form_page(values: Any, schedule: Schedule | None, error: str | None = None) -> str:
    flat = {k: values.get(k, "") for k in ("flow", "time", "kind", "offsets", "start", "end")}
    flat["days"] = ",".join(values.getlist("days"))
    return render_template(
        "admin/schedule_form.html",
        values=flat,
        schedule=schedule,
        error=error,
        flows=FLOW_NAMES,
        day_labels=DAY_LABELS,
        common_zones=COMMON_ZONES,
        all_zones=all_zones(),
        **_preview(values),
    )


def _preview(values: Any) -> dict[str, Any]:
    """The next sends the form's schedule would make in the chosen zone, or why it cannot."""
    ctx = context()
    zone_name = field(values, "zone", 64) or ctx.settings.digest_timezone
    out: dict[str, Any] = {"selected_zone": zone_name, "sends": [], "problem": None}
    try:
        zone = check_timezone(zone_name)
        spec = schedule_spec(values, values.getlist("days"))
        with ctx.db.session() as db:
            program = db.get_one(Program, signed_in().program_id)
            now = ctx.clock()
            spec = spec.checked(program)
            today = now.astimezone(zone).date()
            sends = schedules.preview(
                _sample_patient(zone_name, now),
                program,
                [spec.draft(program, None, now)],
                now,
                PREVIEW_DAYS,
                [(ASSUMED_INFUSION_ID, today)] if spec.day_offsets else [],
            )
    except ValueError as exc:
        out["problem"] = str(exc)
        return out
    out["sends"] = sends[:PREVIEW_LIMIT]
    out["infusion"] = bool(spec.day_offsets)
    return out


def _sample_patient(zone: str, now: datetime) -> Patient:
    """An unsaved, active patient in `zone`: the preview shows what any patient there gets."""
    return Patient(timezone=zone, status="active", paused_until=None, enrolled_at=now)
