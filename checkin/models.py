"""The data model. Conversation state lives here (CheckIn), never in a cookie.

Status columns hold readable strings; the allowed values are listed next to each column and
enforced by CHECK constraints so a typo cannot land in the database.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from checkin.clock import system_clock
from checkin.db import Base, UTCDateTime

PATIENT_STATUSES = ("active", "paused", "opted_out", "number_invalid")
STAFF_ROLES = ("admin", "clinician")
SCHEDULE_KINDS = ("recurring", "infusion")
CHECKIN_STATUSES = (
    "pending",  # planned, waiting for due_at
    "sending",  # claimed by a scheduler worker (lease_until bounds the claim)
    "open",  # first question sent, waiting for replies
    "completed",
    "expired",  # window ended with questions unanswered
    "skipped",  # not sent: patient inactive, or a duplicate of an open check-in
    "missed",  # the scheduler was down past the day's window
    "interrupted",  # a crisis paused the scripted questions
    "failed",  # the first text could not be delivered
)
ANSWER_STATUSES = ("answered", "skipped", "missing")
MESSAGE_DIRECTIONS = ("inbound", "outbound")
ALERT_STATUSES = ("open", "acknowledged", "resolved")
ALERT_SEVERITIES = ("urgent", "high", "routine")
CONSENT_KINDS = ("consent_given", "opted_out", "opted_in")
# How staff obtained consent at enrolment (the form's choices; CLINICAL.md "record prior
# express consent: when, how, the text shown").
CONSENT_METHODS = ("in_person", "phone_call", "written_form", "electronic_form")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now() -> datetime:
    return system_clock()


class Program(Base):
    """A clinic. Every patient and staff member belongs to exactly one."""

    __tablename__ = "programs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    support_contact: Mapped[str] = mapped_column(String(120))
    # CLINICAL.md "Quiet hours": 08:00-21:00 local (TCPA 47 CFR 64.1200(c)(1)); narrower only.
    quiet_end: Mapped[time] = mapped_column(Time, default=time(8, 0))
    quiet_start: Mapped[time] = mapped_column(Time, default=time(21, 0))
    # Trend-rule settings for the whole program (keys of trends.RuleParams).
    rule_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(_in("status", PATIENT_STATUSES), name="status"),
        CheckConstraint(_in("language", ("en", "es")), name="language"),
        # The patient list is a program's patients by name: a later page skips rows in this
        # order instead of sorting every patient.
        Index("ix_patients_program_id_name_id", "program_id", "name", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))  # IANA
    language: Mapped[str] = mapped_column(String(2), default="en")
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    paused_until: Mapped[date | None] = mapped_column(Date)
    consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    # This patient's own trend-rule settings, layered over the program's.
    rule_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")

    program: Mapped[Program] = relationship()


class StaffUser(Base):
    __tablename__ = "staff_users"
    __table_args__ = (CheckConstraint(_in("role", STAFF_ROLES), name="role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(20))
    on_call: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class Schedule(Base):
    """Ask `flow` at `local_time` in each patient's own zone, either on `days` of the week
    (kind 'recurring') or `day_offsets` days after each recorded infusion (kind 'infusion').

    patient_id NULL means the program default for every enrolled patient; a patient's own
    schedule for the same flow overrides it. Several times a day are several rows.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(_in("kind", SCHEDULE_KINDS), name="kind"),
        CheckConstraint("kind != 'infusion' OR day_offsets IS NOT NULL", name="offsets"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="recurring", server_default="recurring")
    day_offsets: Mapped[str | None] = mapped_column(String(120))  # "1,3,7,14" after infusion
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    flow: Mapped[str] = mapped_column(String(40))
    local_time: Mapped[time] = mapped_column(Time)
    days: Mapped[str] = mapped_column(String(40), default="mon,tue,wed,thu,fri,sat,sun")
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class TreatmentEvent(Base):
    __tablename__ = "treatment_events"
    __table_args__ = (UniqueConstraint("patient_id", "kind", "occurred_on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="infusion")
    occurred_on: Mapped[date] = mapped_column(Date)
    recorded_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class CheckIn(Base):
    """One patient's run through one flow: the conversation state, in the database."""

    __tablename__ = "checkins"
    __table_args__ = (
        CheckConstraint(_in("status", CHECKIN_STATUSES), name="status"),
        Index("ix_checkins_status_due_at", "status", "due_at"),
        Index("ix_checkins_patient_id_status", "patient_id", "status"),
        # The patient list's response rates: a page of patients' last 30 days, whatever plan
        # PostgreSQL caches for the prepared statement (bench/dashboard.py).
        Index("ix_checkins_patient_id_due_at", "patient_id", "due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id"))
    # The infusion an infusion-relative check-in follows (loss-of-response needs it).
    treatment_event_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_events.id"))
    flow: Mapped[str] = mapped_column(String(40))
    flow_version: Mapped[int] = mapped_column(Integer, default=1)
    # patient + flow + local date + slot: the unique key that makes planning idempotent.
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    local_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)

    patient: Mapped[Patient] = relationship()


class Answer(Base):
    """One measure from one check-in. A question never answered is 'missing', never 0."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("checkin_id", "measure"),
        CheckConstraint(_in("status", ANSWER_STATUSES), name="status"),
        CheckConstraint("(status = 'answered') = (value IS NOT NULL)", name="value_iff_answered"),
        Index("ix_answers_patient_id_measure_recorded_at", "patient_id", "measure", "recorded_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    checkin_id: Mapped[int] = mapped_column(ForeignKey("checkins.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    measure: Mapped[str] = mapped_column(String(40))
    value: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="answered")
    raw_text: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Message(Base):
    """Every SMS in or out. Outbound rows are saved before the send and updated after it."""

    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(_in("direction", MESSAGE_DIRECTIONS), name="direction"),
        CheckConstraint(_in("channel", ("sms", "email")), name="channel"),
        Index("ix_messages_status_send_after", "status", "send_after"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(10))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"))
    channel: Mapped[str] = mapped_column(String(10), default="sms", server_default="sms")
    # A phone number (E.164) for SMS, an address for email.
    to_number: Mapped[str] = mapped_column(String(254))
    from_number: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    # welcome, checkin, reply, keyword, crisis, alert, unknown_sender, patient (inbound)
    purpose: Mapped[str] = mapped_column(String(20))
    # Outbound: scheduled, queued, sending, sent, delivered, undelivered, failed, read, twiml;
    # inbound: received. Twilio's own words where Twilio reports them.
    status: Mapped[str] = mapped_column(String(20))
    twilio_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    send_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
        CheckConstraint(_in("severity", ALERT_SEVERITIES), name="severity"),
        # At most one open (unresolved) alert per patient and kind: new evidence is appended.
        Index(
            "uq_alerts_patient_id_kind_unresolved",
            "patient_id",
            "kind",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(12), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default="open")
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # When the alert went to the next tier for want of an acknowledgement.
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patient: Mapped[Patient] = relationship()


class AlertNotification(Base):
    __tablename__ = "alert_notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    channel: Mapped[str] = mapped_column(String(10))  # sms, email
    tier: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # 2 = escalation
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentEvent(Base):
    """Append-only history of consent: given at enrolment, withdrawn (STOP), given again."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(_in("kind", CONSENT_KINDS), name="kind"),
        CheckConstraint(f"method IS NULL OR {_in('method', CONSENT_METHODS)}", name="method"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    # staff_enrolment, csv_import, sms_keyword, twilio_opt_out_type, twilio_error_21610
    source: Mapped[str] = mapped_column(String(40))
    # For consent staff obtained: how (consent.CONSENT_METHODS) and when the patient agreed,
    # which can be before created_at (when it was recorded). CLINICAL.md: "when, how, the text
    # shown"; the text shown is `detail`.
    method: Mapped[str | None] = mapped_column(String(40))
    given_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(254))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only log of what people and the system saw and changed (HIPAA, CLINICAL.md).

    Database triggers (migration 0005) refuse UPDATE and DELETE on this table, so not even a
    bug in the app can rewrite history. A migration that rebuilds the table (SQLite batch
    mode) must create those triggers again.
    """

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The program the target belongs to, so each clinic's admins see their own log; NULL for
    # deployment-wide events (a sign-in attempt for an unknown email, a CLI export of all).
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), index=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SendRateSlot(Base):
    """Sends used in one window of CHECKIN_SEND_RATE_PER_SECOND, shared by every worker."""

    __tablename__ = "send_rate_slots"
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(Integer, default=0)


class SchedulerHeartbeat(Base):
    """When each scheduler worker last planned. A gap between the newest heartbeat and now
    is an outage: the planner looks back over it so slots it skipped are recorded as missed."""

    __tablename__ = "scheduler_heartbeats"
    worker: Mapped[str] = mapped_column(String(120), primary_key=True)
    last_tick_at: Mapped[datetime] = mapped_column(UTCDateTime)


WEBHOOK_DELIVERY_STATUSES = (
    "pending",  # waiting for its first try or the next retry (next_attempt_at)
    "sending",  # claimed by a worker (next_attempt_at bounds the claim)
    "delivered",  # the endpoint answered 2xx
    "failed",  # dead letter: retries used up, or the endpoint refused for good
)


class ApiToken(Base):
    """A staff member's personal API token. Only a SHA-256 of the token is stored (tokens are
    long and random, so a slow KDF adds nothing); `prefix` lets people tell tokens apart."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(Base):
    """An HTTPS endpoint of the program's (an EHR inbox, a team chat) that receives alert
    events as JSON signed with HMAC-SHA256 (`secret`, shown once to the admin who added it)."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(80))
    # Minimum necessary: a reference and a link unless an admin opts in to the readings.
    include_readings: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One alert event for one endpoint: saved before it is sent, retried with backoff, and
    kept as a dead letter when retries run out (the admin pages show the log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", WEBHOOK_DELIVERY_STATUSES), name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        UniqueConstraint("endpoint_id", "event_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    # A stable id per event (the receiver's idempotency key), e.g. "alert.opened:K7Q2X9:1".
    event_id: Mapped[str] = mapped_column(String(80))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
