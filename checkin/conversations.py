"""Inbound text -> crisis check -> keywords -> the patient's open check-in -> flow engine.

Crisis language is checked first, on every text, in every state (CLINICAL.md). Replies are
returned for the webhook to put in TwiML; pages to staff are returned as message ids for the
caller to deliver after the transaction commits (save before send).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkin import alerts, consent, crisis, flows, keywords
from checkin.catalog import render
from checkin.context import Context
from checkin.flows import engine
from checkin.models import Answer, CheckIn, Message, Patient
from checkin.patients import find, program_of
from checkin.phones import InvalidPhone, normalise_phone
from checkin.trends import severe_readings


@dataclass(frozen=True)
class Inbound:
    sid: str
    from_number: str
    to_number: str
    body: str
    opt_out_type: str | None = None


@dataclass
class Handled:
    replies: list[str] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    duplicate: bool = False


def handle_inbound(ctx: Context, inbound: Inbound) -> Handled:
    try:
        with ctx.db.session() as session:
            if session.scalar(select(Message.id).where(Message.twilio_sid == inbound.sid)):
                return Handled(duplicate=True)
            now = ctx.clock()
            patient = _patient(session, inbound.from_number)
            message = Message(
                direction="inbound",
                patient_id=patient.id if patient else None,
                to_number=inbound.to_number,
                from_number=inbound.from_number,
                body=inbound.body,
                purpose="patient" if patient else "unknown_sender",
                status="received",
                twilio_sid=inbound.sid,
                created_at=now,
            )
            session.add(message)
            session.flush()
            turn = _Turn(ctx, session, patient, message, now)
            handled = turn.run(inbound.opt_out_type)
            turn.store_replies(handled.replies)
    except IntegrityError:
        # Twilio re-delivered the same MessageSid while the first delivery was in flight.
        return Handled(duplicate=True)
    return handled


def _patient(session: Session, raw_from: str) -> Patient | None:
    try:
        return find(session, normalise_phone(raw_from))
    except InvalidPhone:
        return None


class _Turn:
    """One inbound message being handled: the session, the patient and the clock reading."""

    def __init__(
        self,
        ctx: Context,
        session: Session,
        patient: Patient | None,
        message: Message,
        now: datetime,
    ) -> None:
        self.ctx, self.session, self.patient, self.message, self.now = (
            ctx,
            session,
            patient,
            message,
            now,
        )
        self.language = patient.language if patient else "en"

    def run(self, opt_out_type: str | None) -> Handled:
        matched = crisis.detect(self.message.body)
        if matched is not None:
            return self.crisis(matched)
        if self.patient is None:
            return Handled()  # unknown sender: logged above, never enrolled, no patient data
        keyword = keywords.classify(
            self.message.body,
            opt_out_type=opt_out_type,
            opted_out=self.patient.status == "opted_out",
        )
        if keyword is not None:
            return self.keyword(keyword, twilio_replied=bool(opt_out_type))
        if self.patient.status == "opted_out":
            return Handled()  # they asked not to be texted; the message is still stored
        checkin = self.open_checkin()
        if checkin is None:
            return Handled([self.text("no_open_checkin")])
        return self.answer(checkin)

    def text(self, key: str, **params: object) -> str:
        return render(key, self.language, params)

    def crisis(self, matched: str) -> Handled:
        handled = Handled([self.text("crisis")])
        if self.patient is None:
            return handled  # nobody to attach an alert to; the message row keeps the record
        for checkin in self.session.scalars(
            select(CheckIn).where(CheckIn.patient_id == self.patient.id, CheckIn.status == "open")
        ):
            checkin.status = "interrupted"  # scripted questions pause until staff resolve
        evidence = {
            "matched": matched,
            "message_id": self.message.id,
            "phrase_list": crisis.LIST_VERSION,
        }
        handled.pages = self.alert("crisis", "urgent", evidence)
        return handled

    def keyword(self, keyword: str, *, twilio_replied: bool) -> Handled:
        assert self.patient is not None
        patient, program = self.patient, program_of(self.session, self.patient)
        source = "twilio_opt_out_type" if twilio_replied else "sms_keyword"
        reply: str | None = None
        if keyword == "opt_out":
            if patient.status == "opted_out":
                return Handled()  # FCC 2024: one confirmation only
            consent.opt_out(
                self.session,
                patient,
                self.now,
                source=source,
                actor=patient.phone,
                message_id=self.message.id,
            )
            reply = self.text("stop_confirm", program=program.name)
        elif keyword == "opt_in":
            if patient.status == "opted_out":
                consent.opt_in(
                    self.session,
                    patient,
                    self.now,
                    source=source,
                    actor=patient.phone,
                    message_id=self.message.id,
                )
            reply = self.text("start_confirm", program=program.name)
        else:
            reply = self.text("help", program=program.name, support=program.support_contact)
        # With Advanced Opt-Out Twilio has already answered; a second text would break the
        # one-confirmation rule.
        return Handled([] if twilio_replied else [reply])

    def open_checkin(self) -> CheckIn | None:
        assert self.patient is not None
        checkin = self.session.scalar(
            select(CheckIn)
            .where(
                CheckIn.patient_id == self.patient.id,
                CheckIn.status == "open",
            )
            .order_by(CheckIn.id.desc())
            .limit(1)
            .with_for_update()
        )
        if checkin is not None and checkin.expires_at <= self.now:
            expire(self.session, checkin, self.now)
            return None
        return checkin

    def answer(self, checkin: CheckIn) -> Handled:
        assert self.patient is not None
        flow = flows.version(checkin.flow, checkin.flow_version)
        state = engine.RunState.from_dict(checkin.state)
        outcome = engine.advance(flow, state, self.message.body, self.now)
        store_readings(self.session, checkin, outcome.readings, self.now, self.message.id)
        checkin.state = outcome.state.to_dict()
        if outcome.status == "completed":
            checkin.status, checkin.completed_at = "completed", self.now
        reply = " ".join(self.text(t.key, **t.params) for t in outcome.texts)
        pages: list[int] = []
        for finding in severe_readings((r.measure, r.value) for r in outcome.readings):
            evidence = {**finding.evidence, "rule": finding.rule, "checkin_id": checkin.id}
            pages += self.alert(finding.kind, finding.severity, evidence)
        return Handled([reply], pages)

    def alert(self, kind: str, severity: str, evidence: dict[str, object]) -> list[int]:
        assert self.patient is not None
        _, pages = alerts.raise_alert(
            self.session,
            self.patient,
            kind,
            severity,
            evidence,
            self.now,
            public_url=self.ctx.settings.public_url,
            sender=self.ctx.settings.sender,
        )
        return [page.id for page in pages]

    def store_replies(self, replies: list[str]) -> None:
        for body in replies:
            self.session.add(
                Message(
                    direction="outbound",
                    patient_id=self.patient.id if self.patient else None,
                    to_number=self.message.from_number,
                    from_number=self.message.to_number,
                    body=body,
                    purpose="reply",
                    status="twiml",
                    created_at=self.now,
                    sent_at=self.now,
                )
            )


def store_readings(
    session: Session,
    checkin: CheckIn,
    readings: list[engine.Reading],
    now: datetime,
    message_id: int | None,
) -> None:
    for reading in readings:
        session.add(
            Answer(
                checkin_id=checkin.id,
                patient_id=checkin.patient_id,
                measure=reading.measure,
                value=reading.value,
                status=reading.status,
                raw_text=reading.raw_text,
                message_id=message_id,
                recorded_at=now,
            )
        )


def expire(session: Session, checkin: CheckIn, now: datetime) -> None:
    """Close a run whose window ended: what was never answered is recorded as missing."""
    flow = flows.version(checkin.flow, checkin.flow_version)
    missing = engine.expire(flow, engine.RunState.from_dict(checkin.state))
    store_readings(session, checkin, missing, now, None)
    checkin.status = "expired"
