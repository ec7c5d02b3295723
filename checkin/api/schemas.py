"""The API's request and response bodies and query strings, as pydantic models.

spectree turns these into the OpenAPI document and checks every request against them (and
every response against its declared model). Limits match the columns they land in, so a body
the schema accepts cannot overflow a column on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from checkin import alerts
from checkin.flows import FLOW_NAMES
from checkin.models import (
    ALERT_STATUSES,
    ANSWER_STATUSES,
    CHECKIN_STATUSES,
    CONSENT_METHODS,
    PATIENT_STATUSES,
)
from checkin.schedules import DAY_NAMES, MAX_OFFSET_DAYS

# A page holds at most this many rows; a later page than MAX_PAGE is refused (an offset that
# large is a client bug, and would overflow an integer somewhere).
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
MAX_PAGE = 1_000_000
# Days after an infusion in one schedule: 20 offsets fit Schedule.day_offsets (120 characters).
MAX_OFFSETS = 20
NOTE_MAX = 2000  # as on the alert page
ID_MAX = 2**31 - 1  # ids are 32-bit integers on PostgreSQL

PatientStatus = Literal["active", "paused", "opted_out", "number_invalid"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
AlertKind = Literal[
    "crisis",
    "severe",
    "worsening",
    "phq2_positive",
    "loss_of_response",
    "side_effect",
    "non_response",
    "delivery_failure",
    "stop_request",
]
CheckInStatus = Literal[
    "pending",
    "sending",
    "open",
    "completed",
    "expired",
    "skipped",
    "missed",
    "interrupted",
    "failed",
]
AnswerStatus = Literal["answered", "skipped", "missing"]
ConsentMethod = Literal["in_person", "phone_call", "written_form", "electronic_form"]
Flow = Literal["daily_symptoms", "weekly_mood", "post_infusion"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Measure = Literal["fatigue", "pain", "mood", "phq2_interest", "phq2_down", "phq2_total"]
Language = Literal["en", "es"]

# The Literals above restate the model's tuples for the schema; they must not drift apart.
assert set(get_args(PatientStatus)) == set(PATIENT_STATUSES)
assert set(get_args(AlertStatus)) == set(ALERT_STATUSES)
assert set(get_args(AlertKind)) == alerts.CLINICAL_KINDS | alerts.ENGAGEMENT_KINDS
assert set(get_args(CheckInStatus)) == set(CHECKIN_STATUSES)
assert set(get_args(AnswerStatus)) == set(ANSWER_STATUSES)
assert set(get_args(ConsentMethod)) == set(CONSENT_METHODS)
assert set(get_args(Flow)) == set(FLOW_NAMES)
assert get_args(Day) == DAY_NAMES


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _utc(value: datetime) -> datetime:
    """Any instant as UTC; one with no offset is read as UTC."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


NoNul = AfterValidator(_no_nul)
Instant = Annotated[datetime, AfterValidator(_utc)]
AwareInstant = Annotated[AwareDatetime, AfterValidator(_utc)]
LocalTime = Annotated[
    str,
    Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:30"]),
]


class Output(BaseModel):
    """Response bodies are read from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class Input(BaseModel):
    """Query strings and request bodies: a name the model does not know is refused (a typo
    such as `perpage=10` must not be ignored silently)."""

    model_config = ConfigDict(extra="forbid")


# --- errors and paging ---------------------------------------------------------------------


class ErrorDetail(BaseModel):
    status: int = Field(description="The HTTP status code, repeated")
    message: str = Field(description="What went wrong, in one line")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx under /api/v1."""

    error: ErrorDetail


class PageLinks(BaseModel):
    """Relative links (path and query) to other pages of the same list; null at either end."""

    first: str
    last: str
    next: str | None
    prev: str | None


class PageQuery(Input):
    page: int = Field(1, ge=1, le=MAX_PAGE, description="1 is the first page")
    per_page: int = Field(
        DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE, description=f"rows a page, at most {MAX_PER_PAGE}"
    )


class Paged(Output):
    page: int
    per_page: int
    total: int = Field(description="rows matching the filters, on every page together")
    pages: int
    links: PageLinks


class Window(PageQuery):
    """A date range: `from` inclusive, `to` exclusive; a date alone is midnight UTC."""

    from_: Instant | None = Field(None, alias="from", description="ISO 8601, inclusive")
    to: Instant | None = Field(None, description="ISO 8601, exclusive")


# --- patients ------------------------------------------------------------------------------


class PatientQuery(PageQuery):
    status: PatientStatus | None = None
    q: Annotated[str, StringConstraints(max_length=100), NoNul] | None = Field(
        None, description="part of the name (any case), or three or more digits of the phone"
    )


class PatientOut(Output):
    id: int
    name: str
    phone: str = Field(description="E.164")
    timezone: str = Field(description="IANA time zone")
    language: Language
    status: PatientStatus
    paused_until: date | None
    consented_at: datetime | None
    enrolled_at: datetime


class PatientPage(Paged):
    items: list[PatientOut]


class ConsentIn(Input):
    """How and when the patient agreed to receive texts, and the exact text they were shown."""

    method: ConsentMethod
    given_at: AwareInstant | None = Field(None, description="when they agreed; default: now")
    text: Annotated[str, StringConstraints(min_length=40, max_length=2000), NoNul]


class NewPatientIn(Input):
    phone: Annotated[str, StringConstraints(min_length=1, max_length=40), NoNul] = Field(
        description="E.164, or a US number written as staff write it"
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul] = Field(
        description="IANA name, e.g. America/New_York"
    )
    language: Language = "en"
    consent: ConsentIn
    send_welcome: bool = Field(True, description="queue the welcome text for the scheduler")


# --- observations and check-ins ------------------------------------------------------------


class ObservationQuery(Window):
    patient_id: int | None = Field(None, ge=1, le=ID_MAX)
    measure: Measure | None = None


class ObservationOut(Output):
    id: int
    patient_id: int
    checkin_id: int
    measure: str
    value: int | None = Field(description="null unless status is answered")
    status: AnswerStatus
    recorded_at: datetime


class ObservationPage(Paged):
    items: list[ObservationOut]


class CheckInQuery(Window):
    patient_id: int | None = Field(None, ge=1, le=ID_MAX)
    status: CheckInStatus | None = None


class CheckInOut(Output):
    id: int
    patient_id: int
    schedule_id: int | None
    flow: str
    status: CheckInStatus
    local_date: date = Field(description="the patient's own date")
    due_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None


class CheckInPage(Paged):
    items: list[CheckInOut]


# --- alerts --------------------------------------------------------------------------------


class AlertQuery(PageQuery):
    status: AlertStatus | None = None
    kind: AlertKind | None = None


class AlertOut(Output):
    ref: str
    patient_id: int
    kind: AlertKind
    severity: Literal["urgent", "high", "routine"]
    status: AlertStatus
    evidence: list[dict[str, Any]] = Field(description="what the rules saw, oldest first")
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by_id: int | None
    resolved_at: datetime | None
    resolved_by_id: int | None
    resolution_note: str | None
    escalated_at: datetime | None


class AlertPage(Paged):
    items: list[AlertOut]


class ResolveIn(Input):
    note: Annotated[str, StringConstraints(max_length=NOTE_MAX), NoNul] = Field(
        description="what was done"
    )

    @model_validator(mode="after")
    def _said_something(self) -> ResolveIn:
        if not str(self.note).strip():
            raise ValueError("a resolution note is required: say what was done")
        return self


# --- schedules -----------------------------------------------------------------------------


class ScheduleQuery(PageQuery):
    patient_id: int | None = Field(
        None, ge=1, le=ID_MAX, description="only this patient's own schedules"
    )


class ScheduleOut(Output):
    id: int
    patient_id: int | None = Field(description="null: the program's, for every patient")
    kind: Literal["recurring", "infusion"]
    flow: Flow
    time: str = Field(description="HH:MM in each patient's own time zone")
    days: list[Day] | None = Field(description="weekdays of a recurring schedule")
    after_infusion: list[int] | None = Field(description="days after each infusion")
    start_date: date | None
    end_date: date | None
    active: bool = Field(description="false once removed or replaced by an edit")
    created_at: datetime


class SchedulePage(Paged):
    items: list[ScheduleOut]


class ScheduleIn(Input):
    """Either `days` (weekdays) or `after_infusion` (days after each infusion), not both."""

    flow: Flow
    time: LocalTime = Field(description="HH:MM, 24-hour, the patient's local time")
    days: list[Day] | None = Field(None, min_length=1, max_length=7)
    after_infusion: list[Annotated[int, Field(ge=0, le=MAX_OFFSET_DAYS)]] | None = Field(
        None, min_length=1, max_length=MAX_OFFSETS
    )
    start_date: date | None = None
    end_date: date | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleIn:
        if (self.days is None) == (self.after_infusion is None):
            raise ValueError("give either days (weekdays) or after_infusion (days), not both")
        return self


class NewScheduleIn(ScheduleIn):
    patient_id: int | None = Field(
        None, ge=1, le=ID_MAX, description="a patient's own schedule; omit for the program's"
    )


# --- FHIR R4 (checkin.fhir builds the resources) ------------------------------------------------


class FhirResource(Output):
    """A FHIR R4 resource or Bundle as JSON (checkin.fhir; validated against the R4B models
    in tests/test_fhir.py). Its fields are FHIR's, not described again here."""

    model_config = ConfigDict(extra="allow")

    resourceType: str = Field(description="Patient, Bundle, Questionnaire or CodeSystem")  # noqa: N815 - FHIR's name


class FhirWindow(Input):
    """A date range for $everything: check-ins due from `from` (inclusive) to `to` (exclusive)."""

    from_: Instant | None = Field(None, alias="from", description="ISO 8601, inclusive")
    to: Instant | None = Field(None, description="ISO 8601, exclusive")
