"""A real SMTP server (aiosmtpd) for the delivery tests, in a thread of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.controller import Controller

from habitue.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the server received; `refuse` answers each RCPT with that reply instead."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: str | None = None
    refused: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if self.refuse is not None:
            with self.lock:
                self.refused += 1
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append(msg)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def wait(self, count: int, timeout: float = 10.0, *, to: set[str] | None = None) -> None:
        """Until `count` messages arrived (only those to one of `to`, when given)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                got = [m for m in self.messages if to is None or m["To"] in to]
            if len(got) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"{len(got)} messages received, {count} expected")


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def mail_settings(settings: Settings, smtp: tuple[Mailbox, int]) -> Settings:
    """The test settings with email on, quick retries, a one-hour retry period."""
    return settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{smtp[1]}",
            "mail_from": "Test café <club@example.com>",
            "public_url": "https://loyalty.example.com",
            "retry_base_seconds": 60.0,
            "retry_period_hours": 1.0,
        }
    )


if TYPE_CHECKING:
    from tests.messaging.test_webhooks import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP receiver (webhook endpoint, SMS or push provider) on a thread of its own."""
    from tests.messaging.test_webhooks import Receiver as _Receiver

    r = _Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
