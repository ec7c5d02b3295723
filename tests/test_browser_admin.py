"""The patient page, the admin pages and the simulator in a real browser: Playwright drives
Debian's Chromium against a real `checkin serve` on PostgreSQL, the way carol and bob use them.

Screenshots of the patient page, the enrolment form, the schedule form with its live preview
and the simulator land in tests/output/screenshots/ (see tests/test_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from checkin.context import Context
from checkin.models import Answer, ConsentEvent, Patient, Schedule
from tests.browser import BOB_EMAIL, CAROL_EMAIL, screenshot, serve, sign_in
from tests.conftest import World
from tests.fake_twilio import FakeTwilio
from tests.test_web import pain_series

pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    ctx: Context
    world: World
    fake: FakeTwilio


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """PostgreSQL only: the server is a separate process, as in production."""
    return postgres_url


@pytest.fixture
def server(
    ctx: Context, world: World, fake_twilio: FakeTwilio, postgres_url: str, tmp_path: Path
) -> Iterator[Server]:
    pain_series(ctx, world.alice_id, [3, 3, 4, 3, 4, 3, 3, 4, 6, 7])
    for url in serve(postgres_url, fake_twilio, tmp_path):
        yield Server(url, ctx, world, fake_twilio)


@pytest.fixture
def demo_server(
    ctx: Context, world: World, fake_twilio: FakeTwilio, postgres_url: str, tmp_path: Path
) -> Iterator[Server]:
    for url in serve(postgres_url, fake_twilio, tmp_path, CHECKIN_DEMO="1"):
        yield Server(url, ctx, world, fake_twilio)


def test_a_clinician_opens_alices_chart_and_reads_it_as_a_table(server: Server, page: Page) -> None:
    page.goto(server.url + "/login")
    sign_in(page, BOB_EMAIL)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients").click()
    page.get_by_role("link", name="Alice Example").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Alice Example")
    pain = page.locator("#chart-pain")
    expect(pain.locator("svg")).to_be_visible()
    expect(pain.locator("figcaption")).to_contain_text("10 readings")
    pain.get_by_text("as a table").click()
    table = pain.get_by_role("region", name=re.compile("Pain .* readings"))
    expect(table.get_by_role("row")).to_have_count(11)  # a header and ten readings
    expect(table.get_by_role("row").nth(1)).to_contain_text("7")  # newest first
    page.get_by_role("link", name="365 days").click()
    expect(page.get_by_role("heading", name="Readings over 365 days")).to_be_visible()
    expect(page.locator("#schedules")).to_contain_text("daily symptoms")
    screenshot(page, "patient")


def test_a_clinician_pauses_a_patient_from_her_page(server: Server, page: Page) -> None:
    page.goto(f"{server.url}/patients/{server.world.alice_id}")
    sign_in(page, BOB_EMAIL)
    actions = page.get_by_role("region", name="Actions")
    actions.get_by_label("Pause check-ins until").fill("2026-03-31")
    actions.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("until the end of 2026-03-31")
    expect(page.locator("dd.status")).to_have_text("paused until 2026-03-31")
    page.get_by_role("button", name="Resume check-ins now").click()
    expect(page.locator("dd.status")).to_have_text("active")


def test_a_clinician_is_refused_the_admin_pages(server: Server, page: Page) -> None:
    page.goto(server.url + "/login")
    sign_in(page, BOB_EMAIL)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ("/admin", "/admin/patients/new", "/admin/schedules", "/admin/audit"):
        response = page.goto(server.url + path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.goto(f"{server.url}/patients/{server.world.alice_id}")
    expect(page.get_by_text("Give Alice Example their own schedule")).to_have_count(0)


def test_an_admin_enrols_a_patient_with_the_consent_record(server: Server, page: Page) -> None:
    page.goto(server.url + "/login")
    sign_in(page, CAROL_EMAIL)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Enrol a patient").click()
    page.get_by_label("Name").fill("Gina Example")
    page.get_by_label("Mobile number").fill("(617) 555-01")  # one digit short
    page.get_by_label("Time zone").select_option("America/Denver")
    page.get_by_label("How consent was obtained").select_option("phone_call")
    page.get_by_label("The patient agreed to receive these texts").check()
    page.get_by_role("button", name="Enrol patient").click()
    expect(page.get_by_role("alert")).to_contain_text("not a valid phone number")
    expect(page.get_by_label("Name")).to_have_value("Gina Example")  # nothing retyped
    expect(page.get_by_label("Time zone")).to_have_value("America/Denver")
    screenshot(page, "enrol")

    page.get_by_label("Mobile number").fill("(617) 555-0107")
    page.get_by_label("The patient agreed to receive these texts").check()
    page.get_by_role("button", name="Enrol patient").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Gina Example")
    expect(page.get_by_role("status")).to_contain_text("Enrolled Gina Example; welcome text sent.")
    expect(page.locator("dd.timezone")).to_have_text("America/Denver")
    expect(page.locator("table.consent")).to_contain_text("phone call")
    assert [s.to for s in server.fake.sent] == ["+16175550107"]
    with server.ctx.db.session() as session:
        method = session.scalar(
            select(ConsentEvent.method)
            .join(Patient, Patient.id == ConsentEvent.patient_id)
            .where(Patient.phone == "+16175550107")
        )
    assert method == "phone_call"


def test_an_admin_builds_a_schedule_watching_the_live_preview(server: Server, page: Page) -> None:
    page.goto(server.url + "/admin/schedules")
    sign_in(page, CAROL_EMAIL)
    page.get_by_role("link", name="Add a schedule").click()
    form = page.locator("#schedule-form")
    preview = page.locator("#schedule-preview")
    form.get_by_label("What to ask").select_option("weekly_mood")
    form.get_by_label("Local time").fill("10:30")
    for day in ("Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
        form.get_by_label(day, exact=True).uncheck()
    form.get_by_label("Preview for a patient in").select_option("America/New_York")
    # The clinic's server clock: Tue 10 March 2026, 12:00 in New York.
    expect(preview).to_contain_text("Mon 16 Mar 2026 10:30 EDT")  # no click: the live preview
    expect(preview.get_by_role("row")).to_have_count(5)  # a header and four Mondays
    form.get_by_label("Local time").fill("22:00")
    expect(preview).to_contain_text("Cannot preview: 22:00 is inside quiet hours")
    form.get_by_label("Local time").fill("10:30")
    expect(preview).to_contain_text("Mon 16 Mar 2026 10:30 EDT")
    screenshot(page, "schedule")
    form.get_by_role("button", name="Add schedule").click()
    expect(page.get_by_role("status")).to_contain_text("Saved: weekly mood at 10:30.")
    row = page.get_by_role("row").filter(has_text="weekly mood")
    expect(row).to_contain_text("Mon")
    with server.ctx.db.session() as session:
        added = session.scalars(select(Schedule).where(Schedule.flow == "weekly_mood")).one()
    assert (f"{added.local_time:%H:%M}", added.days) == ("10:30", "mon")


def test_the_simulator_answers_a_check_in_through_the_signed_webhook(
    demo_server: Server, page: Page
) -> None:
    alice = demo_server.world.alice_id
    page.goto(f"{demo_server.url}/patients/{alice}")
    sign_in(page, BOB_EMAIL)
    page.get_by_label("Send a check-in now").select_option("daily_symptoms")
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("status")).to_contain_text("sent")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Simulator").click()
    page.get_by_label("Play the patient").select_option(str(alice))
    page.get_by_role("button", name="Open phone").click()
    thread = page.get_by_role("list", name="Texts, oldest first")
    expect(thread).to_contain_text("How tired have you felt today?")
    reply = page.get_by_label("Reply as Alice Example")
    for answer, next_question in (("4", "pain"), ("3", "mood")):
        reply.fill(answer)
        page.get_by_role("button", name="Send").click()
        expect(thread.locator("li").last).to_contain_text(next_question)
    reply.fill("7")
    page.get_by_role("button", name="Send").click()
    expect(thread.locator("li").last).to_contain_text("Thank")
    screenshot(page, "simulator")
    with demo_server.ctx.db.session() as session:
        answers = dict(
            session.execute(
                select(Answer.measure, Answer.value).where(Answer.patient_id == alice)
            ).all()
        )
    assert answers == {"fatigue": 4, "pain": 3, "mood": 7}


def test_the_simulator_is_not_there_outside_demo_mode(server: Server, page: Page) -> None:
    with urlopen(server.url + "/healthz") as response:
        assert response.status == 200
    page.goto(server.url + "/login")
    sign_in(page, CAROL_EMAIL)
    response = page.goto(server.url + "/simulator")
    assert response is not None and response.status == 404
    expect(page.get_by_role("link", name="Simulator")).to_have_count(0)
