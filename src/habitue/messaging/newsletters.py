"""Newsletters: one message template sent to the members of a dynamic segment, now or at a
set time, with a hold-out the campaigns room measures, and a send report.

Sending (`send`, in one transaction): the segment is recomputed (it is dynamic), its members
are split by the analytics room's deterministic hash (`uplift.assign_treatment` over the
campaign key of the newsletter's code) into treatment and a hold-out of `holdout_share`, the
campaign of the same code (kind `newsletter`) is created for the uplift report, and each
member of the treatment gets a `newsletter.queued` outbox event. The worker then plans and
sends them like any message: consent, address, frequency cap, quiet hours, the member's
language. Only one sender wins a newsletter: the `scheduled → sent` change is conditional.

The report counts the newsletter's deliveries: sent, skipped for consent, for the cap, for
another reason (no address…), failed, bounced (an email the receiving server refused for
good: SMTP 5xx for the recipient), and those still pending.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, table_of
from habitue.errors import ValidationFailed
from habitue.ids import new_id
from habitue.messaging import outbox
from habitue.messaging.errors import NewsletterExists, NewsletterNotFound, NewsletterNotScheduled
from habitue.messaging.models import Delivery, Newsletter
from habitue.programs.service import ProgramInfo

log = structlog.get_logger()

_n = table_of(Newsletter)
_d = table_of(Delivery)

QUEUED = "newsletter.queued"
"""The outbox event of one newsletter for one member (not a webhook event)."""
CAMPAIGN_DAYS = 30
"""The window of the campaign that measures a newsletter's uplift, from its sending."""
BOUNCE_PREFIX = "recipient refused"


def read(row: Any) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "code": row.code,
        "segment": row.segment,
        "template": row.template,
        "holdout_share": row.holdout_share,
        "send_at": clock.as_utc(row.send_at),
        "status": row.status,
        "targeted": row.targeted,
        "holdout": row.holdout,
        "created_at": clock.as_utc(row.created_at),
        "sent_at": clock.as_utc(row.sent_at) if row.sent_at is not None else None,
    }


async def _row(session: AsyncSession, program: ProgramInfo, code: str) -> Any:
    row = (
        await session.execute(select(_n).where(_n.c.program_id == program.id, _n.c.code == code))
    ).first()
    if row is None:
        raise NewsletterNotFound(f"no newsletter {code!r} in this program")
    return row


async def create(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    code: str,
    segment: str,
    template: str,
    holdout_share: float,
    send_at: datetime | None,
) -> dict[str, Any]:
    """Schedule a newsletter (`send_at` absent or past: sent now, in this transaction).

    The segment must exist and the program must have written the template on some channel;
    a code already used by a newsletter (or, with a hold-out, by a campaign) is refused."""
    from habitue.analytics import campaigns, segments
    from habitue.analytics.errors import SegmentNotFound
    from habitue.messaging import templates as templates_service

    try:
        await segments.get_segment(session, program, segment)
    except SegmentNotFound as exc:
        raise ValidationFailed("segment", f"no segment {segment!r} in this program") from exc
    written = await templates_service.written(session, program, [template])
    if not written.get(template):
        raise ValidationFailed("template", f"no message template {template!r} in this program")
    exists = (
        await session.execute(
            select(_n.c.id).where(_n.c.program_id == program.id, _n.c.code == code)
        )
    ).first()
    if exists is not None:
        raise NewsletterExists(f"a newsletter {code!r} already exists in this program")
    if holdout_share > 0 and any(
        c.code == code for c in await campaigns.list_campaigns(session, program)
    ):
        raise NewsletterExists(f"a campaign {code!r} already exists in this program")
    now = clock.now()
    await session.execute(
        insert(_n).values(
            public_id=new_id(),
            program_id=program.id,
            code=code,
            segment=segment,
            template=template,
            holdout_share=holdout_share,
            send_at=send_at if send_at is not None and send_at > now else now,
            status="scheduled",
            targeted=0,
            holdout=0,
            created_at=now,
        )
    )
    if send_at is None or send_at <= now:
        await send(session, program, code)
    return await get(session, program, code)


async def send(session: AsyncSession, program: ProgramInfo, code: str) -> int:
    """Send a scheduled newsletter now (see the module's docstring); the members targeted.

    Raises NewsletterNotScheduled when it was sent or canceled already."""
    from habitue.analytics import campaigns, segments, uplift
    from habitue.analytics.errors import CampaignExists

    row = await _row(session, program, code)
    now = clock.now()
    claimed = await session.execute(
        update(_n)
        .where(_n.c.id == row.id, _n.c.status == "scheduled")
        .values(status="sent", sent_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise NewsletterNotScheduled(f"the newsletter {code!r} is {row.status}")
    await segments.recompute_async(session, program, [row.segment])
    # A profiling segment reaches only the members consenting to profiling.
    ids = await segments.targetable_members(session, program, row.segment)
    members = await segments.member_public_ids(session, ids)
    if row.holdout_share > 0:
        treated = uplift.assign_treatment(
            campaigns.campaign_key(program, code), members, holdout_share=row.holdout_share
        ).tolist()
        try:
            async with session.begin_nested():
                await campaigns.create_campaign(
                    session,
                    program,
                    code=code,
                    kind="newsletter",
                    holdout_share=row.holdout_share,
                    starts_at=now,
                    ends_at=now + timedelta(days=CAMPAIGN_DAYS),
                )
        except CampaignExists:  # made by hand meanwhile: the hash gives the same groups
            pass
    else:
        treated = [True] * len(members)
    targeted = [m for m, t in zip(members, treated, strict=True) if t]
    payload = {"newsletter": row.public_id, "newsletter_id": row.id, "template": row.template}
    rows = [outbox.outbox_row(program.id, QUEUED, m, {"member_id": m, **payload}) for m in targeted]
    for start in range(0, len(rows), 1000):
        await outbox.emit_many(session, rows[start : start + 1000])
    await session.execute(
        update(_n)
        .where(_n.c.id == row.id)
        .values(targeted=len(targeted), holdout=len(members) - len(targeted))
    )
    return len(targeted)


async def cancel(session: AsyncSession, program: ProgramInfo, code: str) -> dict[str, Any]:
    """Cancel a scheduled newsletter (one sent already cannot be)."""
    row = await _row(session, program, code)
    done = await session.execute(
        update(_n).where(_n.c.id == row.id, _n.c.status == "scheduled").values(status="canceled")
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise NewsletterNotScheduled(f"the newsletter {code!r} is {row.status}")
    return await get(session, program, code)


def tally(counts: list[tuple[str, str | None, int]]) -> dict[str, int]:
    """The report's figures from (status, reason, count) of the deliveries."""
    out = {
        "sent": 0,
        "skipped_consent": 0,
        "skipped_cap": 0,
        "skipped_other": 0,
        "failed": 0,
        "bounced": 0,
        "pending": 0,
    }
    for status, reason, n in counts:
        if status == "sent":
            out["sent"] += n
        elif status == "pending":
            out["pending"] += n
        elif status == "skipped":
            key = {"no-consent": "skipped_consent", "frequency-cap": "skipped_cap"}.get(
                reason or "", "skipped_other"
            )
            out[key] += n
        elif status == "failed" and BOUNCE_PREFIX in (reason or ""):
            out["bounced"] += n
        else:
            out["failed"] += n
    return out


async def get(session: AsyncSession, program: ProgramInfo, code: str) -> dict[str, Any]:
    """The newsletter and its send report."""
    row = await _row(session, program, code)
    counts = await session.execute(
        select(_d.c.status, _d.c.reason, func.count())
        .where(_d.c.newsletter_id == row.id)
        .group_by(_d.c.status, _d.c.reason)
    )
    out = read(row)
    out["report"] = {
        "targeted": row.targeted,
        "holdout": row.holdout,
        **tally([(s, r, int(n)) for s, r, n in counts]),
    }
    return out


async def list_newsletters(session: AsyncSession, program: ProgramInfo) -> list[dict[str, Any]]:
    """The program's newsletters, latest first (without their reports)."""
    rows = await session.execute(
        select(_n).where(_n.c.program_id == program.id).order_by(_n.c.send_at.desc(), _n.c.id)
    )
    return [read(r) for r in rows]


async def _send_due_one(session: AsyncSession, *, program_code: str, code: str) -> int:
    from habitue.programs import service as programs_service

    program = await programs_service.get_info(session, program_code)
    try:
        return await send(session, program, code)
    except NewsletterNotScheduled:  # another worker sent it
        return 0


async def send_due(db: Database) -> int:
    """Send every scheduled newsletter whose time has come; the members targeted."""
    from habitue.programs.models import Program

    _p = table_of(Program)
    async with db.read() as session:
        due = (
            await session.execute(
                select(_p.c.code, _n.c.code)
                .join(_p, _p.c.id == _n.c.program_id)
                .where(_n.c.status == "scheduled", _n.c.send_at <= clock.now())
                .order_by(_n.c.send_at, _n.c.id)
            )
        ).all()
    total = 0
    for program_code, code in due:
        try:
            total += await db.write(
                functools.partial(_send_due_one, program_code=program_code, code=code)
            )
        except Exception:
            log.exception("sending a newsletter failed", program=program_code, newsletter=code)
    return total
