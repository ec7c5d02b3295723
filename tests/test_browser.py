"""The staff pages in a real browser: Playwright drives the system Chromium against a real
`checkin serve` (gunicorn) on PostgreSQL, the way bob and carol use them.

Elements are found by their role and accessible name (labels, headings, buttons, regions), so a
form that loses its label or a section that loses its heading fails here. Screenshots of the
sign-in page, the inbox and the alert page land in tests/output/screenshots/ (gitignored);
docs/screenshots/ holds copies for the README.

Chromium, the server and the screenshots: see tests/browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from checkin import alerts
from checkin.context import Context
from tests.browser import BOB_EMAIL, CAROL_EMAIL, PASSWORD, screenshot, serve, sign_in
from tests.conftest import T0, World
from tests.fake_twilio import FakeTwilio
from tests.test_web import alert_status, raise_alert, worsening_alert

pytestmark = pytest.mark.slow

NOTE = "Called Alice: pain after the last infusion, seen in clinic today."


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """PostgreSQL only: the server is a separate process, as in production."""
    return postgres_url


@dataclass
class Site:
    url: str
    ref: str  # alice's open worsening alert
    ctx: Context


@pytest.fixture
def site(
    ctx: Context, world: World, fake_twilio: FakeTwilio, postgres_url: str, tmp_path: Path
) -> Iterator[Site]:
    """Alice with a worsening pain series and its alert, erin's alert in the other program,
    and `checkin serve --workers 1` on a free port."""
    ref = worsening_alert(ctx, world.alice_id)
    raise_alert(ctx, world.erin_id, "crisis", "urgent", T0)  # bob must never see this one
    for url in serve(postgres_url, fake_twilio, tmp_path):
        yield Site(url, ref, ctx)


def test_a_clinician_sees_the_worsening_alert_acknowledges_and_resolves_it(
    site: Site, page: Page
) -> None:
    page.goto(site.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "login")
    sign_in(page, BOB_EMAIL)

    # The inbox: alice's alert, and nothing from the other program.
    expect(page.get_by_role("heading", name="Alerts", level=1)).to_be_visible()
    row = page.get_by_role("row").filter(has_text=site.ref)
    expect(row).to_contain_text("worsening")
    expect(row).to_contain_text("Alice Example")
    expect(row).to_contain_text("open")
    expect(row).to_contain_text("2 h ago")
    expect(page.get_by_text("Erin Other")).to_have_count(0)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    screenshot(page, "inbox")

    # The alert page: the evidence that fired it and the readings it judged.
    row.get_by_role("link").click()
    expect(page).to_have_url(f"{site.url}/alerts/{site.ref}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("worsening")
    evidence = page.get_by_role("region", name="Why this alert fired")
    expect(evidence).to_contain_text("worsening vs baseline")
    expect(evidence).to_contain_text("median")
    pain = page.get_by_role("table", name="Pain")
    expect(pain.get_by_text("(judged)")).to_have_count(2)  # the 6 and the 7
    status = page.locator("dd.status")
    expect(status).to_have_text("open")
    screenshot(page, "alert")

    # Acknowledge, then resolve with a note.
    actions = page.get_by_role("region", name="Act on this alert")
    actions.get_by_role("button", name=re.compile("Acknowledge")).click()
    expect(page.get_by_role("status")).to_contain_text(f"Acknowledged: alert {site.ref}.")
    expect(status).to_have_text("acknowledged")
    expect(page.locator("dl.facts")).to_contain_text("by Bob")
    expect(actions.get_by_role("button", name=re.compile("Acknowledge"))).to_have_count(0)

    actions.get_by_label(re.compile("Resolution note")).fill(NOTE)
    actions.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("status")).to_contain_text(f"Resolved: alert {site.ref}.")
    expect(status).to_have_text("resolved")
    expect(page.locator("dd.note")).to_have_text(NOTE)
    expect(page.get_by_role("region", name="Act on this alert")).to_have_count(0)
    assert alert_status(site.ctx, site.ref) == "resolved"

    # Resolved alerts leave the default inbox.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("row").filter(has_text=site.ref)).to_have_count(0)


def test_a_wrong_password_shows_the_error_and_keeps_the_email(site: Site, page: Page) -> None:
    page.goto(site.url + "/login")
    sign_in(page, BOB_EMAIL, "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value(BOB_EMAIL)
    expect(page.get_by_label("Password")).to_be_focused()  # ready for the second try
    expect(page.get_by_role("heading", name="Alerts")).to_have_count(0)


@pytest.mark.parametrize(
    ("email", "shown"), [(BOB_EMAIL, "Bob (clinician)"), (CAROL_EMAIL, "Carol (admin)")]
)
def test_a_clinician_and_an_admin_both_sign_in_with_the_keyboard(
    site: Site, page: Page, email: str, shown: str
) -> None:
    page.goto(site.url + "/login")
    expect(page.get_by_label("Email")).to_be_focused()  # autofocus: type straight away
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Alerts", level=1)).to_be_visible()
    expect(page.locator(".who")).to_have_text(shown)
    expect(page.get_by_role("row").filter(has_text=site.ref)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    page.goto(site.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_the_texted_link_leads_through_sign_in_to_the_alert(site: Site, page: Page) -> None:
    with site.ctx.db.session() as session:
        text = alerts.staff_text(alerts.by_ref(session, site.ref), site.url)
    link = re.search(r"http://\S+", text)
    assert link is not None, text
    assert urlsplit(link.group(0)).path == f"/alerts/{site.ref}"

    page.goto(link.group(0))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Sign in to see that page.")
    sign_in(page, BOB_EMAIL)
    expect(page).to_have_url(f"{site.url}/alerts/{site.ref}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(site.ref)
