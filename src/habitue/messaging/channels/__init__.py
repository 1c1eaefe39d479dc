"""The seam messages leave through: one `Channel` per way out, picked by the dispatcher.

A channel sends one `Outgoing` and answers the receiver's status code, or raises
`DeliveryError` saying whether a later try may succeed. Adding a channel is one module with a
class that has `name`, `send` and `close`, and a line in `Channels.from_settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from habitue.settings import Settings


class DeliveryError(Exception):
    """A send that did not go through; `retry`: a later try may succeed."""

    def __init__(self, reason: str, *, retry: bool, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:500]
        self.retry = retry
        self.status_code = status_code


@dataclass(frozen=True)
class Outgoing:
    """One message for one recipient. `to`: an email address, a phone number, a member id
    (push) or a URL (webhook)."""

    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    """A way out: `send` answers the receiver's status code (None when it has none)."""

    name: str

    async def send(self, message: Outgoing) -> int | None: ...

    async def close(self) -> None: ...


class Channels:
    """The channels this process can send on; a channel that is not configured is None."""

    def __init__(self, channels: Mapping[str, Channel]) -> None:
        self._channels = dict(channels)

    @classmethod
    def from_settings(cls, settings: Settings) -> Channels:
        from habitue.messaging.channels import email, http, webhook

        found: dict[str, Channel] = {
            "webhook": webhook.WebhookChannel(timeout=settings.webhook_timeout_seconds)
        }
        if settings.smtp_url:
            found["email"] = email.EmailChannel(settings.smtp_url, settings.mail_from)
        if settings.sms_webhook_url:
            found["sms"] = http.SmsChannel(
                settings.sms_webhook_url, timeout=settings.webhook_timeout_seconds
            )
        if settings.push_webhook_url:
            found["push"] = http.PushChannel(
                settings.push_webhook_url, timeout=settings.webhook_timeout_seconds
            )
        return cls(found)

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
