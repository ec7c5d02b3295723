"""`make run`'s first look, in a real browser: `checkin demo` seeds its story (a worsening
patient, an open crisis, months of readings) and a clinician sees what the product is for.

This runs the demo exactly as `make run` does (one process, SQLite, console SMS, the real
clock), in a temporary folder. Its screenshots are the README's: the inbox, a patient's page
and the simulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from checkin import demo
from tests.browser import screenshot, sign_in
from tests.procs import Process, free_port, healthy, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"CHECKIN_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}
    process = Process(["demo", "--port", str(port)], env, tmp_path, "demo")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url), 60, "checkin demo to answer /healthz")
        yield url
    finally:
        process.stop()
    assert "Traceback" not in process.log()


def test_the_demo_shows_a_crisis_a_worsening_patient_and_months_of_readings(
    demo_url: str, page: Page
) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(demo_url + "/")
    sign_in(page, "bob@example.org", "demo-password-bob")
    rows = page.locator("tr.alert-row")
    expect(rows.first).to_contain_text("crisis")  # urgent first
    expect(rows.first).to_contain_text("Beatriz Demo")
    worsening = rows.filter(has_text="worsening")
    expect(worsening).to_contain_text("Chris Demo")
    expect(worsening).to_contain_text("pain")
    screenshot(page, "demo-inbox", full_page=False)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients").click()
    page.get_by_role("link", name="Chris Demo").click()
    expect(page.get_by_role("heading", name="Readings over 90 days")).to_be_visible()
    pain = page.locator("#chart-pain")
    expect(pain.locator("figcaption")).to_contain_text("readings")
    caption = pain.locator("figcaption").inner_text()
    assert int(caption.split(":")[1].split()[0]) >= 75  # about 88% of 90 days answered
    expect(page.locator("dd.open-alerts")).to_contain_text("worsening")
    infusions = page.locator("dd.infusions").inner_text()
    assert infusions.count("-") >= 2 * 3, infusions  # at least three dates in 90 days
    expect(page.locator("table.transcript")).to_contain_text("How tired have you felt today?")
    screenshot(page, "demo-patient", full_page=False)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Simulator").click()
    page.get_by_label("Play the patient").select_option(label=f"Chris Demo ({demo.DEMO_PHONES[2]})")
    page.get_by_role("button", name="Open phone").click()
    thread = page.get_by_role("list", name="Texts, oldest first")
    expect(thread).to_contain_text("Thank you, your answers are saved.")
    page.get_by_label("Reply as Chris Demo").fill("HELP")
    page.get_by_role("button", name="Send").click()
    expect(thread.locator("li").last).to_contain_text("STOP")
    expect(thread.locator("li").last).to_be_in_viewport()  # opens at the newest text
    screenshot(page, "demo-simulator", full_page=False)


# WCAG 2.1 A and AA, as axe-core checks them (the engine most accessibility audits use).
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def test_every_main_page_passes_axe_wcag_aa_checks(demo_url: str, page: Page) -> None:
    axe = Axe()  # axe-core, bundled by axe-playwright-python; run by Playwright, not a <script>
    page.goto(demo_url + "/login")
    problems = {"/login": _violations(axe, page)}
    sign_in(page, "carol@example.org", "demo-password-carol")
    page.get_by_role("link", name=re.compile("worsening")).first.click()
    problems["alert page"] = _violations(axe, page)
    for path in (
        "/",
        "/patients",
        "/patients/3",
        "/patients/3?days=365",
        "/admin",
        "/admin/patients/new",
        "/admin/patients/import",
        "/admin/schedules",
        "/admin/schedules/new",
        "/admin/staff",
        "/admin/staff/1",
        "/admin/rules",
        "/admin/exports",
        "/admin/audit",
        "/account",
        "/simulator?patient=3",
    ):
        page.goto(demo_url + path)
        problems[path] = _violations(axe, page)
    assert {k: v for k, v in problems.items() if v} == {}
    # The check can fail: a page without a language, a title or a label for its field.
    page.set_content('<main><input id="q"></main>')
    caught = " ".join(_violations(axe, page))
    assert all(rule in caught for rule in ("html-has-lang", "document-title", "label")), caught


def _violations(axe: Axe, page: Page) -> list[str]:
    results = axe.run(page, options=WCAG)
    return [
        f"{v['id']} ({v['impact']}): {len(v['nodes'])} node(s), e.g. {v['nodes'][0]['html'][:120]}"
        for v in results.response["violations"]
    ]
