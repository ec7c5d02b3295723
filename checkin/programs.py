"""Programs (clinics). A deployment starts with one, created on first use."""

from __future__ import annotations

import os
from datetime import datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin.models import Program, Schedule
from checkin.quiet import DEFAULT_QUIET_END, DEFAULT_QUIET_START

DEFAULT_PROGRAM_NAME = "Care Team"
# Shown to patients in every HELP reply; CLINICAL.md requires a support contact there.
DEFAULT_SUPPORT_CONTACT = "your clinic"
# Issue 3: every patient gets daily_symptoms at 09:00 local unless a schedule says otherwise.
DEFAULT_CHECKIN_TIME = time(9, 0)


def default_program(session: Session, now: datetime) -> Program:
    """The first program, created with the program-wide daily check-in on first use.

    CHECKIN_PROGRAM_NAME and CHECKIN_SUPPORT_CONTACT name it; both are shown to patients, so
    they must not name a diagnosis or a drug ("Neurology Care Team", not "MS Ketamine Clinic").
    """
    program = session.scalar(select(Program).order_by(Program.id).limit(1))
    if program is not None:
        return program
    program = Program(
        name=os.environ.get("CHECKIN_PROGRAM_NAME") or DEFAULT_PROGRAM_NAME,
        support_contact=os.environ.get("CHECKIN_SUPPORT_CONTACT") or DEFAULT_SUPPORT_CONTACT,
        created_at=now,
    )
    session.add(program)
    session.flush()
    session.add(
        Schedule(
            program_id=program.id,
            flow="daily_symptoms",
            local_time=DEFAULT_CHECKIN_TIME,
            created_at=now,
        )
    )
    session.flush()
    return program


class ProgramError(ValueError):
    pass


def set_texting_hours(program: Program, start: time, until: time) -> None:
    """Quiet hours may be made longer, never shorter than CLINICAL.md's 21:00-08:00."""
    if start < DEFAULT_QUIET_END:
        raise ProgramError(f"texting cannot start before {DEFAULT_QUIET_END:%H:%M} (CLINICAL.md)")
    if until > DEFAULT_QUIET_START:
        raise ProgramError(f"texting cannot go past {DEFAULT_QUIET_START:%H:%M} (CLINICAL.md)")
    if until <= start:
        raise ProgramError(f"--until {until:%H:%M} must be after --from {start:%H:%M}")
    program.quiet_end, program.quiet_start = start, until
