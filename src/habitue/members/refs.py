"""Finding members: by public id, card or external id, alone or for a batch of events, with
what the event pipeline reads in the member's own query (`MemberColumn`)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Prefetch, dialect_name, driver_connection, straight, table_of
from habitue.errors import ValidationFailed
from habitue.ledger.models import Account
from habitue.ledger.service import MemberAccounts
from habitue.members.cards import luhn_valid, parse_card_input, qr_payload
from habitue.members.errors import (
    CardBlocked,
    CardNotFound,
    DuplicateMember,
    InvalidCardNumber,
    MemberNotActive,
    MemberNotFound,
)
from habitue.members.models import Card, Member
from habitue.members.schemas import (
    CardRead,
)
from habitue.programs.service import ProgramInfo
from habitue.rules.types import MemberSnapshot
from habitue.settings import get_settings

_members = table_of(Member)


_cards = table_of(Card)


_accounts = table_of(Account)


def contact_hash(value: str) -> str:
    """Keyed hash of an email or phone: members are found by it, never by the clear value."""
    normal = value.strip().lower()
    return hmac.new(get_settings().hmac_key.encode(), normal.encode(), hashlib.sha256).hexdigest()


def phone_normal(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")


@dataclass(frozen=True, slots=True)
class MemberRef:
    """What the event path needs of a member, loaded in one query.

    `extras` holds the values of the `MemberColumn`s the member was resolved with
    (`resolve(..., reads=...)`, the event pipeline's); empty otherwise.
    """

    id: int
    public_id: str
    status: str
    tier: str | None
    enrolled_at: datetime
    attributes: dict[str, Any]
    accounts: MemberAccounts
    extras: Mapping[MemberColumn, Any] = field(default_factory=dict)

    def snapshot(self) -> MemberSnapshot:
        return MemberSnapshot(
            id=self.public_id,
            status=self.status,
            enrolled_at=self.enrolled_at,
            tier=self.tier,
            attributes=self.attributes,
        )

    def require_active(self) -> None:
        if self.status != "active":
            raise MemberNotActive(f"member {self.public_id} is {self.status}")

    def require_not_erased(self) -> None:
        """An erased member (see `habitue.privacy`) gets no new data: no profile change, card
        or points."""
        if self.status == "erased":
            raise MemberNotActive(f"member {self.public_id} is erased")


async def _check_unique(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    email: str | None,
    external_id: str | None,
    exclude: int | None = None,
) -> None:
    if email:
        q = select(_members.c.id).where(
            _members.c.program_id == program.id, _members.c.email_hash == contact_hash(email)
        )
        found = (await session.execute(q)).scalar()
        if found is not None and found != exclude:
            raise DuplicateMember(
                "a member with this email exists in the program",
                errors=[{"field": "email", "message": "already enrolled"}],
            )
    if external_id:
        q = select(_members.c.id).where(
            _members.c.program_id == program.id, _members.c.external_id == external_id
        )
        found = (await session.execute(q)).scalar()
        if found is not None and found != exclude:
            raise DuplicateMember(
                "a member with this external_id exists in the program",
                errors=[{"field": "external_id", "message": "already enrolled"}],
            )


def _ref_query(program_id: int) -> Any:
    return _REF_BASE.where(_members.c.program_id == program_id)


def _ref_base() -> Any:
    avail = _accounts.alias("avail")
    pend = _accounts.alias("pend")
    return (
        select(
            _members.c.id,
            _members.c.public_id,
            _members.c.external_id,
            _members.c.status,
            _members.c.tier,
            _members.c.enrolled_at,
            _members.c.attributes,
            avail.c.id.label("available"),
            pend.c.id.label("pending"),
        )
        .join(avail, (avail.c.member_id == _members.c.id) & (avail.c.kind == "available"))
        .join(pend, (pend.c.member_id == _members.c.id) & (pend.c.kind == "pending"))
    )


_REF_BASE = _ref_base()


# The event path's lookups, built once: a statement object that is reused keeps its cache
# key, so SQLAlchemy skips rebuilding it for every event.
_REF_BY = {
    column: _REF_BASE.where(
        _members.c.program_id == bindparam("ref_program"), _members.c[column] == bindparam("ref_v")
    )
    for column in ("public_id", "external_id", "id")
}


@dataclass(frozen=True, eq=False, slots=True)
class MemberColumn:
    """A value another room reads with the member on the event path, in the member's own query.

    `column` is a function of the members' id column that gives a scalar subquery (the rules'
    counters, locked on PostgreSQL; whether a referral waits for a first purchase). The event
    pipeline hands its rooms' columns to `resolve(..., reads=...)`; each value is on
    `MemberRef.extras` under the column object itself (no name to clash). Each saves the event
    path a statement per event.
    """

    name: str
    column: Callable[[ColumnElement[int]], ColumnElement[Any]]


Reads = tuple[MemberColumn, ...]

_locking = table_of(Member).alias("locked_member")


def _locked_status(member_id: ColumnElement[int]) -> ColumnElement[Any]:
    # FOR NO KEY UPDATE: waits for an erasure holding the row (FOR UPDATE) and then reads
    # its committed status, not the statement's snapshot; events of one member queue here.
    return (
        select(_locking.c.status)
        .where(_locking.c.id == member_id)
        .with_for_update(key_share=True)
        .scalar_subquery()
    )


_of_program = table_of(Member).alias("member_program")


def program_of(member_id: ColumnElement[int]) -> ColumnElement[int]:
    """The member's program id as a scalar subquery, for another room's `MemberColumn` that
    reads a table by program (the promotions' stamp)."""
    # Correlated to the member's query at any depth (auto-correlation stops one level up).
    return (
        select(_of_program.c.program_id)
        .where(_of_program.c.id == member_id)
        .correlate_except(_of_program)
        .scalar_subquery()
    )


LOCKED_STATUS = MemberColumn("members.locked_status", _locked_status)
"""The member's status read under the member's row lock (PostgreSQL), for the event path.

An erasure (`habitue.privacy.erasure`) holds the same row locked while it runs: an event read
with this column sees the member erased once the erasure commits, and is refused, rather than
crediting points or writing data about them. `MemberRef.status` is this value when read."""


_EVENT_REF_BY: dict[tuple[str, Reads], Any] = {}


def _extra_columns(member_id: ColumnElement[int], reads: Reads) -> list[ColumnElement[Any]]:
    return [read.column(member_id).label(f"extra_{n}") for n, read in enumerate(reads)]


def _event_ref_query(column: str, reads: Reads) -> Any:
    key = (column, reads)
    query = _EVENT_REF_BY.get(key)
    if query is None:
        query = _REF_BY[column].add_columns(*_extra_columns(_members.c.id, reads))
        _EVENT_REF_BY[key] = query
    return query


_EVENT_REFS_BY: dict[tuple[str, Reads, bool], Any] = {}

# How a batch's members can be named, and the column of their one query (`_event_refs_query`).
_BY_ID, _BY_EXTERNAL_ID, _BY_CARD = "public_id", "external_id", "card"


def _named_in(column: ColumnElement[Any], array: bool) -> ColumnElement[bool]:
    """`column` among the batch's names: on PostgreSQL `= ANY(array)`, one statement (one
    prepared statement, one cached plan per connection) whatever the batch's size, where
    `IN (...)` is a statement of its own for each number of names."""
    if array:
        return column == any_(bindparam("refs_ids", type_=ARRAY(String)))
    return column.in_(bindparam("refs_ids", expanding=True))


def _event_refs_query(kind: str, reads: Reads, array: bool = False) -> Any:
    """The members of a batch named one way (`kind`), with `reads`, in one statement (the
    names as one array parameter when `array`: PostgreSQL)."""
    query = _EVENT_REFS_BY.get((kind, reads, array))
    if query is None:
        base = _REF_BASE.where(_members.c.program_id == bindparam("refs_program"))
        if kind == _BY_CARD:
            # Only active cards: a blocked or unknown card is left to the unit, which answers
            # it with its own error.
            base = (
                base.join(_cards, _cards.c.member_id == _members.c.id)
                .add_columns(_cards.c.number.label("named"))
                .where(
                    _cards.c.program_id == bindparam("refs_program"),
                    _cards.c.status == "active",
                    _named_in(_cards.c.number, array),
                )
                .order_by(_cards.c.number)
            )
        else:
            column = _members.c[kind]
            base = (
                base.add_columns(column.label("named"))
                .where(_named_in(column, array))
                .order_by(column)
            )
        # Sorted in a subquery (which PostgreSQL does not flatten), so that the extras' row
        # locks are taken in the order of the name, the order grouped units run and lock in.
        inner = base.subquery()
        query = select(inner, *_extra_columns(inner.c.id, reads))
        _EVENT_REFS_BY[(kind, reads, array)] = query
    return query


async def _refs_named(
    session: AsyncSession, program: ProgramInfo, kind: str, names: list[str], reads: Reads
) -> list[tuple[str, MemberRef]]:
    postgresql = dialect_name(session) == "postgresql"
    query = _event_refs_query(kind, reads, postgresql)
    params = {"refs_program": program.id, "refs_ids": sorted(set(names))}
    # Sent to asyncpg straight where it can be (the same SQL and rows, read by name: about
    # half the client's CPU of the session's way; `db.straight`).
    raw = await driver_connection(session) if postgresql else None
    plan = straight(query, session.get_bind().dialect) if raw is not None else None
    if raw is not None and plan is not None:
        records = await raw.fetch(plan.sql, *plan.args(params))
        return [(str(r["named"]), _to_ref(r, reads)) for r in records]
    rows = await session.execute(query, params)
    return [(str(row.named), _to_ref(row, reads)) for row in rows]


async def resolve_many_for_event(
    session: AsyncSession, program: ProgramInfo, public_ids: list[str], reads: Reads = ()
) -> list[MemberRef]:
    """`resolve(..., reads=reads)` of several members by public id, in one query."""
    return [ref for _, ref in await _refs_named(session, program, _BY_ID, public_ids, reads)]


BATCH_SLOT = "habitue.members.batch"


@dataclass(slots=True)
class _BatchRefs:
    """The members a batch read for its units, by how each unit names them; each member's
    entries go together once one unit used one of them."""

    named: dict[tuple[int, str, str, Reads], MemberRef] = field(default_factory=dict)
    keys_of: dict[tuple[int, str], list[tuple[int, str, str, Reads]]] = field(
        default_factory=dict
    )

    def add(self, program_id: int, kind: str, name: str, reads: Reads, ref: MemberRef) -> None:
        key = (program_id, kind, name, reads)
        self.named[key] = ref
        self.keys_of.setdefault((program_id, ref.public_id), []).append(key)

    def take(self, program_id: int, kind: str, name: str, reads: Reads) -> MemberRef | None:
        ref = self.named.get((program_id, kind, name, reads))
        if ref is not None:
            self.drop(program_id, ref.public_id)
        return ref

    def drop(self, program_id: int, public_id: str) -> None:
        for key in self.keys_of.pop((program_id, public_id), ()):
            self.named.pop(key, None)


async def _read_batch(
    session: AsyncSession, args: list[tuple[ProgramInfo, str, str, Reads]]
) -> None:
    """The members of a batch of grouped units, read in one query per program, way of naming
    them and reads."""
    groups: dict[tuple[int, str, Reads], tuple[ProgramInfo, list[str]]] = {}
    for program, kind, name, reads in args:
        groups.setdefault((program.id, kind, reads), (program, []))[1].append(name)
    found: _BatchRefs = session.info.setdefault(BATCH_SLOT, _BatchRefs())
    for (_, kind, reads), (program, names) in groups.items():
        for name, ref in await _refs_named(session, program, kind, names, reads):
            found.add(program.id, kind, name, reads, ref)


def _batch_name(
    program: ProgramInfo, member_id: str | None, card_number: str | None, external_id: str | None
) -> tuple[str, str] | None:
    """How a unit's member is looked up in its batch's query; None when it is not (a card
    that is not a well-formed number of this program: the unit answers it itself)."""
    if member_id is not None:
        return _BY_ID, member_id
    if external_id is not None:
        return _BY_EXTERNAL_ID, external_id
    if card_number is not None:
        code, number = parse_card_input(card_number)
        if (code is None or code == program.code) and luhn_valid(number):
            return _BY_CARD, number
    return None


def prefetch(program: ProgramInfo, public_id: str, reads: Reads = ()) -> Prefetch:
    """For `Database.write`: the units of a batch that name their member by public id read
    them together, with `reads` (see `resolve_in_batch`)."""
    return Prefetch(_read_batch, (program, _BY_ID, public_id, reads), BATCH_SLOT)


def prefetch_named(
    program: ProgramInfo,
    *,
    member_id: str | None = None,
    card_number: str | None = None,
    external_id: str | None = None,
    reads: Reads = (),
) -> Prefetch | None:
    """`prefetch` for a member named by public id, external id or card (number, barcode or
    QR payload); None for a card that cannot be a card of this program."""
    named = _batch_name(program, member_id, card_number, external_id)
    if named is None:
        return None
    return Prefetch(_read_batch, (program, named[0], named[1], reads), BATCH_SLOT)


def hand_over(session: AsyncSession, program: ProgramInfo, ref: MemberRef, reads: Reads) -> None:
    """Hand a member this unit of work has just read (with `reads`) to the next
    `resolve_in_batch` of this session that names them by public id, once: a basket's
    confirm reads its member and then records the purchase, which would read them again."""
    found: _BatchRefs = session.info.setdefault(BATCH_SLOT, _BatchRefs())
    found.add(program.id, _BY_ID, ref.public_id, reads, ref)


async def resolve_in_batch(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    member_id: str | None = None,
    card_number: str | None = None,
    external_id: str | None = None,
    reads: Reads = (),
) -> MemberRef:
    """`resolve(..., reads=reads)`, from what the unit's batch read if it can.

    Each member read for the batch is used once, by the first unit that names them (in any
    way); the batch's later units of that member read it again for themselves.
    """
    found: _BatchRefs | None = session.info.get(BATCH_SLOT)
    if found is not None:
        named = _batch_name(program, member_id, card_number, external_id)
        if named is not None:
            ref = found.take(program.id, named[0], named[1], reads)
            if ref is not None:
                return ref
    ref = await resolve(
        session,
        program,
        member_id=member_id,
        card_number=card_number,
        external_id=external_id,
        reads=reads,
    )
    if found is not None:
        found.drop(program.id, ref.public_id)
    return ref


_CARD_BY_NUMBER = select(_cards.c.member_id, _cards.c.status).where(
    _cards.c.number == bindparam("card_number"), _cards.c.program_id == bindparam("card_program")
)


def _to_ref(row: Any, reads: Reads = ()) -> MemberRef:
    # A SQLAlchemy row, or an asyncpg record (`resolve(..., raw=...)`): read by name.
    mapping = getattr(row, "_mapping", row)
    extras = {read: mapping[f"extra_{n}"] for n, read in enumerate(reads)}
    member_id = mapping["id"]
    return MemberRef(
        id=member_id,
        public_id=mapping["public_id"],
        status=extras.get(LOCKED_STATUS) or mapping["status"],
        tier=mapping["tier"],
        enrolled_at=clock.as_utc(mapping["enrolled_at"]),
        attributes=mapping["attributes"] or {},
        accounts=MemberAccounts(member_id, mapping["available"], mapping["pending"]),
        extras=extras,
    )


async def resolve(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    member_id: str | None = None,
    card_number: str | None = None,
    external_id: str | None = None,
    reads: Reads = (),
    raw: Any | None = None,
) -> MemberRef:
    """Find a member by public id, card (number, barcode or QR) or external id.

    `reads`: with what the event pipeline's rooms read with the member, in the same query.
    `raw`: the session's asyncpg connection (`db.driver_connection`), to send the member's
    query to straight (the same SQL and rows, half the client's CPU).
    """
    if member_id is not None:
        column, value = "public_id", member_id
    elif external_id is not None:
        column, value = "external_id", external_id
    elif card_number is not None:
        code, number = parse_card_input(card_number)
        if code is not None and code != program.code:
            raise CardNotFound("this card belongs to another program")
        if not luhn_valid(number):
            raise InvalidCardNumber(
                "card number fails the Luhn check",
                errors=[{"field": "card_number", "message": "invalid check digit"}],
            )
        card = (
            await session.execute(
                _CARD_BY_NUMBER, {"card_number": number, "card_program": program.id}
            )
        ).first()
        if card is None or card.status == "erased":  # an erased member's card is unknown
            raise CardNotFound(f"no card {number}")
        if card.status != "active":
            raise CardBlocked(f"card {number} is {card.status}")
        column, value = "id", card.member_id
    else:
        raise ValidationFailed("member", "give one of id, card_number or external_id")
    query = _event_ref_query(column, reads) if reads else _REF_BY[column]
    params = {"ref_program": program.id, "ref_v": value}
    plan = straight(query, session.get_bind().dialect) if raw is not None else None
    if raw is not None and plan is not None:
        row = await raw.fetchrow(plan.sql, *plan.args(params))
    else:
        row = (await session.execute(query, params)).first()
    if row is None:
        raise MemberNotFound("no such member in this program")
    return _to_ref(row, reads)


async def with_locked_status(
    session: AsyncSession, program: ProgramInfo, member: MemberRef
) -> MemberRef:
    """`member` with its status read under the member's row lock (`LOCKED_STATUS`), as the
    event path reads it: what moves a member's points by hand (adjustment, spend, redemption)
    waits for an erasure holding the row and then sees the member erased. No statement when
    the member was resolved with `LOCKED_STATUS` already (the routes do)."""
    if LOCKED_STATUS in member.extras:
        return member
    return await resolve(session, program, member_id=member.public_id, reads=(LOCKED_STATUS,))


async def refs_by_external_id(
    session: AsyncSession, program: ProgramInfo, external_ids: list[str]
) -> dict[str, MemberRef]:
    out: dict[str, MemberRef] = {}
    for i in range(0, len(external_ids), 500):
        chunk = external_ids[i : i + 500]
        rows = (
            await session.execute(_ref_query(program.id).where(_members.c.external_id.in_(chunk)))
        ).all()
        for row in rows:
            out[row.external_id] = _to_ref(row)
    return out


def _card_read(program: ProgramInfo, row: Any) -> CardRead:
    return CardRead(
        number=row.number,
        kind=row.kind,
        status=row.status,
        qr_payload=qr_payload(program.code, row.number),
        created_at=clock.as_utc(row.created_at),
        replaced_by=row.replaced_by,
    )


async def member_row(
    session: AsyncSession, program: ProgramInfo, public_id: str, *, lock: bool = False
) -> Any:
    """The member's row in this program; MemberNotFound when there is none. With `lock`, the
    row is locked (FOR UPDATE on PostgreSQL) until the transaction ends: the event path,
    which reads `LOCKED_STATUS`, waits for it."""
    q = select(_members).where(
        _members.c.program_id == program.id, _members.c.public_id == public_id
    )
    if lock:
        q = q.with_for_update()
    row = (await session.execute(q)).first()
    if row is None:
        raise MemberNotFound("no such member in this program")
    return row


async def public_ids_named(
    session: AsyncSession,
    program: ProgramInfo,
    *,
    external_ids: set[str],
    card_numbers: set[str],
) -> tuple[dict[str, str], dict[str, str]]:
    """The public ids of the members named by these external ids, and by these cards (as the
    till gave them: number, barcode or QR payload; active cards only), one query each; a name
    not found is left out. Nothing is locked: a batch names its members by id from here on."""
    by_external: dict[str, str] = {}
    if external_ids:
        rows = await session.execute(
            select(_members.c.external_id, _members.c.public_id).where(
                _members.c.program_id == program.id,
                _members.c.external_id.in_(sorted(external_ids)),
            )
        )
        by_external = {str(ext): str(public) for ext, public in rows}
    by_card: dict[str, str] = {}
    numbers: dict[str, list[str]] = {}
    for given in card_numbers:
        named = _batch_name(program, None, given, None)
        if named is not None:
            numbers.setdefault(named[1], []).append(given)
    if numbers:
        rows = await session.execute(
            select(_cards.c.number, _members.c.public_id)
            .join(_members, _members.c.id == _cards.c.member_id)
            .where(
                _cards.c.program_id == program.id,
                _cards.c.status == "active",
                _cards.c.number.in_(sorted(numbers)),
            )
        )
        for number, public in rows:
            for given in numbers[str(number)]:
                by_card[given] = str(public)
    return by_external, by_card
