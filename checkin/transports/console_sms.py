"""Prints texts instead of sending them: the demo and local development use it."""

from __future__ import annotations

import sys
import uuid
from typing import TextIO

from checkin.transports.base import SendResult


class ConsoleSms:
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send_sms(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None,
        validity_seconds: int | None = None,
    ) -> SendResult:
        del status_callback, validity_seconds  # printed at once: delivered, nothing calls back
        stream = self.stream or sys.stdout
        print(f"[sms to {to}] {body}", file=stream, flush=True)
        return SendResult(sid="SM" + uuid.uuid4().hex, status="delivered")
