"""Shared parts of the browser tests: Debian's Chromium driven by Playwright, a real
`checkin serve` to point it at, and the screenshots the README uses.

Chromium comes from Debian (`apt-get install -y chromium`, done by .ci/run when it is missing);
Playwright never downloads a browser. Without /usr/bin/chromium the browser tests skip, unless
CHECKIN_REQUIRE_BROWSER=1 (CI), where they fail instead. The `browser` and `page` fixtures in
conftest.py use `launch` and `new_page` below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import T0, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.procs import Process, free_port, healthy, wait_until

CHROMIUM = "/usr/bin/chromium"
# Read at import: the autouse clean_environment fixture hides CHECKIN_* from each test.
REQUIRE_BROWSER = os.environ.get("CHECKIN_REQUIRE_BROWSER") == "1"
# The closed network refuses Chromium's background connections; these flags stop it trying.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "output" / "screenshots"
PASSWORD = "a-long-test-password"  # what the test world hashed for every staff member
BOB_EMAIL = "bob@example.org"
CAROL_EMAIL = "carol@example.org"
# The server's clock starts two hours after T0 (12:00 in New York on Tue 10 March 2026).
SERVER_CLOCK_START = T0 + timedelta(hours=2)


def launch() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM}: apt-get install -y chromium (Debian's package)"
        if REQUIRE_BROWSER:
            pytest.fail(f"browser required (CHECKIN_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) per test, at a laptop's size."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def serve(postgres_url: str, fake: FakeTwilio, tmp_path: Path, **extra_env: str) -> Iterator[str]:
    """`checkin serve --workers 1` on a free port, its clock at SERVER_CLOCK_START; yields its
    URL, and fails the test if the server logged a traceback."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = twilio_env(
        postgres_url,
        fake,
        CHECKIN_PUBLIC_URL=url,
        CHECKIN_CLOCK_START=SERVER_CLOCK_START.isoformat(),
        **extra_env,
    )
    web = Process(["serve", "--port", str(port), "--workers", "1"], env, tmp_path, "web")
    try:
        wait_until(lambda: healthy(url), 20, "checkin serve to answer /healthz")
        yield url
    finally:
        web.stop()
    assert "Traceback" not in web.log()


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def screenshot(page: Page, name: str, full_page: bool = True) -> None:
    """tests/output/screenshots/NAME.png; `full_page=False` keeps what fits the window."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)
