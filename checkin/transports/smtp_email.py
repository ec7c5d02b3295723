"""Email through a real SMTP server (host and port from CHECKIN_SMTP_*), with smtplib.

The first line of a message's body is its subject. Alert emails carry what alert texts carry:
a reference, the kind, the severity and a link, never health details (email is not secure).
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from checkin.transports.base import SendResult, TransportError

# How long to wait on the mail server before giving up on this attempt (it is retried).
SMTP_TIMEOUT_SECONDS = 10


class SmtpEmail:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls = username, password, starttls

    def send_email(self, to: str, body: str) -> SendResult:
        subject, _, text = body.partition("\n")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(text.strip() or subject)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username and self.password:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise TransportError(f"recipient refused: {exc.recipients}", permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"SMTP {self.host}:{self.port}: {exc}") from exc
        return SendResult(sid=str(message["Message-ID"]), status="sent")
