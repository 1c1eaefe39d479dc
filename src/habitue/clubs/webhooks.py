"""The payment provider's signed webhooks and their secret."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.clubs.common import _secrets
from habitue.clubs.errors import (
    BadSignature,
)
from habitue.clubs.schemas import (
    PaymentRead,
    PaymentRecord,
    WebhookSecretRead,
)
from habitue.clubs.subscriptions import record_payment
from habitue.errors import ValidationFailed
from habitue.messaging import signing
from habitue.programs.service import ProgramInfo

WEBHOOK_TOLERANCE = timedelta(minutes=5)


async def rotate_secret(session: AsyncSession, program: ProgramInfo) -> WebhookSecretRead:
    """Make a new signing secret for the shop's payment webhooks (the old one stops working)."""
    secret = signing.new_secret()
    now = clock.now()
    exists = (
        await session.execute(
            select(_secrets.c.program_id).where(_secrets.c.program_id == program.id)
        )
    ).first()
    if exists is None:
        await session.execute(
            insert(_secrets).values(program_id=program.id, secret=secret, created_at=now)
        )
    else:
        await session.execute(
            update(_secrets)
            .where(_secrets.c.program_id == program.id)
            .values(secret=secret, created_at=now)
        )
    return WebhookSecretRead(secret=secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value of a payload (Standard Webhooks, v1): the
    messaging room's signer, the one outbound webhooks use."""
    return signing.sign(secret, msg_id, timestamp, body)


def verify(secret: str, headers: dict[str, str], body: bytes, now: datetime) -> None:
    """Check a webhook's signature and timestamp; raises BadSignature."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    given = headers.get("webhook-signature")
    if not msg_id or not stamp or not given:
        raise BadSignature("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        ts = int(stamp)
    except ValueError as exc:
        raise BadSignature("webhook-timestamp is not an integer") from exc
    if abs(now.timestamp() - ts) > WEBHOOK_TOLERANCE.total_seconds():
        raise BadSignature("webhook-timestamp is too far from now")
    tolerance = int(WEBHOOK_TOLERANCE.total_seconds())
    if not signing.verify([secret], msg_id, stamp, given, body, now=ts, tolerance=tolerance):
        raise BadSignature("no valid signature")


async def webhook(
    session: AsyncSession, program: ProgramInfo, headers: dict[str, str], body: bytes
) -> PaymentRead:
    """Record a shop's signed `payment.succeeded` webhook as a manual payment."""
    secret = (
        await session.execute(select(_secrets.c.secret).where(_secrets.c.program_id == program.id))
    ).scalar()
    if secret is None:
        raise BadSignature("this program has no webhook secret")
    verify(secret, headers, body, clock.now())
    try:
        doc = json.loads(body)
        data = doc["data"]
        kind = doc["type"]
        sub_id = str(data["subscription_id"])
        record = PaymentRecord(amount=str(data["amount"]), reference=str(data["reference"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed("body", "expected {type, data: {subscription_id, amount, "
                               "reference}}") from exc  # fmt: skip
    if kind != "payment.succeeded":
        raise ValidationFailed("type", "only payment.succeeded is accepted")
    return await record_payment(session, program, sub_id, record)
