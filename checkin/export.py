"""Exports of observations, alerts, messages and check-ins as CSV or JSON, for the CLI and the
admin page (no Flask here), identified or de-identified for research.

Identified exports keep the contract's columns (DESIGN.md: observations at least
`phone,measure,value,recorded_at,checkin_id`; alerts at least
`phone,kind,severity,status,created_at`). A de-identified export (docs/exports.md says what it
keeps and why) drops names, phone numbers and free text, names each patient by a pseudonym and
moves each patient's dates by a whole number of days. Both come from one fresh random key per
export that is never stored, so pseudonyms agree within one export and differ between two.

Filters are UTC days (`start` and `end` both included), one patient, a program and a status.
Every export is audited by its caller through `record`: who, kind, format, filters,
de-identified or not, and the row count.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from checkin import audit
from checkin.models import Alert, Answer, CheckIn, Message, Patient, StaffUser, TreatmentEvent

KINDS = ("observations", "alerts", "messages", "checkins")
FORMATS = ("csv", "json")
# De-identified dates move by 1 to 180 days, earlier or later, never 0 (an offset of 0 would
# leave a patient's real dates in the file). Half a year blurs season and calendar events
# while keeping day-by-day gaps exact.
MAX_SHIFT_DAYS = 180
# 48 bits of HMAC: a collision among 100,000 check-ins in one export is about 1 in 50,000.
TOKEN_HEX = 12


class ExportError(ValueError):
    """A one-line reason an export cannot be made as asked."""


# --- filters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    start: date | None = None  # first UTC day included
    end: date | None = None  # last UTC day included
    patient_id: int | None = None
    program_id: int | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.end < self.start:
            raise ExportError(f"the to date {self.end} is before the from date {self.start}")

    @property
    def since(self) -> datetime | None:
        return _utc_midnight(self.start) if self.start else None

    @property
    def before(self) -> datetime | None:
        return _utc_midnight(self.end + timedelta(days=1)) if self.end else None

    def describe(self) -> dict[str, Any]:
        """The filters for the audit row: a patient as `patient:ID`, never a phone number."""
        shown = {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "patient": f"patient:{self.patient_id}" if self.patient_id else None,
            "program": self.program_id,
            "status": self.status,
        }
        return {k: v for k, v in shown.items() if v is not None}

    def window(self, column: InstrumentedAttribute[datetime]) -> list[ColumnElement[bool]]:
        where = []
        if self.since:
            where.append(column >= self.since)
        if self.before:
            where.append(column < self.before)
        return where


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


# --- de-identification ----------------------------------------------------------------------


class Pseudonyms:
    """One export's secret. The key is random, lives only in memory for this export, and is
    never logged or audited: nobody, not even an admin with the database, can link two
    de-identified exports or turn a pseudonym back into a patient."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _digest(self, label: str) -> bytes:
        return hmac.new(self._key, label.encode(), hashlib.sha256).digest()

    def patient(self, patient_id: int) -> str:
        return "P-" + self._digest(f"patient:{patient_id}").hex()[:TOKEN_HEX]

    def token(self, kind: str, ident: int) -> str:
        """A stand-in for a database id (a check-in, an alert): rows of one export still
        group by it, but it cannot be looked up."""
        return f"{kind[0].upper()}-" + self._digest(f"{kind}:{ident}").hex()[:TOKEN_HEX]

    def offset(self, patient_id: int) -> timedelta:
        """Whole days, in -MAX..-1 or 1..MAX, the same for every row of this patient."""
        draw = int.from_bytes(self._digest(f"shift:{patient_id}")[:8], "big")
        n = draw % (2 * MAX_SHIFT_DAYS)
        return timedelta(days=n - MAX_SHIFT_DAYS if n < MAX_SHIFT_DAYS else n - MAX_SHIFT_DAYS + 1)


# --- what each kind exports -----------------------------------------------------------------

# (the patient the row is about, or None; the row's values as Python objects)
Row = tuple[int | None, dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    columns: tuple[str, ...]
    query: Callable[[Session, Filters], Iterator[Row]]
    # When de-identified: dates and times moved by the patient's offset ...
    shifted: frozenset[str] = frozenset()
    # ... identifiers and free text that can carry them left out ...
    dropped: frozenset[str] = frozenset({"phone"})
    # ... and database ids replaced by this export's tokens, under a new column name.
    tokens: Mapping[str, str] = field(default_factory=dict)

    def deidentified_columns(self) -> list[str]:
        kept = [self.tokens.get(c, c) for c in self.columns if c not in self.dropped]
        return ["patient", *kept]

    def deidentify(self, pseudonyms: Pseudonyms, patient_id: int, row: dict[str, Any]) -> Row:
        offset = pseudonyms.offset(patient_id)
        out: dict[str, Any] = {"patient": pseudonyms.patient(patient_id)}
        for column in self.columns:
            value = row[column]
            if column in self.dropped:
                continue
            if column in self.tokens and value is not None:
                out[self.tokens[column]] = pseudonyms.token(self.tokens[column], value)
            elif column in self.tokens:
                out[self.tokens[column]] = None
            else:
                out[column] = value + offset if column in self.shifted and value else value
        return patient_id, out


def _observations(session: Session, f: Filters) -> Iterator[Row]:
    stmt = (
        select(Answer, CheckIn.flow, Patient.phone)
        .join(CheckIn, CheckIn.id == Answer.checkin_id)
        .join(Patient, Patient.id == Answer.patient_id)
        .where(*_scope(f, Answer.patient_id, Answer.status), *f.window(Answer.recorded_at))
        .order_by(Answer.recorded_at, Answer.id)
    )
    for answer, flow, phone in session.execute(stmt):
        yield (
            answer.patient_id,
            {
                "phone": phone,
                "measure": answer.measure,
                "value": answer.value,
                "status": answer.status,
                "recorded_at": answer.recorded_at,
                "checkin_id": answer.checkin_id,
                "flow": flow,
                "note": answer.note,
                "raw_text": answer.raw_text,
            },
        )


def _alerts(session: Session, f: Filters) -> Iterator[Row]:
    stmt = (
        select(Alert, Patient.phone)
        .join(Patient, Patient.id == Alert.patient_id)
        .where(*_scope(f, Alert.patient_id, Alert.status), *f.window(Alert.created_at))
        .order_by(Alert.created_at, Alert.id)
    )
    for alert, phone in session.execute(stmt):
        yield (
            alert.patient_id,
            {
                "phone": phone,
                "ref": alert.ref,
                "kind": alert.kind,
                "severity": alert.severity,
                "status": alert.status,
                "created_at": alert.created_at,
                "acknowledged_at": alert.acknowledged_at,
                "resolved_at": alert.resolved_at,
                "resolution_note": alert.resolution_note,
            },
        )


def _messages(session: Session, f: Filters) -> Iterator[Row]:
    # A program's texts are its patients' and its staff's (pages, ACK replies); a text from a
    # number nobody enrolled belongs to no program and only a deployment-wide export has it.
    stmt = (
        select(Message)
        .outerjoin(Patient, Patient.id == Message.patient_id)
        .outerjoin(StaffUser, StaffUser.id == Message.staff_id)
        .where(*f.window(Message.created_at))
        .order_by(Message.created_at, Message.id)
    )
    if f.program_id is not None:
        stmt = stmt.where(
            or_(Patient.program_id == f.program_id, StaffUser.program_id == f.program_id)
        )
    if f.patient_id is not None:
        stmt = stmt.where(Message.patient_id == f.patient_id)
    if f.status is not None:
        stmt = stmt.where(Message.status == f.status)
    for message in session.scalars(stmt):
        phone = message.from_number if message.direction == "inbound" else message.to_number
        yield (
            message.patient_id,
            {
                "phone": phone,
                "direction": message.direction,
                "purpose": message.purpose,
                "body": message.body,
                "status": message.status,
                "twilio_sid": message.twilio_sid,
                "error_code": message.error_code,
                "error_message": message.error_message,
                "attempts": message.attempts,
                "created_at": message.created_at,
                "sent_at": message.sent_at,
                "checkin_id": message.checkin_id,
            },
        )


def _checkins(session: Session, f: Filters) -> Iterator[Row]:
    counts = _answer_counts()
    stmt = (
        select(
            CheckIn,
            Patient.phone,
            TreatmentEvent.occurred_on,
            counts.c.answered,
            counts.c.skipped,
            counts.c.missing,
        )
        .join(Patient, Patient.id == CheckIn.patient_id)
        .outerjoin(TreatmentEvent, TreatmentEvent.id == CheckIn.treatment_event_id)
        .outerjoin(counts, counts.c.checkin_id == CheckIn.id)
        .where(*_scope(f, CheckIn.patient_id, CheckIn.status), *f.window(CheckIn.due_at))
        .order_by(CheckIn.due_at, CheckIn.id)
    )
    for checkin, phone, infusion_day, answered, skipped, missing in session.execute(stmt):
        yield (
            checkin.patient_id,
            {
                "phone": phone,
                "checkin_id": checkin.id,
                "flow": checkin.flow,
                "flow_version": checkin.flow_version,
                "status": checkin.status,
                "local_date": checkin.local_date,
                "due_at": checkin.due_at,
                "sent_at": checkin.sent_at,
                "completed_at": checkin.completed_at,
                "answered": answered or 0,
                "skipped": skipped or 0,
                "missing": missing or 0,
                # Relative to the infusion, so it survives de-identification unchanged.
                "days_after_infusion": (
                    (checkin.local_date - infusion_day).days if infusion_day else None
                ),
            },
        )


def _answer_counts() -> Any:
    def count(status: str) -> Any:
        return func.sum(case((Answer.status == status, 1), else_=0)).label(status)

    return (
        select(Answer.checkin_id, count("answered"), count("skipped"), count("missing"))
        .group_by(Answer.checkin_id)
        .subquery()
    )


def _scope(
    f: Filters,
    patient_column: InstrumentedAttribute[int],
    status_column: InstrumentedAttribute[str],
) -> list[ColumnElement[bool]]:
    """Program, patient and status conditions for a query already joined to Patient."""
    where: list[ColumnElement[bool]] = []
    if f.program_id is not None:
        where.append(Patient.program_id == f.program_id)
    if f.patient_id is not None:
        where.append(patient_column == f.patient_id)
    if f.status is not None:
        where.append(status_column == f.status)
    return where


TIMES = frozenset({"recorded_at", "created_at", "acknowledged_at", "resolved_at", "sent_at"})
SPECS: dict[str, Kind] = {
    "observations": Kind(
        ("phone", "measure", "value", "status", "recorded_at", "checkin_id", "flow")
        + ("note", "raw_text"),
        _observations,
        shifted=TIMES,
        dropped=frozenset({"phone", "note", "raw_text"}),
        tokens={"checkin_id": "checkin"},
    ),
    "alerts": Kind(
        ("phone", "ref", "kind", "severity", "status", "created_at", "acknowledged_at")
        + ("resolved_at", "resolution_note"),
        _alerts,
        shifted=TIMES,
        dropped=frozenset({"phone", "resolution_note"}),
        tokens={"ref": "alert"},
    ),
    "messages": Kind(
        ("phone", "direction", "purpose", "body", "status", "twilio_sid", "error_code")
        + ("error_message", "attempts", "created_at", "sent_at", "checkin_id"),
        _messages,
        shifted=TIMES,
        # Twilio's SID finds the text (and the number) in Twilio's console; Twilio's error
        # messages quote the number.
        dropped=frozenset({"phone", "body", "twilio_sid", "error_message"}),
        tokens={"checkin_id": "checkin"},
    ),
    "checkins": Kind(
        ("phone", "checkin_id", "flow", "flow_version", "status", "local_date", "due_at")
        + ("sent_at", "completed_at", "answered", "skipped", "missing", "days_after_infusion"),
        _checkins,
        shifted=frozenset({"local_date", "due_at", "sent_at", "completed_at"}),
        tokens={"checkin_id": "checkin"},
    ),
}
assert set(SPECS) == set(KINDS)


# --- building, rendering, auditing ----------------------------------------------------------


@dataclass(frozen=True)
class Export:
    kind: str
    columns: list[str]
    rows: list[dict[str, Any]]
    deidentified: bool


def build(
    session: Session,
    kind: str,
    filters: Filters,
    *,
    deidentify: bool = False,
    pseudonyms: Pseudonyms | None = None,
) -> Export:
    """One export's rows, oldest first; de-identified rows are grouped by patient instead,
    since rows of different patients in real-time order would let a reader line their
    shifted dates back up."""
    spec = SPECS.get(kind)
    if spec is None:
        raise ExportError(f"unknown export {kind!r} (known: {', '.join(KINDS)})")
    rows = spec.query(session, filters)
    if not deidentify:
        return Export(kind, list(spec.columns), [_plain(r) for _, r in rows], False)
    secret = pseudonyms or Pseudonyms()
    # A text to staff or from a stranger is about no patient: it has no offset and is left out.
    shifted = [spec.deidentify(secret, pid, r) for pid, r in rows if pid is not None]
    shifted.sort(key=lambda row: row[1]["patient"])  # stable: each patient's rows stay in order
    return Export(kind, spec.deidentified_columns(), [_plain(r) for _, r in shifted], True)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()}


def render(export: Export, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(export.rows, indent=2) + "\n"
    if fmt != "csv":
        raise ExportError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=export.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(export.rows)
    return out.getvalue()


def record(
    session: Session,
    now: datetime,
    actor: str,
    *,
    kind: str,
    fmt: str,
    filters: Filters,
    deidentified: bool,
    rows: int,
) -> None:
    """The audit row of one export. The program is the one exported (a program's admin sees
    it in their log); an export of every program belongs to none."""
    program_id = filters.program_id
    if program_id is None and filters.patient_id is not None:
        program_id = session.scalar(
            select(Patient.program_id).where(Patient.id == filters.patient_id)
        )
    audit.record(
        session,
        now,
        actor,
        "export",
        kind,
        program_id=program_id,
        format=fmt,
        filters=filters.describe(),
        deidentified=deidentified,
        rows=rows,
    )


def filename(kind: str, fmt: str, deidentified: bool, day: date) -> str:
    """`checkin-observations-deidentified-2026-03-10.csv`: what and when, never who."""
    tag = "-deidentified" if deidentified else ""
    return f"checkin-{kind}{tag}-{day.isoformat()}.{fmt}"
