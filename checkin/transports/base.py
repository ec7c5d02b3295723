"""One small interface for every outbound channel (after healthchecks' Transport)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TransportError(Exception):
    """A send that did not happen. `permanent` means retrying cannot help (an invalid number,
    an opted-out recipient); otherwise the send may be retried later."""

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.permanent = permanent


@dataclass(frozen=True)
class SendResult:
    sid: str | None
    status: str  # the provider's word: queued, accepted, sent...


class SmsTransport(Protocol):
    name: str

    def send_sms(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None,
        validity_seconds: int | None = None,
    ) -> SendResult: ...
