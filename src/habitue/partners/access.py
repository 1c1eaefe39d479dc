"""What a partner key may do.

A partner key is an API key made with `"partner": "<code>"`: the key of one coalition
merchant's tills. Every route declares what such a key may do there (`scoped(scope,
partner=PartnerAccess.…)`), and `habitue.deps.require` refuses it (403 `forbidden`) on every
route that does not say so: a route added later is closed to partner keys until someone opens
it. The few routes that let one in narrow what it sees with the helpers below:

- events are recorded and quoted with the key's partner as their `source` (a body naming
  another source is a 403; no source, the key's is used), and only while the partner is active;
  an event read by id is found only among the partner's own events;
- members are identified (card, `external_id` or `card_number` lookup), never listed or
  searched by email, and a member read leaves out `email`, `phone`, `birth_date` and
  `attributes`;
- a member's data (the member, their card, balance, tier, privileges, offers, what points
  would pay) reaches a partner key only with the member's `partners` consent
  (`require_sharing`, `shares`); without it: 403 `no-sharing-consent`. Events the member makes
  at the partner's tills are recorded all the same (earning and burning is the member's act);
- the partner's own record and statement are readable (with `analytics:read`), another
  partner's are not found (404), as another program's are.

The full matrix of paths is in docs/partners.md.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import Database
from habitue.errors import Forbidden
from habitue.events.schemas import EventCreate
from habitue.partners.errors import NoSharingConsent, PartnerNotFound
from habitue.privacy import purposes
from habitue.programs.service import Principal, ProgramInfo


class PartnerAccess(StrEnum):
    """What a partner key may do on a route (with the route's scope, as any key)."""

    NONE = "none"
    """Refused, 403 `forbidden`: the default of every route."""
    TILL = "till"
    """Allowed as for any key of the program: reads without personal data, till operations."""
    REDACTED = "redacted"
    """Member reads: lookups only (no listing, no search by email), personal data left out."""
    OWN = "own"
    """Only the key's own partner's data: events of its source, its record and statement."""


REDACTED_MEMBER_FIELDS: dict[str, Any] = {
    "email": None,
    "phone": None,
    "birth_date": None,
    "attributes": {},
}
"""What a partner key never sees of a member."""

M = TypeVar("M", bound=BaseModel)


class MemberLike(Protocol):
    @property
    def consents(self) -> Any: ...


def redact(principal: Principal, member: M) -> M:
    """The member as this caller may see it: without personal data for a partner key."""
    if principal.partner is None:
        return member
    return member.model_copy(update=REDACTED_MEMBER_FIELDS)


NO_SHARING = "this member has not consented to sharing their data with partners"


def shares(principal: Principal, member: MemberLike) -> None:
    """A member read (with its `consents`) reaches a partner key only with the member's
    `partners` consent; refused (403 `no-sharing-consent`) otherwise."""
    if principal.partner is None:
        return
    if not purposes.granted(member.consents, purposes.Purpose.PARTNERS):
        raise NoSharingConsent(NO_SHARING)


async def require_sharing(
    session: AsyncSession, program: ProgramInfo, principal: Principal, member_id: str
) -> None:
    """`shares` by the member's public id, before a route reads their data for a partner key
    (an unknown member is left to the route's own 404)."""
    if principal.partner is None:
        return
    allowed = await purposes.public_member_allows(
        session, program.id, member_id, purposes.Purpose.PARTNERS
    )
    if allowed is False:
        raise NoSharingConsent(NO_SHARING)


def member_lookup(
    principal: Principal, *, external_id: str | None, email: str | None, card_number: str | None
) -> None:
    """A partner key finds a member by `external_id` or `card_number`, nothing else."""
    if principal.partner is None:
        return
    if email is not None or (external_id is None and card_number is None):
        raise Forbidden(
            "a partner key finds members by external_id or card_number only; "
            "it cannot list them or search by email"
        )


async def event_for(
    db: Database, program: ProgramInfo, principal: Principal, body: EventCreate
) -> EventCreate:
    """The event as this caller may record it: a partner key's carry its partner as source.

    A partner key naming another source is refused (403), and so is one whose partner is
    inactive or gone: its points would be issued with no partner to fund them."""
    partner = principal.partner
    if partner is None:
        return body
    body = source_for(partner, body)
    await require_active(db, program, partner)
    return body


def source_for(partner: str, body: EventCreate) -> EventCreate:
    """The event with the partner's key's source; one naming another source is refused."""
    if "source" in body.model_fields_set and body.source != partner:
        raise Forbidden(f"a key of partner {partner!r} records events with source {partner!r}")
    return body if body.source == partner else body.model_copy(update={"source": partner})


async def require_active(db: Database, program: ProgramInfo, partner: str) -> None:
    """Refuses (403) a partner key whose partner is inactive or gone."""
    from habitue.partners import service as partners_service

    async with db.read() as session:
        active = await partners_service.active_partners(session, program.id)
    if partner not in active:
        raise Forbidden(f"partner {partner!r} is not an active partner of this program")


def own_partner(principal: Principal, code: str) -> None:
    """A partner key sees its own partner only: another is not found, as in another program."""
    if principal.partner is not None and principal.partner != code:
        raise PartnerNotFound(f"no partner {code!r} in this program")
