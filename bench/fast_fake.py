"""A Twilio-compatible Messages API for benchmarks, on aiohttp (keep-alive, one event loop).

The tests' fake (tests/fake_twilio.py) is thread-per-connection http.server: fine for
correctness, but it tops out near 200 requests a second here, which would measure the fake,
not checkin. This one answers the same POST with the same JSON, and counts.

    python -m bench.fast_fake PORT
"""

from __future__ import annotations

import base64
import secrets
import sys
from collections import Counter

from aiohttp import web

from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN

PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
AUTH = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


def make_app() -> web.Application:
    sent: Counter[str] = Counter()

    async def create(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != AUTH:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        form = await request.post()
        to = str(form.get("To", ""))
        sent[to] += 1
        sid = "SM" + secrets.token_hex(16)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": ACCOUNT_SID,
                "to": to,
                "from": form.get("From"),
                "body": form.get("Body"),
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"{PATH[:-5]}/{sid}.json",
            },
            status=201,
        )

    async def stats(request: web.Request) -> web.Response:
        if request.path == "/_reset":
            sent.clear()
        return web.json_response({"sent": sum(sent.values()), "distinct_to": len(sent)})

    app = web.Application()
    app.router.add_post(PATH, create)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_reset", stats)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
