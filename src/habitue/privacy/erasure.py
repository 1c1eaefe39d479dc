"""Erasure (GDPR Art. 17): a member pseudonymised in the caller's transaction.

What is kept is what the books and the aggregate reports need, under the member's internal
and public ids only: ledger transactions and lots, events and their lines (amounts, SKUs),
tier history, club payments, redemptions, partner movements. What identifies or describes
the person goes: contacts and their keyed hashes, names, birth date, external id, free
attributes, consents' texts, portal password, sign-in links and sessions, and those values
wherever they were copied (outbox payloads, stored idempotent responses, event attributes).
The member's points are expired through the ledger service (the only writer of points), the
clubs ended through the clubs service, unused coupons voided, cards marked `erased` (unknown
at the till), unused personal offers withdrawn, segment memberships and scores removed.
Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics.models import MemberScore, SegmentMember
from habitue.bounds import MAX_BALANCE
from habitue.clubs import service as clubs_service
from habitue.clubs.models import ClubSubscription
from habitue.clubs.schemas import CancelRequest
from habitue.db import table_of
from habitue.events.models import Event, IdempotencyRecord
from habitue.ledger import service as ledger_service
from habitue.ledger.kinds import EntryKind, SystemAccount
from habitue.members import service as members_service
from habitue.members.models import Card, Member
from habitue.messaging import outbox
from habitue.messaging.models import Delivery, DeliveryAttempt, OutboxEvent
from habitue.programs.service import ProgramInfo
from habitue.rewards.models import Coupon, OfferTarget, ReferralCode
from habitue.rewards.sql import affected
from habitue.tiers.models import MemberBenefit
from habitue.web.models import MemberCredential, SignInToken, WebSession

ERASED = "erased"
"""The member's status after erasure; their cards' status too."""
MASK = "[erased]"

PII_KEYS = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "name",
        "full_name",
        "birth_date",
        "birthday",
        "address",
        "street",
        "postcode",
        "city",
        "ip",
        "ip_address",
        "user_agent",
        "attributes",
        "external_id",
    }
)
"""Fields blanked in a payload that names the erased member."""

_members = table_of(Member)
_cards = table_of(Card)
_subs = table_of(ClubSubscription)
_coupons = table_of(Coupon)
_targets = table_of(OfferTarget)
_referral_codes = table_of(ReferralCode)
_segment_members = table_of(SegmentMember)
_scores = table_of(MemberScore)
_credentials = table_of(MemberCredential)
_links = table_of(SignInToken)
_sessions = table_of(WebSession)
_benefits = table_of(MemberBenefit)
_outbox = table_of(OutboxEvent)
_deliveries = table_of(Delivery)
_attempts = table_of(DeliveryAttempt)
_idem = table_of(IdempotencyRecord)
_events = table_of(Event)


@dataclass(frozen=True, slots=True)
class Erasure:
    member_id: str
    points_expired: int = 0
    pending_points_expired: int = 0
    coupons_voided: int = 0
    clubs_ended: int = 0
    cards_blocked: int = 0
    offers_ended: int = 0
    already_erased: bool = False


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _blank(value: Any) -> Any:
    if value is None:
        return None
    return {} if isinstance(value, dict) else [] if isinstance(value, list) else MASK


class Scrubber:
    """Finds and masks the erased values in JSON documents.

    A string equal to an erased value (case-insensitive) is masked; a string containing one
    is masked too when that value is long enough not to be an ordinary word (6 characters).
    """

    def __init__(self, values: Iterable[str]) -> None:
        cleaned = {v.strip().lower() for v in values if v and v.strip()}
        self.exact = cleaned
        self.inner = sorted((v for v in cleaned if len(v) >= 6), key=len, reverse=True)

    def long_only(self) -> Scrubber:
        """For documents about other people too: only the distinctive values (contacts…),
        never a short one such as a first name, which another member may share."""
        out = Scrubber(())
        out.exact = set(self.inner)
        out.inner = list(self.inner)
        return out

    def hit(self, text: str) -> bool:
        low = text.strip().lower()
        return low in self.exact or any(v in low for v in self.inner)

    def scrub(self, value: Any, *, drop_keys: bool) -> Any:
        """`value` with the erased values masked; with `drop_keys`, the personal fields
        (`PII_KEYS`) too, whatever they hold (kept as keys, so a payload keeps its shape)."""
        if isinstance(value, dict):
            return {
                k: _blank(v) if drop_keys and k in PII_KEYS else self.scrub(v, drop_keys=drop_keys)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.scrub(v, drop_keys=drop_keys) for v in value]
        if isinstance(value, str) and self.hit(value):
            return MASK
        return value

    def touches(self, value: Any) -> bool:
        return any(self.hit(s) for s in _strings(value))


def _pii_values(row: Any) -> list[str]:
    values: list[str] = []
    for name in ("email", "phone", "first_name", "last_name", "external_id"):
        if row._mapping[name]:
            values.append(str(row._mapping[name]))
    if row.phone:
        values.append("".join(ch for ch in row.phone if ch.isdigit() or ch == "+"))
    if isinstance(row.birth_date, date):
        values.append(row.birth_date.isoformat())
    values += [s for s in _strings(row.attributes or {}) if len(s) >= 3]
    for consent in (row.consents or {}).values():
        if isinstance(consent, dict):
            values += [s for k, s in consent.items() if k == "text" and isinstance(s, str)]
    return values


async def erase(
    session: AsyncSession, program: ProgramInfo, public_id: str, *, actor: str
) -> Erasure:
    """Pseudonymise the member and end what they held; safe to run twice.

    The member's row is locked first, until the caller's transaction ends: an event for the
    member being recorded meanwhile waits, then sees the member erased and is refused (the
    event path reads `members_service.LOCKED_STATUS`); one that got the lock first is
    committed before, and its points and data are then erased with the rest."""
    row = await members_service.member_row(session, program, public_id, lock=True)
    if row.status == ERASED:
        return Erasure(member_id=public_id, already_erased=True)
    member_id = int(row.id)
    now = clock.now()
    scrubber = Scrubber(_pii_values(row))

    # Points: expired through the ledger, both the available and the pending ones.
    accounts = (await ledger_service.accounts_of(session, [member_id]))[member_id]
    expired = {}
    for from_pending in (False, True):
        taken, _ = await ledger_service.debit(
            session,
            program,
            accounts,
            # `partial` takes what there is, down to zero; the amount only bounds it.
            MAX_BALANCE,
            kind=EntryKind.EXPIRE,
            reference=f"erase:{public_id}:{'pending' if from_pending else 'available'}",
            counter=SystemAccount.EXPIRED,
            mode="partial",
            from_pending=from_pending,
            actor=actor,
            reason="erasure",
            now=now,
        )
        expired[from_pending] = taken

    # Clubs: ended at once, through the clubs service (benefits stop now).
    clubs_ended = 0
    subs = (
        await session.execute(
            select(_subs.c.id).where(
                _subs.c.member_id == member_id, _subs.c.status.not_in(clubs_service.ENDED)
            )
        )
    ).all()
    for (sub_id,) in subs:
        await clubs_service.cancel(session, program, sub_id, CancelRequest(at_period_end=False))
        clubs_ended += 1

    voided = affected(
        await session.execute(
            update(_coupons)
            .where(_coupons.c.member_id == member_id, _coupons.c.state == "issued")
            .values(state="canceled")
        )
    )
    blocked = affected(
        await session.execute(
            update(_cards)
            .where(_cards.c.member_id == member_id, _cards.c.status == "active")
            .values(status=ERASED, blocked_at=now)
        )
    )
    await session.execute(
        update(_cards)
        .where(_cards.c.member_id == member_id, _cards.c.status != ERASED)
        .values(status=ERASED)
    )
    offers = affected(
        await session.execute(
            delete(_targets).where(_targets.c.member_id == member_id, _targets.c.used_at.is_(None))
        )
    )
    await session.execute(delete(_referral_codes).where(_referral_codes.c.member_id == member_id))
    await session.execute(delete(_segment_members).where(_segment_members.c.member_id == member_id))
    await session.execute(delete(_scores).where(_scores.c.member_id == member_id))
    await session.execute(delete(_credentials).where(_credentials.c.member_id == member_id))
    await session.execute(delete(_links).where(_links.c.member_id == member_id))
    await session.execute(delete(_sessions).where(_sessions.c.member_id == member_id))
    # Privileges granted by rules end with the person (tier privileges follow the tier).
    await session.execute(delete(_benefits).where(_benefits.c.member_id == member_id))

    # nothing about the member was written before they enrolled (a day's margin for an
    # idempotent request's record, written as the request starts)
    since = clock.as_utc(row.enrolled_at) - timedelta(days=1)
    await _scrub_events(session, member_id, scrubber)
    await _scrub_outbox(session, program, public_id, scrubber, since)
    await _stop_deliveries(session, program, public_id, scrubber)
    await _scrub_idempotency(session, program, public_id, scrubber, since)

    await session.execute(
        update(_members)
        .where(_members.c.id == member_id)
        .values(
            external_id=None,
            email=None,
            email_hash=None,
            phone=None,
            phone_hash=None,
            first_name=None,
            last_name=None,
            birth_date=None,
            status=ERASED,
            consents={},
            attributes={},
            updated_at=now,
        )
    )
    await outbox.emit(
        session,
        program_id=program.id,
        type_="member.erased",
        member_id=public_id,
        payload={"member_id": public_id},
    )
    return Erasure(
        member_id=public_id,
        points_expired=expired[False],
        pending_points_expired=expired[True],
        coupons_voided=voided,
        clubs_ended=clubs_ended,
        cards_blocked=blocked,
        offers_ended=offers,
    )


async def _scrub_events(session: AsyncSession, member_id: int, scrubber: Scrubber) -> None:
    """Event attributes are free: the erased values in them (and in the stored answers) go."""
    rows = (
        await session.execute(
            select(_events.c.id, _events.c.attributes, _events.c.response).where(
                _events.c.member_id == member_id
            )
        )
    ).all()
    for event_id, attributes, response in rows:
        if scrubber.touches(attributes) or scrubber.touches(response):
            await session.execute(
                update(_events)
                .where(_events.c.id == event_id)
                .values(
                    attributes=scrubber.scrub(attributes or {}, drop_keys=False),
                    response=scrubber.scrub(response or {}, drop_keys=False),
                )
            )


async def _stop_deliveries(
    session: AsyncSession, program: ProgramInfo, public_id: str, scrubber: Scrubber
) -> None:
    """Nothing more is sent to the erased member: their pending deliveries are skipped, and
    the reasons and errors kept for their past deliveries lose the erased values (an SMTP
    refusal quotes the address)."""
    mine = (_deliveries.c.program_id == program.id) & (_deliveries.c.member_id == public_id)
    await session.execute(
        update(_deliveries)
        .where(mine, _deliveries.c.status == "pending")
        .values(status="skipped", reason="member-erased", locked_until=None, sent_at=None)
    )
    rows = (
        await session.execute(select(_deliveries.c.id, _deliveries.c.reason).where(mine))
    ).all()
    ids = [int(r.id) for r in rows]
    for delivery_id, reason in rows:
        if reason and scrubber.hit(reason):
            await session.execute(
                update(_deliveries).where(_deliveries.c.id == delivery_id).values(reason=MASK)
            )
    if ids:
        errors = (
            await session.execute(
                select(_attempts.c.id, _attempts.c.error).where(
                    _attempts.c.delivery_id.in_(ids), _attempts.c.error.is_not(None)
                )
            )
        ).all()
        for attempt_id, error in errors:
            if scrubber.hit(error):
                await session.execute(
                    update(_attempts).where(_attempts.c.id == attempt_id).values(error=MASK)
                )


async def _scrub_outbox(
    session: AsyncSession, program: ProgramInfo, public_id: str, scrubber: Scrubber, since: Any
) -> None:
    """The member's past outbox payloads lose their personal fields; rows without a member
    (sign-in links, coupons) lose the erased values they hold. Their feed position stays, so
    a delivered event is not delivered again."""
    rows = (
        await session.execute(
            select(_outbox.c.id, _outbox.c.member_id, _outbox.c.payload).where(
                _outbox.c.program_id == program.id,
                or_(
                    _outbox.c.member_id == public_id,
                    _outbox.c.member_id.is_(None) & (_outbox.c.created_at >= since),
                ),
            )
        )
    ).all()
    others = scrubber.long_only()
    for outbox_id, owner, payload in rows:
        mine = owner == public_id
        if not mine and not others.touches(payload):
            continue
        clean = (scrubber if mine else others).scrub(payload or {}, drop_keys=mine)
        if clean != payload:
            await session.execute(
                update(_outbox).where(_outbox.c.id == outbox_id).values(payload=clean)
            )


async def _scrub_idempotency(
    session: AsyncSession, program: ProgramInfo, public_id: str, scrubber: Scrubber, since: Any
) -> None:
    """A stored first answer (replayed for its Idempotency-Key) that shows the member is
    masked: all their values when it names them, their distinctive ones otherwise."""
    rows = (
        await session.execute(
            select(_idem.c.id, _idem.c.body).where(
                _idem.c.program_id == program.id, _idem.c.created_at >= since
            )
        )
    ).all()
    others = scrubber.long_only()
    for record_id, body in rows:
        if body is None:
            continue
        use = scrubber if public_id in set(_strings(body)) else others
        if use.touches(body):
            await session.execute(
                update(_idem)
                .where(_idem.c.id == record_id)
                .values(body=use.scrub(body, drop_keys=use is scrubber))
            )
