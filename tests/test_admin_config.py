"""The admin's configuration pages through the test client, on SQLite and PostgreSQL:
schedules with their preview and texting hours, staff and the on-call roster, alert-rule
thresholds, and the read-only audit log. A refused change writes nothing."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from checkin import schedules
from checkin.clock import FrozenClock
from checkin.context import Context
from checkin.models import AuditEvent, CheckIn, Program, Schedule, StaffUser
from checkin.trends import RuleParams
from checkin.web.admin.rules import SETTINGS
from tests.conftest import T0, World
from tests.test_web import PASSWORD, give_dave_a_password, login, post, token

CAROL = "carol@example.org"


def submit(client: FlaskClient, path: str, form: dict[str, Any], page: str | None = None) -> Any:
    return client.post(path, data={"csrf_token": token(client, page or path), **form})


def program_schedules(ctx: Context, world: World) -> list[tuple[str, str, str, str | None, bool]]:
    with ctx.db.session() as session:
        rows = session.scalars(
            select(Schedule)
            .where(Schedule.program_id == world.program_id, Schedule.patient_id.is_(None))
            .order_by(Schedule.id)
        )
        return [(s.flow, f"{s.local_time:%H:%M}", s.days, s.day_offsets, s.active) for s in rows]


def flashes(html: str) -> list[str]:
    return re.findall(r'class="flash flash-[a-z]+[^"]*"[^>]*>([^<]+)<', html)


# --- schedules ---------------------------------------------------------------------------


def test_an_admin_adds_a_weekly_schedule_and_sees_it_listed(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    form = {"flow": "weekly_mood", "time": "10:00", "kind": "recurring", "days": ["mon", "thu"]}
    response = submit(client, "/admin/schedules/new", form)
    assert response.status_code == 303
    html = client.get("/admin/schedules").text
    assert "Saved: weekly mood at 10:00." in flashes(html)
    assert "Mon, Thu" in html
    assert program_schedules(ctx, world)[-1] == ("weekly_mood", "10:00", "mon,thu", None, True)


def test_the_preview_lists_the_next_sends_in_local_time_through_a_dst_change(
    client: FlaskClient, world: World, clock: FrozenClock
) -> None:
    clock.advance(days=-5)  # Thu 5 March 2026; US clocks go forward on Sun 8 March
    login(client, email=CAROL)
    query = "flow=daily_symptoms&time=09:00&kind=recurring&days=sun&days=mon&zone=America/New_York"
    html = client.get(f"/admin/schedules/preview?{query}").text
    rows = re.findall(r"<tr><td>([^<]+)</td><td>daily symptoms</td><td[^>]*>(\d\d:\d\d)</td>", html)
    assert rows[:3] == [
        ("Sun 08 Mar 2026 09:00 EDT", "13:00"),
        ("Mon 09 Mar 2026 09:00 EDT", "13:00"),
        ("Sun 15 Mar 2026 09:00 EDT", "13:00"),
    ]
    before = client.get(f"/admin/schedules/preview?{query.replace('days=sun&', '')}").text
    assert "Mon 09 Mar 2026 09:00 EDT" in before
    london = client.get(
        f"/admin/schedules/preview?{query.replace('America/New_York', 'Europe/London')}"
    )
    assert "Sun 08 Mar 2026 09:00 GMT" in london.text  # Europe changes on 29 March


def test_the_preview_explains_a_schedule_it_cannot_show(client: FlaskClient, world: World) -> None:
    login(client, email=CAROL)
    cases = {
        "time=22:30&kind=recurring&days=mon": "22:30 is inside quiet hours",
        "time=09:00&kind=recurring": "choose at least one day of the week",
        "time=9am&kind=recurring&days=mon": "time must be HH:MM",
        "time=09:00&kind=infusion&offsets=": "give the days after each infusion",
        "time=09:00&kind=infusion&offsets=1,400": "days after infusion must be a comma list",
    }
    for query, problem in cases.items():
        html = client.get(f"/admin/schedules/preview?flow=daily_symptoms&{query}").text
        assert "Cannot preview:" in html and problem in html, (query, html)


def test_the_preview_of_an_infusion_schedule_counts_days_from_an_infusion_today(
    client: FlaskClient, world: World
) -> None:
    login(client, email=CAROL)
    query = "flow=post_infusion&time=10:00&kind=infusion&offsets=1,3&zone=America/Chicago"
    html = client.get(f"/admin/schedules/preview?{query}").text
    assert "after an infusion today" in html
    assert re.findall(r"<td>(\w\w\w \d\d \w\w\w 2026 10:00 CDT)</td>", html) == [
        "Wed 11 Mar 2026 10:00 CDT",
        "Fri 13 Mar 2026 10:00 CDT",
    ]


def test_without_javascript_the_preview_button_shows_the_same_list_on_the_form_page(
    client: FlaskClient, world: World
) -> None:
    login(client, email=CAROL)
    page = client.get(
        "/admin/schedules/new?flow=weekly_mood&time=10:00&kind=recurring&days=fri"
        "&zone=America/New_York"
    ).text
    assert 'id="schedule-preview" aria-live="polite"' in page
    assert "Fri 13 Mar 2026 10:00 EDT" in page
    assert '<option value="weekly_mood" selected>' in page


def test_a_schedule_in_quiet_hours_is_refused_and_nothing_is_added(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    before = program_schedules(ctx, world)
    form = {"flow": "daily_symptoms", "time": "07:30", "kind": "recurring", "days": "mon"}
    response = submit(client, "/admin/schedules/new", form)
    assert response.status_code == 400
    assert "Not saved: 07:30 is inside quiet hours (21:00-08:00 local)" in response.text
    assert program_schedules(ctx, world) == before


def test_editing_a_schedule_retires_the_old_row_and_drops_what_it_planned(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        (default,) = session.scalars(
            select(Schedule).where(Schedule.program_id == world.program_id)
        ).all()
        default_id = default.id
        session.add(
            CheckIn(
                patient_id=world.alice_id,
                schedule_id=default_id,
                flow="daily_symptoms",
                idempotency_key="planned-at-nine",
                local_date=T0.date(),
                due_at=T0 + timedelta(minutes=4),
                expires_at=T0 + timedelta(hours=10),
                status="pending",
                state={},
                created_at=T0,
            )
        )
    login(client, email=CAROL)
    edit = f"/admin/schedules/{default_id}/edit"
    assert (
        '<input id="s-time" name="time" type="time" required value="09:00">'
        in client.get(edit).text
    )
    form = {"flow": "daily_symptoms", "time": "11:15", "kind": "recurring", "days": "mon"}
    assert submit(client, edit, form).status_code == 303
    assert program_schedules(ctx, world) == [
        ("daily_symptoms", "09:00", "mon,tue,wed,thu,fri,sat,sun", None, False),
        ("daily_symptoms", "11:15", "mon", None, True),
    ]
    with ctx.db.session() as session:
        assert session.scalars(select(CheckIn)).all() == []
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("schedule.%"))
        ).all()
    assert actions == ["schedule.remove", "schedule.add", "schedule.replace"]
    assert client.get(edit).status_code == 404  # the old one is retired


def test_removing_a_schedule_stops_it_and_says_so(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        extra = schedules.add(
            session,
            program,
            flow="weekly_mood",
            local_time=time(10),
            days="mon",
            patient=None,
            now=T0,
            actor="test",
        )
        extra_id = extra.id
    login(client, email=CAROL)
    response = post(client, f"/admin/schedules/{extra_id}/remove", "/admin/schedules")
    assert response.status_code == 303
    html = client.get("/admin/schedules").text
    assert "Removed the weekly mood at 10:00 schedule; nothing more is planned from it." in html
    assert program_schedules(ctx, world)[-1][-1] is False


def test_texting_hours_can_narrow_but_never_widen(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    submit(client, "/admin/texting-hours", {"from": "09:00", "until": "20:00"}, "/admin/schedules")
    html = client.get("/admin/schedules").text
    assert "Scheduled texts now go out from 09:00 until 20:00, local time." in html
    submit(client, "/admin/texting-hours", {"from": "07:00", "until": "20:00"}, "/admin/schedules")
    assert "Not saved: texting cannot start before 08:00" in client.get("/admin/schedules").text
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        assert (program.quiet_end, program.quiet_start) == (time(9), time(20))


# --- staff and the on-call roster --------------------------------------------------------


def test_the_roster_shows_who_is_on_call_and_warns_when_nobody_is(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    html = client.get("/admin/staff").text
    roster = html[html.index("On call now") : html.index("Add a staff member")]
    assert "Bob" in roster and "+16175550199" in roster
    with ctx.db.session() as session:
        session.get_one(StaffUser, world.bob_id).on_call = False
    assert "Nobody is on call." in client.get("/admin/staff").text


def test_an_admin_adds_a_clinician_who_can_then_sign_in(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    form = {
        "email": "Ivy@Example.org",
        "name": "Ivy Nurse",
        "role": "clinician",
        "phone": "617-555-0142",
        "on_call": "yes",
        "password": "a-first-password-for-ivy",
    }
    assert submit(client, "/admin/staff/new", form).status_code == 303
    html = client.get("/admin/staff").text
    assert "Added Ivy Nurse." in html
    post(client, "/logout", "/")
    response = login(client, email="ivy@example.org", password="a-first-password-for-ivy")
    assert response.status_code == 303
    with ctx.db.session() as session:
        ivy = session.scalars(select(StaffUser).where(StaffUser.email == "ivy@example.org")).one()
        assert (ivy.program_id, ivy.phone, ivy.on_call) == (world.program_id, "+16175550142", True)


def test_staff_forms_refuse_bad_input_in_one_line(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    base = {"email": "ivy@example.org", "name": "Ivy", "role": "clinician", "password": "x" * 12}
    cases = {
        "on call needs a phone number": {**base, "on_call": "yes"},
        "password must be at least 12 characters": {**base, "password": "short"},
        "a staff member with email bob@example.org already exists": {
            **base,
            "email": "bob@example.org",
        },
        "not a valid phone number": {**base, "phone": "12"},
        "role must be one of admin, clinician": {**base, "role": "owner"},
    }
    for message, form in cases.items():
        response = submit(client, "/admin/staff/new", form)
        assert response.status_code == 400 and message in response.text, message
    with ctx.db.session() as session:
        assert session.scalar(select(StaffUser).where(StaffUser.email == "ivy@example.org")) is None


def test_an_admin_cannot_demote_themselves_or_leave_the_program_without_an_admin(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    mine = f"/admin/staff/{world.carol_id}"
    demote = {"name": "Carol", "role": "clinician", "active": "yes"}
    response = submit(client, mine, demote)
    assert response.status_code == 400
    assert "you cannot remove your own admin role or account" in response.text
    with ctx.db.session() as session:
        assert session.get_one(StaffUser, world.carol_id).role == "admin"
    # Bob becomes an admin, then carol cannot be made inactive by bob if she were the last...
    promote = {"name": "Bob", "role": "admin", "phone": "+16175550199", "on_call": "yes"}
    assert (
        submit(client, f"/admin/staff/{world.bob_id}", {**promote, "active": "yes"}).status_code
        == 303
    )
    post(client, "/logout", "/")
    login(client)  # bob, now an admin
    off = {"name": "Carol", "role": "admin"}  # no "active": deactivate
    assert submit(client, mine, off).status_code == 303
    with ctx.db.session() as session:
        assert session.get_one(StaffUser, world.carol_id).active is False
    assert submit(client, f"/admin/staff/{world.bob_id}", {**promote}).status_code == 400


def test_a_new_password_set_by_an_admin_ends_that_members_sessions(
    app: Any, client: FlaskClient, ctx: Context, world: World
) -> None:
    bobs = app.test_client()
    login(bobs)
    assert bobs.get("/").status_code == 200
    login(client, email=CAROL)
    response = submit(
        client,
        f"/admin/staff/{world.bob_id}/password",
        {"password": "bobs-new-password-1"},
        f"/admin/staff/{world.bob_id}",
    )
    assert response.status_code == 303
    assert "their other sessions have ended" in client.get("/admin/staff").text
    assert bobs.get("/").status_code == 302
    assert login(bobs, password=PASSWORD).status_code == 401
    assert login(bobs, password="bobs-new-password-1").status_code == 303


def test_staff_change_their_own_password_and_stay_signed_in(
    client: FlaskClient, world: World
) -> None:
    login(client)
    form = {
        "current_password": "wrong-password",
        "new_password": "x" * 14,
        "confirm_password": "x" * 14,
    }
    refused = submit(client, "/account/password", form, "/account")
    assert refused.status_code == 400 and "the current password is not right" in refused.text
    form["current_password"] = PASSWORD
    assert submit(client, "/account/password", form, "/account").status_code == 303
    assert "Password changed." in client.get("/account").text
    assert client.get("/").status_code == 200  # still signed in, with the new key


# --- alert rules ---------------------------------------------------------------------------


def test_the_rules_form_covers_every_trend_parameter() -> None:
    assert {s.key for s in SETTINGS} == set(RuleParams().to_dict())


def test_an_admin_lowers_the_severe_pain_threshold_for_the_program(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    form = {"severe_at_or_above.pain": "8", "worsening_points": "2.5", "lor_days.1": "21"}
    assert submit(client, "/admin/rules", form).status_code == 303
    html = client.get("/admin/rules").text
    assert "Saved alert rules (3 changed)." in html
    assert 'name="severe_at_or_above.pain" value="8"' in html
    with ctx.db.session() as session:
        layer = session.get_one(Program, world.program_id).rule_params
    assert layer == {
        "severe_at_or_above": {"pain": 8},
        "worsening_points": 2.5,
        "lor_days": [7, 21],
    }
    params = RuleParams.from_overrides(layer)
    assert (params.severe_at_or_above["pain"], params.severe_at_or_above["fatigue"]) == (8, 9)
    with ctx.db.session() as session:
        (row,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "rules.set"))
    assert row.detail["changed"]["worsening_points"] == {"from": None, "to": 2.5}


def test_off_removes_a_severe_threshold_and_empty_means_the_default(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    submit(client, "/admin/rules", {"severe_at_or_below.mood": "off"})
    with ctx.db.session() as session:
        layer = session.get_one(Program, world.program_id).rule_params
    assert RuleParams.from_overrides(layer).severe_at_or_below == {}
    assert 'name="severe_at_or_below.mood" value="off"' in client.get("/admin/rules").text
    submit(client, "/admin/rules", {})
    with ctx.db.session() as session:
        assert session.get_one(Program, world.program_id).rule_params == {}


def test_a_bad_rule_value_is_refused_in_one_line_and_nothing_is_saved(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    for form, message in (
        ({"worsening_consecutive": "1.5"}, "must be a whole number"),
        ({"ewma_lambda": "lots"}, "Drift (EWMA): weight of the newest reading: &#39;lots&#39;"),
        ({"baseline_min": "9"}, "baseline_min"),
        ({"worsening_beyond_baseline_range": "maybe"}, "answer yes or no"),
    ):
        response = submit(client, "/admin/rules", form)
        assert response.status_code == 400 and message in response.text, (form, response.text)
    with ctx.db.session() as session:
        assert session.get_one(Program, world.program_id).rule_params == {}


# --- the audit log -----------------------------------------------------------------------


def test_the_audit_log_shows_who_did_what_when_and_from_where_newest_first(
    client: FlaskClient, ctx: Context, world: World, clock: FrozenClock
) -> None:
    login(client)
    client.get(f"/patients/{world.alice_id}")
    post(
        client,
        f"/patients/{world.alice_id}/pause",
        f"/patients/{world.alice_id}",
        until="2026-03-20",
    )
    post(client, "/logout", "/")
    clock.advance(minutes=1)
    login(client, email=CAROL)
    html = client.get("/admin/audit").text
    rows = re.findall(r'class="audit-row" data-action="([^"]+)"', html)
    rows = [r for r in rows if not r.endswith(".list")]  # the pages the helpers opened
    assert rows[:4] == ["auth.login", "auth.logout", "patient.pause", "patient.view"]
    pause = html[html.index('data-action="patient.pause"') :].split("</tr>")[0]
    assert "bob@example.org" in pause and "127.0.0.1" in pause and "until=2026-03-20" in pause
    assert f'href="/patients/{world.alice_id}"' in pause
    only = client.get("/admin/audit?action=patient.pause&actor=BOB").text
    assert re.findall(r'data-action="([^"]+)"', only) == ["patient.pause"]


def test_an_admin_never_sees_another_programs_audit_rows(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    give_dave_a_password(ctx, world)
    login(client, email="dave@example.org")
    client.get(f"/patients/{world.erin_id}")  # dave views erin, in his program
    post(client, "/logout", "/")
    login(client, email=CAROL)
    html = client.get("/admin/audit?action=patient.view").text
    assert "dave@example.org" not in html and f"patient:{world.erin_id}" not in html
    login_rows = client.get("/admin/audit?actor=dave").text
    assert "dave@example.org" not in login_rows


def test_the_audit_log_pages_and_filters_by_date(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    from checkin import audit

    with ctx.db.session() as session:
        for i in range(130):
            audit.record(
                session,
                T0 - timedelta(days=2, minutes=i),
                "test",
                "probe",
                f"patient:{world.alice_id}",
            )
    login(client, email=CAROL)
    first = client.get("/admin/audit?action=probe").text
    assert "130 events, newest first, page 1 of 2" in first
    assert len(re.findall(r'data-action="probe"', first)) == 100
    second = client.get("/admin/audit?action=probe&page=2").text
    assert len(re.findall(r'data-action="probe"', second)) == 30
    day = (T0 - timedelta(days=2)).date().isoformat()
    assert "130 events" in client.get(f"/admin/audit?action=probe&from={day}&to={day}").text
    assert "0 events" in client.get(f"/admin/audit?action=probe&from={T0.date()}").text
    bad = client.get("/admin/audit?from=2026-03-10&to=2026-03-01").text
    assert "is before the from date" in bad


def test_the_audit_log_has_no_way_to_change_a_row(app: Any) -> None:
    audit_rules = [r for r in app.url_map.iter_rules() if "audit" in r.rule]
    assert [sorted((r.methods or set()) - {"HEAD", "OPTIONS"}) for r in audit_rules] == [["GET"]]
