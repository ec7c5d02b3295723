"""Inbound text -> crisis check -> keywords -> the patient's open check-in -> flow engine.

Crisis language is checked first, on every text, in every state (CLINICAL.md). Replies are
returned for the webhook to put in TwiML; pages to staff are returned as message ids for the
caller to deliver after the transaction commits (save before send).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from checkin import alerts, consent, crisis, evaluation, flows, keywords
from checkin.catalog import render
from checkin.context import Context
from checkin.flows import engine
from checkin.models import Answer, CheckIn, Message, Patient, StaffUser
from checkin.patients import program_of
from checkin.phones import InvalidPhone, normalise_phone

# A reply this soon after a check-in closed is answered as late (and kept, flagged), rather
# than with "there is no check-in open".
LATE_REPLY_WINDOW = timedelta(hours=24)
# Unknown numbers get the generic reply at most once in this period (issue 4).
UNKNOWN_SENDER_REPLY_EVERY = timedelta(days=1)


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
    purpose: str = "reply"  # how the replies are filed


def handle_inbound(ctx: Context, inbound: Inbound) -> Handled:
    """Store the text and its replies in one transaction; return the replies and the pages.

    A MessageSid seen before (Twilio re-delivers when our answer was slow) is found by the
    unique constraint when the text is stored: the whole turn is rolled back and the replies
    recorded the first time are sent again. Checking first would cost every reply a query.
    """
    # PostgreSQL text cannot hold NUL; a stray one must not turn a patient's text into a 500.
    inbound = replace(inbound, body=inbound.body.replace("\x00", "\ufffd"))
    try:
        with ctx.db.session() as session:
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
            # Not flushed yet: a reply to a check-in is stored with its check-in id in one
            # INSERT (see _Turn.message_id).
            session.add(message)
            turn = _Turn(ctx, session, patient, message, now)
            handled = turn.run(inbound.opt_out_type)
            turn.store_replies(handled)
    except IntegrityError:
        with ctx.db.session() as session:
            if session.scalar(select(Message.id).where(Message.twilio_sid == inbound.sid)):
                return _replay(session, inbound.sid)
        raise
    return handled


def _replay(session: Session, sid: str) -> Handled:
    """Twilio re-delivers when it did not get our answer in time: send the same replies again,
    record nothing new."""
    bodies = session.scalars(
        select(Message.body)
        .where(Message.idempotency_key.like(f"reply:{sid}:%"))
        .order_by(Message.id)
    )
    return Handled(replies=list(bodies), duplicate=True)


def _patient(session: Session, raw_from: str) -> Patient | None:
    """The sender, with their program (its rules and name) in the same query."""
    try:
        phone = normalise_phone(raw_from)
    except InvalidPhone:
        return None
    stmt = select(Patient).options(joinedload(Patient.program)).where(Patient.phone == phone)
    return session.scalar(stmt)


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

    def message_id(self) -> int:
        """The inbound text's id, storing it now if it is not stored yet."""
        if self.message.id is None:
            self.session.flush()
        return self.message.id

    def run(self, opt_out_type: str | None) -> Handled:
        matched = crisis.detect(self.message.body)
        if matched is not None:
            return self.crisis(matched)
        if self.patient is None:
            staff = self.staff_member()
            if staff is not None:
                return self.staff_text(staff)
            return self.unknown_sender()
        keyword = keywords.classify(
            self.message.body,
            opt_out_type=opt_out_type,
            opted_out=self.patient.status == "opted_out",
        )
        if keyword is not None:
            return self.keyword(keyword, twilio_replied=bool(opt_out_type))
        if self.patient.status == "opted_out":
            return Handled()  # they asked not to be texted; the message is still stored
        if keywords.is_stop_request(self.message.body):
            return self.stop_request()
        checkin = self.open_checkin()
        if checkin is not None:
            return self.answer(checkin)
        return self.no_checkin()

    def text(self, key: str, **params: object) -> str:
        return render(key, self.language, params)

    def crisis(self, matched: str) -> Handled:
        handled = Handled([self.text("crisis")], purpose="crisis")
        if self.patient is None:
            return handled  # nobody to attach an alert to; the message row keeps the record
        for checkin in self.session.scalars(
            select(CheckIn).where(CheckIn.patient_id == self.patient.id, CheckIn.status == "open")
        ):
            checkin.status = "interrupted"  # scripted questions pause until staff resolve
        evidence = {
            "matched": matched,
            "message_id": self.message_id(),
            "phrase_list": crisis.LIST_VERSION,
        }
        handled.pages = self.alert("crisis", "urgent", evidence)
        return handled

    def staff_member(self) -> StaffUser | None:
        return self.session.scalar(
            select(StaffUser).where(
                StaffUser.phone == self.message.from_number, StaffUser.active.is_(True)
            )
        )

    def staff_text(self, staff: StaffUser) -> Handled:
        """Staff answer pages from their registered phone: 'ACK K7Q2X9'."""
        self.message.purpose, self.message.staff_id = "staff", staff.id
        reply = alerts.handle_ack_text(self.session, staff, self.message.body, self.now)
        if reply is None:
            reason = "send ACK and the alert reference, e.g. ACK K7Q2X9"
            reply = render("staff_ack_failed", "en", {"reason": reason})
        return Handled([reply], purpose="staff")

    def unknown_sender(self) -> Handled:
        """One generic reply a day per number, with no patient data; never enrolled."""
        since = self.now - UNKNOWN_SENDER_REPLY_EVERY
        replied = self.session.scalar(
            select(Message.id)
            .where(
                Message.to_number == self.message.from_number,
                Message.purpose == "unknown_sender",
                Message.direction == "outbound",
                Message.created_at > since,
            )
            .limit(1)
        )
        if replied is not None:
            return Handled()
        return Handled([self.text("unknown_sender")], purpose="unknown_sender")

    def keyword(self, keyword: str, *, twilio_replied: bool) -> Handled:
        assert self.patient is not None
        patient, program = self.patient, program_of(self.session, self.patient)
        source = "twilio_opt_out_type" if twilio_replied else "sms_keyword"
        if keyword == "opt_out":
            if patient.status == "opted_out":
                return Handled()  # FCC 2024: one confirmation only
            consent.opt_out(
                self.session,
                patient,
                self.now,
                source=source,
                actor=patient.phone,
                message_id=self.message_id(),
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
                    message_id=self.message_id(),
                )
            reply = self.text("start_confirm", program=program.name)
        else:
            reply = self.text("help", program=program.name, support=program.support_contact)
        # With Advanced Opt-Out Twilio has already answered; a second text would break the
        # one-confirmation rule.
        return Handled([] if twilio_replied else [reply], purpose="keyword")

    def stop_request(self) -> Handled:
        """'Please stop texting me' is not a keyword: staff follow up, nothing is stored as
        an answer, and the patient learns the word that stops texts at once."""
        self.message.purpose = "stop_request"
        evidence = {"message_id": self.message_id(), "rule": "free-text stop request"}
        self.alert("stop_request", "routine", evidence)
        return Handled([self.text("stop_request")], purpose="keyword")

    def open_checkin(self) -> CheckIn | None:
        assert self.patient is not None
        with self.session.no_autoflush:  # the text is stored with its check-in, below
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
        self.message.checkin_id = checkin.id
        flow = flows.version(checkin.flow, checkin.flow_version)
        state = engine.RunState.from_dict(checkin.state)
        outcome = engine.advance(flow, state, self.message.body, self.now)
        store_readings(self.session, checkin, outcome.readings, self.now, self.message_id())
        checkin.state = {
            **checkin.state,
            **outcome.state.to_dict(),
            "last_reply_at": self.now.isoformat(),
        }
        if outcome.status == "completed":
            checkin.status, checkin.completed_at = "completed", self.now
        reply = " ".join(self.text(t.key, **t.params) for t in outcome.texts)
        pages: list[int] = []
        self.session.flush()  # the trend rules read the answers just stored
        for finding in evaluation.after_answers(self.session, checkin, outcome.readings, self.now):
            evidence = {**finding.evidence, "rule": finding.rule, "checkin_id": checkin.id}
            pages += self.alert(finding.kind, finding.severity, evidence)
        return Handled([reply], pages)

    def no_checkin(self) -> Handled:
        """No open check-in: a reply soon after one closed is kept, flagged late, and never
        attached to the next check-in."""
        assert self.patient is not None
        closed = self.session.scalar(
            select(CheckIn)
            .where(
                CheckIn.patient_id == self.patient.id,
                CheckIn.status == "expired",
                CheckIn.expires_at > self.now - LATE_REPLY_WINDOW,
            )
            .order_by(CheckIn.expires_at.desc())
            .limit(1)
        )
        if closed is None:
            return Handled([self.text("no_open_checkin")])
        self.message.purpose, self.message.checkin_id = "late_reply", closed.id
        return Handled([self.text("late_reply")])

    def alert(self, kind: str, severity: str, evidence: dict[str, object]) -> list[int]:
        assert self.patient is not None
        _, pages = alerts.raise_alert(
            self.session,
            self.patient,
            kind,
            severity,
            evidence,
            self.now,
            alerts.Pager.of(self.ctx),
        )
        return [page.id for page in pages]

    def store_replies(self, handled: Handled) -> None:
        for index, body in enumerate(handled.replies):
            self.session.add(
                Message(
                    direction="outbound",
                    patient_id=self.patient.id if self.patient else None,
                    to_number=self.message.from_number,
                    from_number=self.message.to_number,
                    body=body,
                    purpose=handled.purpose,
                    status="twiml",
                    created_at=self.now,
                    sent_at=self.now,
                    checkin_id=self.message.checkin_id,
                    idempotency_key=f"reply:{self.message.twilio_sid}:{index}",
                )
            )


def store_readings(
    session: Session,
    checkin: CheckIn,
    readings: list[engine.Reading],
    now: datetime,
    message_id: int | None,
) -> None:
    """Store each reading; a second reading of the same measure is a correction of it (one
    INSERT ... ON CONFLICT (checkin_id, measure) DO UPDATE, on PostgreSQL and SQLite)."""
    if not readings:
        return
    rows = [
        {
            "checkin_id": checkin.id,
            "patient_id": checkin.patient_id,
            "measure": r.measure,
            "value": r.value,
            "status": r.status,
            "raw_text": r.raw_text,
            "note": r.note,
            "message_id": message_id,
            "recorded_at": now,
        }
        # One row per measure (a later reading of it in the same text wins): PostgreSQL
        # refuses an upsert that touches one row twice.
        for r in {r.measure: r for r in readings}.values()
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Answer).values(rows)
    changed = ("value", "status", "raw_text", "note", "message_id", "recorded_at")
    stmt = stmt.on_conflict_do_update(
        index_elements=["checkin_id", "measure"],
        set_={column: stmt.excluded[column] for column in changed},
    )
    session.execute(stmt)


def expire(session: Session, checkin: CheckIn, now: datetime) -> None:
    """Close a run whose window ended: what was never answered is recorded as missing."""
    flow = flows.version(checkin.flow, checkin.flow_version)
    missing = engine.expire(flow, engine.RunState.from_dict(checkin.state))
    store_readings(session, checkin, missing, now, None)
    checkin.status = "expired"
