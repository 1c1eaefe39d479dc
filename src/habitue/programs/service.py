"""Programs, their system accounts, and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import dialect_name, table_of
from habitue.errors import Conflict, ValidationFailed
from habitue.ledger.kinds import SystemAccount
from habitue.ledger.models import Account
from habitue.money import currency_exponent
from habitue.programs.errors import ApiKeyNotFound, ProgramExists, ProgramNotFound
from habitue.programs.models import ApiKey, Program
from habitue.programs.schemas import (
    PARTNER_SCOPES,
    ApiKeyCreate,
    ApiKeyRead,
    Branding,
    EventTypeSpec,
    Expiry,
    ProgramCreate,
    ProgramRead,
)
from habitue.rules.types import TAX_EXCLUDED, TAX_INCLUDED, EarnOn, ProgramSnapshot

log = structlog.get_logger()

SYSTEM_ACCOUNTS: tuple[str, ...] = tuple(SystemAccount)
"""The system accounts every program has (`habitue.ledger.kinds.SystemAccount`)."""

_programs = table_of(Program)
_keys = table_of(ApiKey)
_accounts = table_of(Account)


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    """A program's settings as plain values, cached per process."""

    id: int
    code: str
    name: str
    currency: str
    currency_exponent: int
    timezone: str
    points_name: str
    earn_rate: Decimal
    rounding: str
    pending_days: int
    expiry_policy: str
    expiry_days: int | None
    allow_negative: bool
    redeem_rate: Decimal
    redeem_step: int
    card_prefix: str
    system_accounts: dict[str, int]
    event_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Program-defined event types: code → {"attributes": {name: type}, "required": [...]}."""
    branding: dict[str, str] = field(default_factory=dict)
    """The logo and colours of the portal and the wallet pass (`Branding`), empty by default."""
    earn_on: str = "tax_included"
    """`tax_included` or `tax_excluded`: the amounts purchases earn on."""

    def snapshot(self) -> ProgramSnapshot:
        return ProgramSnapshot(
            id=self.id,
            code=self.code,
            currency=self.currency,
            currency_exponent=self.currency_exponent,
            timezone=self.timezone,
            earn_rate=self.earn_rate,
            rounding=self.rounding,  # type: ignore[arg-type]
            pending_days=self.pending_days,
            earn_on=self.earn_on,  # type: ignore[arg-type]
        )


_CACHE_TTL = 5.0
_cache: dict[str, tuple[float, ProgramInfo]] = {}


def earn_on_of(settings: dict[str, Any] | None) -> EarnOn:
    """A program's `earn_on` (`tax_included` unless set at creation), from `programs.settings`,
    where it is kept as the program's other later settings are."""
    return TAX_EXCLUDED if (settings or {}).get("earn_on") == TAX_EXCLUDED else TAX_INCLUDED


_REFRESH_AHEAD = 1.0
"""Seconds before a cached program or key expires when the first request to see it reads it
again (`refresh_ahead`)."""
_refreshing: set[str] = set()
_generation = 0
"""Counts `forget` and `forget_key`: a read that began before one is not cached."""


def forget(code: str | None = None) -> None:
    """Drop cached program settings (after an update, and between tests)."""
    global _generation
    _generation += 1
    if code is None:
        _cache.clear()
    else:
        _cache.pop(code, None)


def cached_info(code: str) -> ProgramInfo | None:
    """A program's settings if they are in the cache and fresh (no session needed)."""
    hit = _cache.get(code)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


async def get_info(session: AsyncSession, code: str) -> ProgramInfo:
    """A program's settings by code; raises ProgramNotFound."""
    cached = cached_info(code)
    if cached is not None:
        return cached
    return await _load_info(session, code)


async def _load_info(session: AsyncSession, code: str) -> ProgramInfo:
    """A program's settings read from the store, and cached."""
    generation = _generation
    row = (
        (await session.execute(select(_programs).where(_programs.c.code == code)))
        .mappings()
        .first()
    )
    if row is None:
        raise ProgramNotFound(f"no program {code!r}")
    accounts = (
        await session.execute(
            select(_accounts.c.kind, _accounts.c.id).where(
                _accounts.c.program_id == row["id"], _accounts.c.member_id.is_(None)
            )
        )
    ).all()
    info = ProgramInfo(
        id=row["id"],
        code=row["code"],
        name=row["name"],
        currency=row["currency"],
        currency_exponent=currency_exponent(row["currency"]),
        timezone=row["timezone"],
        points_name=row["points_name"],
        earn_rate=Decimal(row["earn_rate"]),
        rounding=row["rounding"],
        pending_days=row["pending_days"],
        expiry_policy=row["expiry_policy"],
        expiry_days=row["expiry_days"],
        allow_negative=row["allow_negative"],
        redeem_rate=Decimal(row["redeem_rate"]),
        redeem_step=row["redeem_step"],
        card_prefix=row["card_prefix"],
        system_accounts={k: i for k, i in accounts},
        event_types=dict((row["settings"] or {}).get("event_types", {})),
        branding=dict((row["settings"] or {}).get("branding", {})),
        earn_on=earn_on_of(row["settings"]),
    )
    if generation == _generation:  # else forgotten meanwhile: what was read may be stale
        _cache[code] = (time.monotonic() + _CACHE_TTL, info)
    return info


def to_read(info: ProgramInfo, created_at: object = None) -> ProgramRead:
    return ProgramRead(
        code=info.code,
        name=info.name,
        currency=info.currency,
        timezone=info.timezone,
        points_name=info.points_name,
        earn_rate=str(info.earn_rate),
        rounding=info.rounding,
        earn_on=info.earn_on,
        pending_days=info.pending_days,
        expiry=Expiry(policy=info.expiry_policy, days=info.expiry_days),
        allow_negative=info.allow_negative,
        redeem_rate=str(info.redeem_rate),
        redeem_step=info.redeem_step,
        card_prefix=info.card_prefix,
        created_at=created_at or clock.now(),
    )


async def create_program(session: AsyncSession, data: ProgramCreate) -> ProgramInfo:
    """Create a program with its system accounts; the code must be new."""
    exists = await session.execute(select(_programs.c.id).where(_programs.c.code == data.code))
    if exists.first() is not None:
        raise ProgramExists(f"program {data.code!r} already exists")
    now = clock.now()
    try:
        async with session.begin_nested():
            result = await session.execute(
                insert(_programs)
                .values(
                    code=data.code,
                    name=data.name,
                    currency=data.currency,
                    timezone=data.timezone,
                    points_name=data.points_name,
                    earn_rate=data.earn_rate,
                    rounding=data.rounding,
                    pending_days=data.pending_days,
                    expiry_policy=data.expiry.policy,
                    expiry_days=data.expiry.days,
                    allow_negative=data.allow_negative,
                    redeem_rate=data.redeem_rate,
                    redeem_step=data.redeem_step,
                    card_prefix="",
                    feed_seq=0,
                    settings={"earn_on": data.earn_on},
                    created_at=now,
                )
                .returning(_programs.c.id)
            )
    except IntegrityError as exc:
        raise ProgramExists(f"program {data.code!r} already exists") from exc
    program_id = int(result.scalar_one())
    # Card numbers: 8 + program id on 5 digits, so a number names its program.
    prefix = f"8{program_id % 100000:05d}"
    await session.execute(
        update(_programs).where(_programs.c.id == program_id).values(card_prefix=prefix)
    )
    await session.execute(
        insert(_accounts),
        [
            {"program_id": program_id, "member_id": None, "kind": k, "balance": 0}
            for k in SYSTEM_ACCOUNTS
        ],
    )
    forget(data.code)
    return await get_info(session, data.code)


async def program_created_at(session: AsyncSession, program_id: int) -> object:
    return (
        await session.execute(select(_programs.c.created_at).where(_programs.c.id == program_id))
    ).scalar_one()


async def list_programs(session: AsyncSession) -> list[str]:
    return list(
        (await session.execute(select(_programs.c.code).order_by(_programs.c.id))).scalars()
    )


# --- API keys -------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    """Keys carry 256 random bits, so a plain SHA-256 is a safe, fast digest at rest."""
    return hashlib.sha256(key.encode()).hexdigest()


def _key_read(row: Any, key: str | None = None) -> ApiKeyRead:
    def utc(value: Any) -> Any:
        return None if value is None else clock.as_utc(value)

    return ApiKeyRead(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=list(row["scopes"]),
        partner=row["partner_code"],
        created_at=utc(row["created_at"]),
        last_used_at=utc(row.get("last_used_at")),
        revoked_at=utc(row.get("revoked_at")),
        key=key,
    )


async def create_api_key(
    session: AsyncSession, program: ProgramInfo, data: ApiKeyCreate
) -> ApiKeyRead:
    """Make a scoped key; the secret is returned once and only its hash is stored.

    A partner key names a partner of the program (422 otherwise, nothing written)."""
    from habitue.partners import service as partners_service

    if data.partner is not None and not await partners_service.exists(
        session, program, data.partner
    ):
        raise ValidationFailed("partner", f"no partner {data.partner!r} in this program")
    prefix = secrets.token_hex(4)
    key = f"hab_{prefix}_{secrets.token_urlsafe(32)}"
    values = {
        "program_id": program.id,
        "name": data.name,
        "prefix": prefix,
        "key_hash": hash_key(key),
        "scopes": data.scopes,
        "partner_code": data.partner,
        "created_at": clock.now(),
    }
    try:
        async with session.begin_nested():
            result = await session.execute(insert(_keys).values(values).returning(_keys.c.id))
    except IntegrityError as exc:
        raise Conflict(f"a key named {data.name!r} exists in this program") from exc
    return _key_read({**values, "id": int(result.scalar_one())}, key)


async def list_api_keys(session: AsyncSession, program: ProgramInfo) -> list[ApiKeyRead]:
    """The program's keys, revoked ones included, oldest first; never their secrets."""
    rows = (
        await session.execute(
            select(_keys).where(_keys.c.program_id == program.id).order_by(_keys.c.id)
        )
    ).mappings()
    return [_key_read(r) for r in rows]


async def revoke_api_key(
    session: AsyncSession, program: ProgramInfo | None, key_id: int
) -> ApiKeyRead:
    """Revoke a key (of `program` when given); revoking a revoked key changes nothing.

    The caller drops the key from this process's cache after the commit (`forget_key`); other
    processes stop accepting it when their cached entry expires, within `_CACHE_TTL`."""
    q = select(_keys).where(_keys.c.id == key_id)
    if program is not None:
        q = q.where(_keys.c.program_id == program.id)
    row = (await session.execute(q)).mappings().first()
    if row is None:
        raise ApiKeyNotFound(f"no API key {key_id} in this program")
    values = dict(row)
    if row["revoked_at"] is None:
        values["revoked_at"] = clock.now()
        await session.execute(
            update(_keys)
            .where(_keys.c.id == key_id, _keys.c.revoked_at.is_(None))
            .values(revoked_at=values["revoked_at"])
        )
    return _key_read(values)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the operator (every program) or a key of one program.

    A partner key (`partner` set) holds at most `PARTNER_SCOPES` and passes only the routes
    that let partner keys in (`habitue.partners.access`)."""

    name: str
    program_id: int | None
    scopes: frozenset[str]
    partner: str | None = None
    key_id: int | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


_key_cache: dict[str, tuple[float, Principal | None]] = {}


_OPERATOR = Principal(name="operator", program_id=None, scopes=frozenset({"admin"}))


def cached_principal(key: str, admin_key: str | None) -> tuple[bool, Principal | None]:
    """(True, the principal) when a key is known without the store: the admin key, or a key
    looked up (found or not) within the cache's lifetime; (False, None) otherwise."""
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return True, _OPERATOR
    hit = _key_cache.get(hash_key(key))
    if hit is not None and hit[0] > time.monotonic():
        return True, hit[1]
    return False, None


def forget_key(key_id: int | None = None) -> None:
    """Drop a key (every key when None) from this process's cache: a revoked key is refused
    by this process from now on."""
    global _generation
    _generation += 1
    if key_id is None:
        _key_cache.clear()
        _last_use_marks.clear()
        return
    for digest, (_, principal) in list(_key_cache.items()):
        if principal is not None and principal.key_id == key_id:
            _key_cache.pop(digest, None)


async def authenticate(session: AsyncSession, key: str, admin_key: str | None) -> Principal | None:
    """The principal of a bearer key, or None when the key is unknown or revoked."""
    known, principal = cached_principal(key, admin_key)
    if known:
        return principal
    return await _load_principal(session, key)


async def _load_principal(session: AsyncSession, key: str) -> Principal | None:
    """A bearer key's principal read from the store (None: unknown or revoked), and cached."""
    generation = _generation
    digest = hash_key(key)
    row = (
        (
            await session.execute(
                select(_keys).where(_keys.c.key_hash == digest, _keys.c.revoked_at.is_(None))
            )
        )
        .mappings()
        .first()
    )
    principal = None
    if row is not None:
        scopes = frozenset(row["scopes"])
        if row["partner_code"] is not None:
            # Keys made before partner keys were checked may hold more: they lose it.
            scopes &= PARTNER_SCOPES
        principal = Principal(
            name=f"key:{row['name']}",
            program_id=row["program_id"],
            scopes=scopes,
            partner=row["partner_code"],
            key_id=row["id"],
        )
    if generation == _generation:  # else forgotten meanwhile (a revocation): not cached
        _key_cache[digest] = (time.monotonic() + _CACHE_TTL, principal)
    return principal


def _due(name: str, expires: float | None) -> bool:
    """Whether this request reads `name` again now: it expires within `_REFRESH_AHEAD` and
    no other request is reading it (one reads, the others go on with the cached entry)."""
    if expires is None or expires - time.monotonic() > _REFRESH_AHEAD or name in _refreshing:
        return False
    _refreshing.add(name)
    return True


async def refresh_ahead(
    read: Callable[[], AbstractAsyncContextManager[AsyncSession]], key: str, code: str
) -> None:
    """Read a bearer key's principal and a program's settings again before their cached
    entries expire, when they are about to (`_REFRESH_AHEAD`), by one request at a time.

    Under steady traffic the entries then never expire: the requests in flight at an expiry
    would each read them from the store, and the tills' lean routes would hand them all to
    FastAPI's (`habitue.lean`). What is cached is never older than `_CACHE_TTL`, as before: a
    revoked key is refused within it. A failed read is logged; the entry expires as before."""
    digest = hash_key(key)
    key_hit = _key_cache.get(digest)
    info_hit = _cache.get(code)
    reload_key = _due(digest, key_hit[0] if key_hit is not None else None)
    reload_info = _due(f"program:{code}", info_hit[0] if info_hit is not None else None)
    if not (reload_key or reload_info):
        return
    try:
        async with read() as session:
            if reload_key:
                await _load_principal(session, key)
            if reload_info:
                await _load_info(session, code)
    except Exception as exc:  # the cached entries stay until they expire
        log.warning("cache_refresh_failed", error=type(exc).__name__)
    finally:
        _refreshing.discard(digest)
        _refreshing.discard(f"program:{code}")


LAST_USE_INTERVAL = 60.0
"""Seconds between two writes of a key's `last_used_at` by one process."""
_last_use_marks: dict[int, float] = {}


def last_use_due(key_id: int) -> bool:
    """True at most once per `LAST_USE_INTERVAL` per key in this process: when the caller
    should record the key's use (the check costs a dict lookup on every request)."""
    now = time.monotonic()
    last = _last_use_marks.get(key_id)
    if last is not None and now - last < LAST_USE_INTERVAL:
        return False
    _last_use_marks[key_id] = now
    return True


async def record_key_use(session: AsyncSession, key_id: int) -> None:
    """Stamp a key's `last_used_at` with now (one small UPDATE)."""
    await session.execute(
        update(_keys).where(_keys.c.id == key_id).values(last_used_at=clock.now())
    )


def branding_of(program: ProgramInfo) -> Branding:
    """The program's logo and colours, the defaults where none were set."""
    return Branding.model_validate(program.branding)


async def put_branding(session: AsyncSession, program: ProgramInfo, data: Branding) -> Branding:
    """Set the logo and colours the portal and the wallet pass show."""
    q = select(_programs.c.settings).where(_programs.c.id == program.id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    current = dict((await session.execute(q)).scalar_one() or {})
    current["branding"] = data.model_dump(exclude_none=True)
    await session.execute(
        update(_programs).where(_programs.c.id == program.id).values(settings=current)
    )
    forget(program.code)
    return data


async def put_event_type(
    session: AsyncSession, program: ProgramInfo, code: str, data: EventTypeSpec
) -> dict[str, Any]:
    """Declare (or redeclare) a custom event type and the schema of its attributes."""
    from habitue.events.schemas import BUILTIN_TYPES

    if code in BUILTIN_TYPES:
        raise ValidationFailed("code", f"{code!r} is a built-in event type")
    unknown = [r for r in data.required if r not in data.attributes]
    if unknown:
        raise ValidationFailed("required", f"not declared in attributes: {unknown}")
    q = select(_programs.c.settings).where(_programs.c.id == program.id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update()
    current = dict((await session.execute(q)).scalar_one() or {})
    types = dict(current.get("event_types", {}))
    types[code] = data.model_dump()
    current["event_types"] = types
    await session.execute(
        update(_programs).where(_programs.c.id == program.id).values(settings=current)
    )
    forget(program.code)
    return {"code": code, **types[code]}
