"""The patient list and the patient page (charts, transcript, consent and alert history).

Every query is scoped to the signed-in staff member's program: another program's patient is a
404, exactly like one that does not exist. The list computes its columns for the page's
patients only, with one grouped query per column, so it stays fast with 10,000 patients.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pygal
from flask import Blueprint, Response, make_response, render_template, request
from markupsafe import Markup
from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from checkin import audit, schedules
from checkin.evaluation import params_for, recent_readings
from checkin.flows import FLOW_NAMES
from checkin.models import (
    PATIENT_STATUSES,
    Alert,
    Answer,
    CheckIn,
    ConsentEvent,
    Message,
    Patient,
    Program,
    Schedule,
    TreatmentEvent,
)
from checkin.trends import SCALE_MAX, RuleParams
from checkin.web import CONTENT_SECURITY_POLICY, context
from checkin.web.auth import login_required, signed_in
from checkin.web.forms import COMMON_ZONES, DAY_LABELS, LANGUAGE_NAMES, Paging, all_zones
from checkin.web.scope import in_program

bp = Blueprint("patients", __name__)

PAGE_SIZE = 50
QUERY_MAX = 100
# A check-in counts as sent once its first text went out; failed, missed and skipped did not.
SENT_STATUSES = ("completed", "expired", "interrupted")
# Not yet due or being sent: not shown as the last check-in.
UNSTARTED_STATUSES = ("pending", "sending")
RATE_WINDOWS = (7, 30)
CHART_DAYS = (30, 90, 365)
DEFAULT_DAYS = 90
CHART_MEASURES = ("fatigue", "pain", "mood", "phq2_total")
MEASURE_LABELS = {
    "fatigue": "Fatigue (0 none – 10 worst)",
    "pain": "Pain (0 none – 10 worst)",
    "mood": "Mood (0 very low – 10 very good)",
    "phq2_total": "PHQ-2 total (0–6; 3 or more is positive)",
}
# The patient page lists the sends of the next two weeks (at most this many).
PREVIEW_DAYS = 14
PREVIEW_LIMIT = 30
TRANSCRIPT_LIMIT = 200
HISTORY_LIMIT = 100
# More readings than this in one chart (a month and a half of dailies) are a line without dots.
DOTS_UP_TO = 45
# Reading, baseline, threshold, infusion: dark enough for WCAG AA against white.
CHART_COLOURS = ("#0b57d0", "#555555", "#a50e0e", "#1e6b34")
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_SCRIPT = re.compile(r"<script[^>]*>.*?</script>", re.S)


@dataclass(frozen=True)
class Row:
    patient: Patient
    last_checkin: tuple[date, str] | None
    rates: dict[int, tuple[int, int]]  # days -> (answered, sent)
    open_alerts: int


@dataclass(frozen=True)
class Chart:
    measure: str
    label: str
    svg: Markup
    points: list[tuple[datetime, float]]  # local time, for the table screen readers get

    @property
    def readings(self) -> int:
        return len(self.points)


# --- the patient list --------------------------------------------------------------------


@bp.get("/patients")
@login_required
def patient_list() -> str:
    q = request.args.get("q", "").strip()[:QUERY_MAX]
    status = request.args.get("status", "")
    status = status if status in PATIENT_STATUSES else ""
    ctx = context()
    now = ctx.clock()
    where = [Patient.program_id == signed_in().program_id]
    if q:
        where.append(name_or_phone_matches(q))
    if status:
        where.append(Patient.status == status)
    with ctx.db.session() as db:
        total = db.scalar(select(func.count()).select_from(Patient).where(*where)) or 0
        paging = Paging.of(total, request.args.get("page"), PAGE_SIZE)
        listed = select(Patient).where(*where).order_by(Patient.name, Patient.id)
        patients = list(db.scalars(paging.rows(listed)))
        ids = [p.id for p in patients]
        rates = response_rates(db, ids, now)
        last = _last_checkins(db, ids, now)
        alerts = _open_alerts(db, ids)
        # A list (and a search) shows names and numbers: audited like a patient's page.
        audit.record(
            db,
            now,
            signed_in().email,
            "patients.list",
            program_id=signed_in().program_id,
            q=q or None,
            status=status or None,
            page=paging.page,
            shown=len(patients),
        )
    rows = [
        Row(
            p,
            last.get(p.id),
            rates.get(p.id, {d: (0, 0) for d in RATE_WINDOWS}),
            alerts.get(p.id, 0),
        )
        for p in patients
    ]
    return render_template(
        "patients.html",
        rows=rows,
        q=q,
        status=status,
        statuses=PATIENT_STATUSES,
        page=paging.page,
        pages=paging.pages,
        total=total,
        page_size=PAGE_SIZE,
    )


def name_or_phone_matches(q: str) -> ColumnElement[bool]:
    """Name contains q (any case), or the phone contains q's digits."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    by_name = func.lower(Patient.name).like(f"%{escaped}%", escape="\\")
    digits = re.sub(r"\D", "", q)
    if len(digits) < 3:
        return by_name
    return or_(by_name, Patient.phone.like(f"%{digits}%"))


def response_rates(
    db: Session, patient_ids: Sequence[int], now: datetime
) -> dict[int, dict[int, tuple[int, int]]]:
    """patient id -> {days: (answered, sent)} for each of RATE_WINDOWS, in ONE grouped query.

    Sent: completed, expired or interrupted (the first text went out). Answered: completed, or
    expired with at least one answer. Failed, missed and skipped check-ins count in neither.
    """
    if not patient_ids:
        return {}
    has_answer = exists().where(Answer.checkin_id == CheckIn.id, Answer.status == "answered")
    answered = or_(CheckIn.status == "completed", and_(CheckIn.status == "expired", has_answer))
    columns: list[Any] = [CheckIn.patient_id]
    for days in RATE_WINDOWS:
        inside = CheckIn.due_at >= now - timedelta(days=days)
        columns.append(func.sum(case((inside, 1), else_=0)))
        columns.append(func.sum(case((and_(inside, answered), 1), else_=0)))
    stmt = (
        select(*columns)
        .where(
            CheckIn.patient_id.in_(patient_ids),
            CheckIn.status.in_(SENT_STATUSES),
            CheckIn.due_at >= now - timedelta(days=max(RATE_WINDOWS)),
            CheckIn.due_at <= now,
        )
        .group_by(CheckIn.patient_id)
    )
    out: dict[int, dict[int, tuple[int, int]]] = {}
    for row in db.execute(stmt):
        counts = [int(c or 0) for c in row[1:]]
        out[row[0]] = {
            days: (counts[2 * i + 1], counts[2 * i]) for i, days in enumerate(RATE_WINDOWS)
        }
    return out


def _last_checkins(
    db: Session, patient_ids: Sequence[int], now: datetime
) -> dict[int, tuple[date, str]]:
    if not patient_ids:
        return {}
    started = and_(
        CheckIn.patient_id.in_(patient_ids),
        CheckIn.status.not_in(UNSTARTED_STATUSES),
        CheckIn.due_at <= now,
    )
    newest = (
        select(CheckIn.patient_id, func.max(CheckIn.due_at).label("due_at"))
        .where(started)
        .group_by(CheckIn.patient_id)
        .subquery()
    )
    stmt = (
        select(CheckIn.patient_id, CheckIn.local_date, CheckIn.status)
        .join(
            newest,
            and_(newest.c.patient_id == CheckIn.patient_id, newest.c.due_at == CheckIn.due_at),
        )
        .where(started)
        .order_by(CheckIn.id)
    )
    return {pid: (day, status) for pid, day, status in db.execute(stmt)}


def _open_alerts(db: Session, patient_ids: Sequence[int]) -> dict[int, int]:
    if not patient_ids:
        return {}
    stmt = (
        select(Alert.patient_id, func.count())
        .where(Alert.patient_id.in_(patient_ids), Alert.status != "resolved")
        .group_by(Alert.patient_id)
    )
    return {pid: int(n) for pid, n in db.execute(stmt)}


# --- the patient page --------------------------------------------------------------------


def patient_in_program(db: Session, patient_id: int) -> Patient:
    """The patient, if they belong to the signed-in staff member's program; else a 404."""
    return in_program(db, Patient, patient_id)


@bp.get("/patients/<int:patient_id>")
@login_required
def patient_page(patient_id: int) -> Response:
    days_arg = request.args.get("days", "")
    days = next((d for d in CHART_DAYS if str(d) == days_arg), DEFAULT_DAYS)
    ctx = context()
    staff = signed_in()
    now = ctx.clock()
    since = now - timedelta(days=days)
    with ctx.db.session() as db:
        patient = patient_in_program(db, patient_id)
        params = params_for(db, patient)
        zone = ZoneInfo(patient.timezone)
        series = _readings(db, patient.id, since)
        infusions = list(
            db.scalars(
                select(TreatmentEvent.occurred_on)
                .where(
                    TreatmentEvent.patient_id == patient.id,
                    TreatmentEvent.kind == "infusion",
                    TreatmentEvent.occurred_on >= since.astimezone(zone).date(),
                )
                .order_by(TreatmentEvent.occurred_on)
            )
        )
        baselines = {
            m: _median(r.value for r in recent_readings(db, patient.id, m, params.baseline_window))
            for m in CHART_MEASURES
        }
        plan = _plan(db, patient, now)
        messages = _newest(db, Message, patient.id, TRANSCRIPT_LIMIT)
        consents = _newest(db, ConsentEvent, patient.id, HISTORY_LIMIT)
        alert_rows = _newest(db, Alert, patient.id, HISTORY_LIMIT)
        audit.record(
            db, now, staff.email, "patient.view", f"patient:{patient.id}", ip=request.remote_addr
        )
    start = since.astimezone(zone).replace(tzinfo=None)
    end = now.astimezone(zone).replace(tzinfo=None)
    marks = [datetime.combine(d, time(12)) for d in infusions]
    charts = [
        _chart(
            m,
            [(at.astimezone(zone).replace(tzinfo=None), v) for at, v in series.get(m, [])],
            baselines[m],
            _threshold(params, m),
            marks,
            start,
            end,
        )
        for m in CHART_MEASURES
    ]
    body = render_template(
        "patient.html",
        patient=patient,
        days=days,
        chart_days=CHART_DAYS,
        charts=charts,
        infusions=infusions,
        baselines=baselines,
        messages=messages,
        consents=consents,
        alerts=alert_rows,
        plan=plan,
        flows=FLOW_NAMES,
        common_zones=COMMON_ZONES,
        all_zones=all_zones(),
        languages=LANGUAGE_NAMES,
        day_labels=DAY_LABELS,
        today=now.astimezone(zone).date(),
        is_admin=staff.is_admin,
    )
    response = make_response(body)
    response.headers["Content-Security-Policy"] = _policy_allowing(charts)
    return response


@dataclass(frozen=True)
class Plan:
    """What a patient is asked and when: their own schedules, the program's that still apply,
    and the sends to come (quiet hours, pause and the one-a-day rule applied)."""

    own: list[Schedule]
    inherited: list[Schedule]
    upcoming: list[schedules.PlannedSend]


def _plan(db: Session, patient: Patient, now: datetime) -> Plan:
    effective = schedules.for_patient(db, patient)
    upcoming = schedules.preview(
        patient,
        db.get_one(Program, patient.program_id),
        effective,
        now,
        PREVIEW_DAYS,
        schedules.infusions_of(db, patient.id),
    )
    own = [s for s in effective if s.patient_id == patient.id]
    inherited = [s for s in effective if s.patient_id is None]
    return Plan(own, inherited, upcoming[:PREVIEW_LIMIT])


def _readings(
    db: Session, patient_id: int, since: datetime
) -> dict[str, list[tuple[datetime, float]]]:
    stmt = (
        select(Answer.measure, Answer.recorded_at, Answer.value)
        .where(
            Answer.patient_id == patient_id,
            Answer.measure.in_(CHART_MEASURES),
            Answer.status == "answered",
            Answer.recorded_at >= since,
        )
        .order_by(Answer.recorded_at, Answer.id)
    )
    out: dict[str, list[tuple[datetime, float]]] = {}
    for measure, at, value in db.execute(stmt):
        if value is not None:
            out.setdefault(measure, []).append((at, float(value)))
    return out


def _median(values: Iterable[float]) -> float | None:
    got = list(values)
    return statistics.median(got) if got else None


def _threshold(params: RuleParams, measure: str) -> float | None:
    if measure in params.severe_at_or_above:
        return float(params.severe_at_or_above[measure])
    if measure in params.severe_at_or_below:
        return float(params.severe_at_or_below[measure])
    if measure == "phq2_total":
        return float(params.phq2_positive_at)
    return None


def _chart(
    measure: str,
    points: list[tuple[datetime, float]],
    baseline: float | None,
    threshold: float | None,
    infusions: list[datetime],
    start: datetime,
    end: datetime,
) -> Chart:
    """One measure over the window as pygal SVG, without pygal's script (the CSP forbids it)."""
    top = SCALE_MAX.get(measure, 10)
    style = pygal.style.Style(
        colors=CHART_COLOURS,
        background="white",
        plot_background="white",
        foreground="#1a1a1a",
        foreground_strong="#1a1a1a",
        foreground_subtle="#767676",
        font_family="system-ui, sans-serif",
    )
    chart = pygal.DateTimeLine(
        title=MEASURE_LABELS[measure],
        width=800,
        height=320,
        range=(0, top),
        include_x_axis=True,
        show_x_guides=False,
        x_label_rotation=30,
        x_value_formatter=lambda d: d.strftime("%d %b %Y"),
        truncate_legend=-1,
        legend_at_bottom=True,
        dots_size=3,
        style=style,
        disable_xml_declaration=True,
        js=[],
        no_data_text="No readings in this period",
    )
    # A year of daily dots is a smear, and each dot is SVG pygal has to build (a 365-point
    # chart took 56 ms and 116 KiB with dots, 21 ms and 23 KiB without): the line alone.
    chart.add("Reading", points, show_dots=len(points) <= DOTS_UP_TO)
    if baseline is not None:
        chart.add(
            f"Baseline (median of last 7): {baseline:g}", [(start, baseline), (end, baseline)]
        )
    else:
        chart.add("Baseline: not enough readings", [])
    if threshold is not None:
        chart.add(
            f"Alert threshold: {threshold:g}",
            [(start, threshold), (end, threshold)],
            stroke_style={"dasharray": "6, 4"},
            show_dots=False,
        )
    else:
        chart.add("Alert threshold", [])
    chart.add("Infusion", [(d, top) for d in infusions], stroke=False, dots_size=6)
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    # pygal output only: it escapes the titles and labels it draws (etree serialisation).
    return Chart(measure, MEASURE_LABELS[measure], Markup(svg), points)


def _policy_allowing(charts: Iterable[Chart]) -> str:
    """The staff CSP, plus the hash of each chart's own <style> (pygal inlines its CSS)."""
    hashes = set()
    for chart in charts:
        for css in _STYLE.findall(str(chart.svg)):
            digest = hashlib.sha256(html.unescape(css).encode()).digest()
            hashes.add(f"'sha256-{base64.b64encode(digest).decode()}'")
    return f"{CONTENT_SECURITY_POLICY}; style-src 'self' {' '.join(sorted(hashes))}"


History = TypeVar("History", Message, ConsentEvent, Alert)


def _newest(db: Session, model: type[History], patient_id: int, limit: int) -> list[History]:
    """A patient's newest rows of one kind (transcript, consent or alert history)."""
    stmt = (
        select(model)
        .where(model.patient_id == patient_id)
        .order_by(model.created_at.desc(), model.id.desc())
        .limit(limit)
    )
    return list(db.scalars(stmt))
