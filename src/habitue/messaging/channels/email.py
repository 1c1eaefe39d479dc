"""Email over SMTP (aiosmtplib): a text and an HTML part, the caller's headers."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from habitue.messaging.channels import DeliveryError, Outgoing

_TEMPORARY = range(400, 500)


class EmailChannel:
    """`smtp://host:port`, `smtp+starttls://user:pass@host:587`, `smtps://user:pass@host:465`."""

    name = "email"

    def __init__(self, url: str, sender: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
        self.port = parts.port or default_port
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender
        self.timeout = timeout

    def build(self, message: Outgoing) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = email.utils.formatdate(localtime=False)
        domain = email.utils.parseaddr(self.sender)[1].partition("@")[2] or "localhost"
        mail["Message-ID"] = email.utils.make_msgid(domain=domain)
        for name, value in message.headers.items():
            mail[name] = value
        mail.set_content(message.text)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def send(self, message: Outgoing) -> int | None:
        mail = self.build(message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.scheme == "smtps",
                start_tls=True if self.scheme == "smtp+starttls" else False,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            code = codes[0] if codes else None
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise DeliveryError(
                f"recipient refused: {detail}",
                retry=code is None or code in _TEMPORARY,
                status_code=code,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}",
                retry=exc.code in _TEMPORARY,
                status_code=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}", retry=True) from exc
        return 250

    async def close(self) -> None:
        return None
