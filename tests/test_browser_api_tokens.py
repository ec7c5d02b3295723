"""A personal API token, end to end in a real browser against a real `checkin serve` on
PostgreSQL: bob creates one on his account page, copies it, an integration reads the API with
it, and revoking it on the page stops it at once. The page passes axe's WCAG checks with the
new token shown, and its screenshot lands in tests/output/screenshots/account-token.png."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from checkin.context import Context
from tests.browser import BOB_EMAIL, screenshot, serve, sign_in
from tests.conftest import World
from tests.fake_twilio import FakeTwilio
from tests.test_browser_demo import WCAG, _violations

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """PostgreSQL only: the server is a separate process, as in production."""
    return postgres_url


@pytest.fixture
def url(
    ctx: Context, world: World, fake_twilio: FakeTwilio, postgres_url: str, tmp_path: Path
) -> Iterator[str]:
    yield from serve(postgres_url, fake_twilio, tmp_path)


def api_status(url: str, path: str, token: str) -> tuple[int, dict[str, object]]:
    request = Request(url + "/api/v1" + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except HTTPError as error:
        return error.code, json.load(error)


def test_a_token_made_on_the_account_page_reads_the_api_until_it_is_revoked(
    url: str, page: Page
) -> None:
    page.goto(url + "/login")
    sign_in(page, BOB_EMAIL)
    page.goto(url + "/account")
    page.get_by_label("Name (what will use it").fill("EHR nightly import")
    page.get_by_label("Expires after (days").fill("30")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("alert")).to_contain_text("shown only this once")
    token = page.get_by_label("Your new token").input_value()
    assert token.startswith("ck_")
    assert _violations(Axe(), page) == [], WCAG
    screenshot(page, "account-token")

    status, body = api_status(url, "/patients", token)
    assert status == 200 and body["total"] == 1

    page.goto(url + "/account")
    expect(page.get_by_label("Your new token")).to_have_count(0)  # shown once only
    row = page.locator("tr.token-row").filter(has_text="EHR nightly import")
    expect(row).to_contain_text(token[:11])
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash-success")).to_contain_text("no longer works")
    expect(row).to_contain_text("revoked")
    status, body = api_status(url, "/patients", token)
    assert status == 401 and "revoked" in str(body["error"])
