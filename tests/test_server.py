"""`checkin serve`'s access log: what operators need (path, status, server time), and nothing
a patient search put in the query string."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.browser import serve
from tests.fake_twilio import FakeTwilio

pytestmark = pytest.mark.slow


def test_the_access_log_has_each_requests_server_time_and_never_its_query_string(
    postgres_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    for url in serve(postgres_url, fake_twilio, tmp_path):
        response = requests.get(
            f"{url}/patients?q=Alice+Example&phone=6175550101", allow_redirects=False, timeout=10
        )
        assert response.status_code == 302  # to sign-in: the search still reaches the log
    log = (tmp_path / "web.log").read_text()
    line = re.search(r'^127\.0\.0\.1 "GET /patients" 302 \d+ (\d+)ms$', log, re.M)
    assert line is not None, log
    assert "Alice" not in log and "6175550101" not in log and "q=" not in log
