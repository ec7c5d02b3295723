"""A Twilio-compatible Messages API on loopback, for tests: real HTTP, real official client.

It speaks the subset checkin uses: POST /2010-04-01/Accounts/{AccountSid}/Messages.json with
HTTP basic auth, answering 201 with a Message resource, or an error on demand (429, 500, or a
Twilio error code such as 21610 / 21211). `callback(sid, status)` posts a signed status
callback to the message's StatusCallback URL, as Twilio does.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
FROM_NUMBER = "+16175550000"


@dataclass
class Sent:
    sid: str
    to: str
    body: str
    from_: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    form: dict[str, str]


@dataclass
class Failure:
    http_status: int
    code: int | None
    message: str


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    sent: list[Sent] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(
        self, http_status: int, code: int | None = None, message: str = "failure", times: int = 1
    ) -> None:
        with self.lock:
            self.failures.extend(Failure(http_status, code, message) for _ in range(times))

    def to(self, number: str) -> list[Sent]:
        with self.lock:
            return [s for s in self.sent if s.to == number]

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()
            self.failures.clear()
            self.requests = 0

    def callback(
        self, sid: str, status: str, error_code: int | None = None, url: str | None = None
    ) -> int:
        """Post a signed status callback for `sid`, as Twilio would; returns the HTTP status."""
        with self.lock:
            message = next(s for s in self.sent if s.sid == sid)
        target = url or message.status_callback
        assert target, "the message was sent without a StatusCallback"
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "To": message.to,
            "From": message.from_ or "",
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        signature = RequestValidator(self.auth_token).compute_signature(target, params)
        request = urllib.request.Request(
            target,
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
            headers={"X-Twilio-Signature": signature},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as Twilio's API does; every reply carries a Content-Length.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake.handle(self)

            def do_GET(self) -> None:  # noqa: N802 - counters for benchmarks in other processes
                if self.path == "/_reset":
                    fake.reset()
                with fake.lock:
                    stats = {"sent": len(fake.sent), "distinct_to": len({s.to for s in fake.sent})}
                _reply(self, 200, stats)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(request.rfile.read(length).decode()))
        expected_path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if request.path != expected_path:
            return _reply(request, 404, {"code": 20404, "message": "not found", "status": 404})
        if request.headers.get("Authorization") != _basic(self.account_sid, self.auth_token):
            return _reply(request, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        with self.lock:
            self.requests += 1
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            return _reply(
                request,
                failure.http_status,
                {
                    "code": failure.code,
                    "message": failure.message,
                    "status": failure.http_status,
                    "more_info": f"https://www.twilio.com/docs/errors/{failure.code}",
                },
            )
        if "To" not in form or "Body" not in form:
            return _reply(request, 400, {"code": 21602, "message": "Body required", "status": 400})
        sid = "SM" + secrets.token_hex(16)
        sent = Sent(
            sid,
            form["To"],
            form["Body"],
            form.get("From"),
            form.get("MessagingServiceSid"),
            form.get("StatusCallback"),
            form,
        )
        with self.lock:
            self.sent.append(sent)
        return _reply(
            request,
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": sent.to,
                "from": sent.from_,
                "messaging_service_sid": sent.messaging_service_sid,
                "body": sent.body,
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "error_code": None,
                "error_message": None,
                "uri": f"{expected_path[:-5]}/{sid}.json",
            },
        )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _reply(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
