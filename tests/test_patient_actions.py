"""What staff do from a patient's page, through the Flask test client on SQLite and
PostgreSQL: pause and resume, send a check-in now (over the fake Twilio), record an infusion,
change time zone and language, and (admins) the patient's own schedules with the next sends.
Every change is audited with who and from where; a refused change writes nothing."""

from __future__ import annotations

import re
from datetime import date, time, timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from checkin import schedules
from checkin.clock import FrozenClock
from checkin.context import Context
from checkin.models import AuditEvent, CheckIn, Patient, Program, Schedule, TreatmentEvent
from tests.conftest import ALICE, T0, World
from tests.fake_twilio import FakeTwilio
from tests.test_web import login, post

CAROL = "carol@example.org"


def page(world: World) -> str:
    return f"/patients/{world.alice_id}"


def act(client: FlaskClient, world: World, action: str, **form: str) -> str:
    """POST an action from alice's page; return the page it lands on."""
    response = post(client, f"{page(world)}/{action}", page(world), **form)
    assert response.status_code == 303
    assert response.headers["Location"].startswith(page(world))
    return client.get(page(world)).text


def alice(ctx: Context, world: World) -> Patient:
    with ctx.db.session() as session:
        return session.get_one(Patient, world.alice_id)


def audited(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.db.session() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(session.scalars(stmt))


def test_a_clinician_pauses_alice_and_resumes_her(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)
    html = act(client, world, "pause", until="2026-03-20")
    assert "Paused: nothing is sent to Alice Example until the end of 2026-03-20." in html
    assert (alice(ctx, world).status, alice(ctx, world).paused_until) == (
        "paused",
        date(2026, 3, 20),
    )
    (row,) = audited(ctx, "patient.pause")
    assert (row.actor, row.detail["ip"], row.program_id) == (
        "bob@example.org",
        "127.0.0.1",
        world.program_id,
    )
    html = act(client, world, "resume")
    assert "Resumed: Alice Example is active." in html
    assert alice(ctx, world).status == "active"


def test_a_pause_ending_in_the_past_is_refused_and_nothing_changes(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)
    html = act(client, world, "pause", until="2026-03-01")
    assert "Not done: the pause end date 2026-03-01 is in the past." in html
    html = act(client, world, "pause", until="next tuesday")
    assert "Not done: Pause until must be a date (YYYY-MM-DD), got &#39;next tuesday&#39;." in html
    assert alice(ctx, world).status == "active"
    assert audited(ctx, "patient.pause") == []


def test_send_now_texts_alice_the_first_question_through_twilio(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client)
    html = act(client, world, "send-now", flow="daily_symptoms")
    assert "Check-in daily_symptoms for +16175550101: sent." in html
    (sent,) = fake_twilio.to(ALICE)
    assert "How tired have you felt today?" in sent.body
    with ctx.db.session() as session:
        checkin = session.scalars(select(CheckIn).where(CheckIn.patient_id == world.alice_id)).one()
        assert checkin.status == "open"
    (row,) = audited(ctx, "checkin.send_now")
    assert (row.actor, row.target, row.detail["flow"], row.detail["checkin"]) == (
        "bob@example.org",
        f"patient:{world.alice_id}",
        "daily_symptoms",
        checkin.id,
    )


def test_send_now_to_an_opted_out_patient_is_refused_and_nothing_is_sent(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    with ctx.db.session() as session:
        session.get_one(Patient, world.alice_id).status = "opted_out"
    login(client)
    html = act(client, world, "send-now", flow="daily_symptoms")
    assert "Not sent: patient +16175550101 has opted out (STOP); not texting them." in html
    assert fake_twilio.sent == []
    assert "Send now" not in html  # the form is not offered for an opted-out patient


def test_recording_an_infusion_adds_it_and_refuses_a_future_date_or_a_repeat(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)
    html = act(client, world, "infusions", date="2026-03-09")
    assert "Infusion on 2026-03-09 recorded." in html
    assert "Not done: the infusion date 2026-03-12 is in the future." in act(
        client, world, "infusions", date="2026-03-12"
    )
    assert "is already recorded" in act(client, world, "infusions", date="2026-03-09")
    with ctx.db.session() as session:
        days = session.scalars(select(TreatmentEvent.occurred_on)).all()
    assert days == [date(2026, 3, 9)]
    (row,) = audited(ctx, "infusion.add")
    assert row.detail["on"] == "2026-03-09"


def test_changing_the_time_zone_replans_what_was_planned_in_the_old_zone(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    due = T0 + timedelta(minutes=5)
    with ctx.db.session() as session:
        session.add(
            CheckIn(
                patient_id=world.alice_id,
                flow="daily_symptoms",
                idempotency_key="planned-in-new-york",
                local_date=due.date(),
                due_at=due,
                expires_at=due + timedelta(hours=12),
                status="pending",
                state={},
                created_at=T0,
            )
        )
    login(client)
    html = act(client, world, "settings", timezone="Europe/London", language="es")
    assert "Saved: time zone and language." in html
    assert (alice(ctx, world).timezone, alice(ctx, world).language) == ("Europe/London", "es")
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(CheckIn)) == 0
    (row,) = audited(ctx, "patient.settings")
    assert row.detail["timezone"] == {"from": "America/New_York", "to": "Europe/London"}
    assert row.detail["language"] == {"from": "en", "to": "es"}
    assert 'class="timezone">Europe/London' in html


def test_a_bad_time_zone_or_language_is_refused_in_one_line(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)
    html = act(client, world, "settings", timezone="Mars/Olympus", language="en")
    assert "Not done: not an IANA time zone: &#39;Mars/Olympus&#39;" in html
    html = act(client, world, "settings", timezone="America/Chicago", language="fr")
    assert "Not done: language must be one of en, es, got &#39;fr&#39;." in html
    assert (alice(ctx, world).timezone, alice(ctx, world).language) == ("America/New_York", "en")
    assert audited(ctx, "patient.settings") == []


def test_the_time_zone_picker_offers_every_zone_with_alices_selected(
    client: FlaskClient, world: World
) -> None:
    login(client)
    html = client.get(page(world)).text
    picker = html[html.index('id="timezone"') :]
    picker = picker[: picker.index("</select>")]
    assert len(re.findall(r"<option ", picker)) > 400
    assert re.findall(r'<option value="([^"]+)" selected>', picker) == ["America/New_York"]


def test_an_admin_gives_alice_her_own_schedule_and_the_next_sends_follow_it(
    client: FlaskClient, ctx: Context, world: World, clock: FrozenClock
) -> None:
    login(client, email=CAROL)
    before = client.get(page(world)).text
    assert "daily symptoms" in before and "program" in before  # the 09:00 program default
    html = act(
        client,
        world,
        "schedules",
        flow="daily_symptoms",
        time="18:30",
        kind="recurring",
        days="mon",
    )
    assert "Alice Example now has their own daily symptoms schedule." in html
    upcoming = html[html.index("Next sends") :]
    # Tue 10 March 2026 10:00 in New York now: the next Monday at 18:30 EDT is the 16th.
    assert "Mon 16 Mar 2026 18:30 EDT" in upcoming
    assert "09:00" not in upcoming.split("</table>")[0]  # her own schedule replaced the default
    with ctx.db.session() as session:
        own = session.scalars(select(Schedule).where(Schedule.patient_id == world.alice_id)).one()
        own_id = own.id
    html = act(client, world, f"schedules/{own_id}/remove")
    assert "the program&#39;s schedule for that flow applies again" in html
    with ctx.db.session() as session:
        assert not session.get_one(Schedule, own_id).active
    assert [r.action for r in audited(ctx, "schedule.add")] == ["schedule.add"]
    assert [r.target for r in audited(ctx, "schedule.remove")] == [f"schedule:{own_id}"]


def test_a_schedule_inside_quiet_hours_is_refused_for_a_patient(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    html = act(
        client,
        world,
        "schedules",
        flow="daily_symptoms",
        time="22:00",
        kind="recurring",
        days="mon",
    )
    assert "Not done: 22:00 is inside quiet hours (21:00-08:00 local)" in html
    with ctx.db.session() as session:
        assert session.scalar(select(Schedule).where(Schedule.patient_id.is_not(None))) is None


def test_adding_her_own_schedule_drops_what_the_program_schedule_had_planned(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        (default,) = schedules.for_patient(session, session.get_one(Patient, world.alice_id))
        session.add(
            CheckIn(
                patient_id=world.alice_id,
                schedule_id=default.id,
                flow="daily_symptoms",
                idempotency_key="planned-by-the-program",
                local_date=T0.date(),
                due_at=T0 + timedelta(minutes=3),
                expires_at=T0 + timedelta(hours=10),
                status="pending",
                state={},
                created_at=T0,
            )
        )
        del program
    login(client, email=CAROL)
    act(
        client,
        world,
        "schedules",
        flow="daily_symptoms",
        time="17:00",
        kind="recurring",
        days="mon",
    )
    with ctx.db.session() as session:
        keys = session.scalars(select(CheckIn.idempotency_key)).all()
    assert keys == []


def test_the_charts_come_with_their_readings_as_a_table_for_screen_readers(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    from tests.test_web import pain_series

    pain_series(ctx, world.alice_id, [3, 4, 5])
    login(client)
    html = client.get(page(world)).text
    table = html[html.index("Pain (0 none – 10 worst) as a table") :]
    table = table[: table.index("</table>")]
    assert re.findall(r"<td>(\d+)</td></tr>", table) == ["5", "4", "3"]  # newest first


def test_the_consent_history_shows_how_and_when_consent_was_given(
    client: FlaskClient, world: World
) -> None:
    login(client)
    html = client.get(page(world)).text
    consent = html[html.index('id="consent-heading"') :]
    assert "consent given" in consent and "staff enrolment" in consent
    assert "texts are not encrypted" in consent  # the text shown


def test_alices_page_shows_no_time_of_the_other_programs_schedules(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        other = session.get_one(Program, world.other_program_id)
        schedules.add(
            session,
            other,
            flow="weekly_mood",
            local_time=time(12, 15),
            days="mon",
            patient=None,
            now=T0,
            actor="test",
        )
    login(client)
    assert "12:15" not in client.get(page(world)).text
