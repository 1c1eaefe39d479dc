"""The audit log: an append-only, hash-chained record of who read or changed what.

Each program has one chain (`audit_log.chain` is the program's id; 0 holds what happens outside
any program). A row's `hash` is an HMAC, keyed by a key derived from `HABITUE_HMAC_KEY`, over
the previous row's hash and the row's own fields; `audit_heads` holds each chain's last
sequence number and hash. `verify` recomputes every chain: an altered row changes its hash, a
deleted row leaves a gap in `seq` and a broken `prev_hash`, and deleting the newest rows leaves
the head pointing past the end. Without the key nobody can rebuild a consistent chain.

No personal data goes in a row: members are named by their public id, never by email or name,
and query strings are reduced to their parameter names, so erasure has nothing to scrub here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.privacy.models import AuditEntry, AuditHead

_log = table_of(AuditEntry)
_heads = table_of(AuditHead)

GENESIS = "0" * 64
"""The `prev_hash` of each chain's first row."""


class ActorKind(StrEnum):
    OPERATOR = "operator"
    """The server's admin key (`HABITUE_ADMIN_KEY`)."""
    KEY = "key"
    """An API key of a program (or of one of its partners)."""
    STAFF = "staff"
    """A console user."""
    MEMBER = "member"
    """A member in their own portal session."""
    SYSTEM = "system"
    """The server itself, or a command run on it (`habitue …`)."""


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    """A member's data handed out whole (GDPR export) or the audit log itself exported."""


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    name: str


@dataclass(frozen=True, slots=True)
class Entry:
    """What one row records, before it is chained."""

    actor: Actor
    action: Action
    resource: str
    resource_id: str | None = None
    request_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


def chain_key(hmac_key: str) -> bytes:
    """The key of the chain's HMAC, derived from the configured one (never used elsewhere)."""
    return hmac.new(hmac_key.encode(), b"habitue-audit-chain-v1", hashlib.sha256).digest()


def _at(value: datetime) -> str:
    return clock.as_utc(value).isoformat(timespec="microseconds")


def row_hash(key: bytes, prev_hash: str, row: Mapping[str, Any]) -> str:
    """The keyed hash of one row given its predecessor's hash (pure)."""
    canonical = orjson.dumps(
        {
            "chain": int(row["chain"]),
            "seq": int(row["seq"]),
            "at": _at(row["at"]),
            "actor_kind": row["actor_kind"],
            "actor": row["actor"],
            "action": row["action"],
            "resource": row["resource"],
            "resource_id": row["resource_id"],
            "request_id": row["request_id"],
            "detail": row["detail"] or {},
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hmac.new(key, prev_hash.encode() + b"\n" + canonical, hashlib.sha256).hexdigest()


async def _lock_head(session: AsyncSession, chain: int) -> tuple[int, str]:
    """The chain's last (seq, hash), locked until the transaction ends (PostgreSQL: a row lock;
    SQLite has one writer at a time already)."""
    q = select(_heads.c.seq, _heads.c.hash).where(_heads.c.chain == chain)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    row = (await session.execute(q)).first()
    if row is None:
        try:
            async with session.begin_nested():
                await session.execute(insert(_heads).values(chain=chain, seq=0, hash=GENESIS))
        except IntegrityError:
            pass  # another writer made the head first: lock theirs
        row = (await session.execute(q)).one()
    return int(row.seq), str(row.hash)


async def append(
    session: AsyncSession, *, chain: int, entries: Sequence[Entry], hmac_key: str
) -> int:
    """Append `entries` to the chain in this transaction; returns the last sequence number."""
    seq, prev = await _lock_head(session, chain)
    if not entries:
        return seq
    key = chain_key(hmac_key)
    now = clock.now()
    rows = []
    for entry in entries:
        seq += 1
        row: dict[str, Any] = {
            "chain": chain,
            "seq": seq,
            "at": now,
            "actor_kind": entry.actor.kind.value,
            "actor": entry.actor.name[:200],
            "action": entry.action.value,
            "resource": entry.resource[:32],
            "resource_id": entry.resource_id[:200] if entry.resource_id else None,
            "request_id": entry.request_id[:64] if entry.request_id else None,
            "detail": dict(entry.detail),
        }
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(key, prev, row)
        rows.append(row)
    await session.execute(insert(_log), rows)
    await session.execute(update(_heads).where(_heads.c.chain == chain).values(seq=seq, hash=prev))
    return seq


@dataclass(frozen=True, slots=True)
class Breach:
    """Where a chain does not hold: the chain, the sequence number, and what is wrong."""

    chain: int
    seq: int
    problem: str
    kind: str = "altered"
    """`missing` (rows before `seq` deleted), `unlinked` (its `prev_hash` is not the previous
    row's hash), `altered` (its hash does not match its fields), `truncated` (the newest rows
    deleted: the head points past the end)."""


async def _rows(session: AsyncSession, chain: int | None) -> AsyncIterator[Any]:
    last: tuple[int, int] = (-1, 0)
    while True:
        q = select(_log).order_by(_log.c.chain, _log.c.seq).limit(1000)
        if chain is not None:
            q = q.where(_log.c.chain == chain, _log.c.seq > last[1])
        else:
            q = q.where(
                (_log.c.chain > last[0]) | ((_log.c.chain == last[0]) & (_log.c.seq > last[1]))
            )
        page = (await session.execute(q)).mappings().all()
        if not page:
            return
        for row in page:
            yield row
        last = (int(page[-1]["chain"]), int(page[-1]["seq"]))


async def verify(session: AsyncSession, *, hmac_key: str, chain: int | None = None) -> list[Breach]:
    """Recompute every chain (or one): the breaches found, none when the log is intact."""
    key = chain_key(hmac_key)
    breaches: list[Breach] = []
    tails: dict[int, tuple[int, str]] = {}
    current, expected_seq, prev = None, 1, GENESIS
    async for row in _rows(session, chain):
        c = int(row["chain"])
        if c != current:
            current, expected_seq, prev = c, 1, GENESIS
        seq = int(row["seq"])
        if seq != expected_seq:
            breaches.append(
                Breach(c, expected_seq, f"rows {expected_seq}..{seq - 1} missing", "missing")
            )
        if row["prev_hash"] != prev:
            breaches.append(
                Breach(c, seq, "does not follow the previous row (prev_hash)", "unlinked")
            )
        if row_hash(key, row["prev_hash"], row) != row["hash"]:
            breaches.append(Breach(c, seq, "altered (its hash does not match its fields)"))
        prev, expected_seq = row["hash"], seq + 1
        tails[c] = (seq, row["hash"])
    q = select(_heads.c.chain, _heads.c.seq, _heads.c.hash)
    if chain is not None:
        q = q.where(_heads.c.chain == chain)
    for head in (await session.execute(q)).all():
        tail = tails.get(int(head.chain), (0, GENESIS))
        if (int(head.seq), head.hash) != tail:
            breaches.append(
                Breach(
                    int(head.chain),
                    tail[0] + 1,
                    f"the chain ends at {tail[0]} but its head says {head.seq}: rows deleted",
                    "truncated",
                )
            )
    return breaches


def entry_read(row: Any) -> dict[str, Any]:
    """A row as the API and the CLI show it."""
    return {
        "seq": int(row["seq"]),
        "at": clock.as_utc(row["at"]),
        "actor_kind": row["actor_kind"],
        "actor": row["actor"],
        "action": row["action"],
        "resource": row["resource"],
        "resource_id": row["resource_id"],
        "request_id": row["request_id"],
        "detail": row["detail"] or {},
        "hash": row["hash"],
    }


async def query(
    session: AsyncSession,
    *,
    chain: int,
    resource: str | None = None,
    resource_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A page of the chain's rows in order, after sequence number `after`, filtered (`since`
    inclusive, `until` exclusive)."""
    q = (
        select(_log)
        .where(_log.c.chain == chain, _log.c.seq > after)
        .order_by(_log.c.seq)
        .limit(limit)
    )
    if resource is not None:
        q = q.where(_log.c.resource == resource)
    if resource_id is not None:
        q = q.where(_log.c.resource_id == resource_id)
    if actor is not None:
        q = q.where(_log.c.actor == actor)
    if action is not None:
        q = q.where(_log.c.action == action)
    if since is not None:
        q = q.where(_log.c.at >= since)
    if until is not None:
        q = q.where(_log.c.at < until)
    return [entry_read(r) for r in (await session.execute(q)).mappings()]
