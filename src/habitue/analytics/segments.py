"""Dynamic segments: a CEL condition over member features, recomputed into a membership table.

A condition sees one variable, ``member``, with the fields of `FEATURES`: the stored RFM scores
and segment, CLV (in currency units) and probability alive, tier, status, attributes, consents
(channel → bool) and the purchased categories, e.g.
``member.segment == "Champions" && "coffee" in member.categories && member.consents.email``.
A condition that fails for one member (a missing attribute) leaves that member out.

A segment whose condition reads the member's behaviour (`BEHAVIOUR`: RFM, CLV, purchased
categories…) is a *profiling* segment: its membership is computed for everyone (its size is
an aggregate), but it targets — offers, rule audiences, newsletters — only the members who
consent to profiling (`targetable_members`, `segments_for_rules`). A condition over declared
data only (tier, status, attributes, consents, tenure) targets everyone in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import cel
import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics.errors import InvalidSegmentCondition, SegmentExists, SegmentNotFound
from habitue.analytics.models import MemberScore, Segment, SegmentMember
from habitue.db import table_of
from habitue.events.models import EventLine
from habitue.members.models import Member
from habitue.privacy import purposes
from habitue.programs.service import ProgramInfo
from habitue.rules.expressions import scan

_segments = table_of(Segment)
_segment_members = table_of(SegmentMember)
_scores = table_of(MemberScore)
_members = table_of(Member)
_lines = table_of(EventLine)

FEATURES: dict[str, Any] = {
    "id": "",
    "tier": "",
    "status": "active",
    "segment": "",
    "r": 0,
    "f": 0,
    "m": 0,
    "recency_days": -1,
    "frequency": 0,
    "monetary": 0.0,
    "clv": 0.0,
    "p_alive": 0.0,
    "attributes": {},
    "consents": {},
    "categories": [],
    "tenure_days": 0,
}
"""Member features a condition may read, with the value a member without it gets."""

BEHAVIOUR = frozenset(
    {"segment", "r", "f", "m", "recency_days", "frequency", "monetary", "clv", "p_alive",
     "categories"}
)  # fmt: skip
"""Features derived from the member's behaviour: a condition reading any is profiling."""

INSERT_CHUNK = 5000


@lru_cache(maxsize=4096)
def is_profiling(condition: str) -> bool:
    """Whether the condition reads the member's behaviour (or the whole `member` value)."""
    refs, _ = scan(condition)
    return any(
        ref.path[0] == "member" and (len(ref.path) == 1 or ref.path[1] in BEHAVIOUR)
        for ref in refs
    )


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A segment definition and the size of its last computation."""

    code: str
    name: str
    condition: str
    members: int
    computed_at: datetime | None
    created_at: datetime

    @property
    def profiling(self) -> bool:
        """Targets only members consenting to profiling (see the module's docstring)."""
        return is_profiling(self.condition)


def compile_condition(source: str) -> Any:
    """Compile a segment condition, raising `InvalidSegmentCondition` with the reason."""
    if not source.strip():
        raise InvalidSegmentCondition("condition: must not be empty")
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).split("\n")[0]
        raise InvalidSegmentCondition(f"condition: invalid CEL: {reason}") from exc
    unknown = sorted(set(program.variables()) - {"member"})
    if unknown:
        raise InvalidSegmentCondition(
            f"condition: unknown variable {unknown[0]!r}; conditions read 'member' "
            f"({', '.join(sorted(FEATURES))})"
        )
    refs, _ = scan(source)
    for ref in refs:
        if ref.path[0] == "member" and len(ref.path) > 1 and ref.path[1] not in FEATURES:
            line, column = ref.positions[1]
            raise InvalidSegmentCondition(
                f"condition: unknown field 'member.{ref.path[1]}' at {line}:{column}; "
                f"known: {', '.join(sorted(FEATURES))}"
            )
    try:
        result = program.execute({"member": dict(FEATURES)})
    except Exception:  # noqa: BLE001 - a sample member may lack an attribute: not an error
        return program
    if not isinstance(result, bool):
        raise InvalidSegmentCondition(f"condition: must be a boolean, not {type(result).__name__}")
    return program


def _loads(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        loaded = orjson.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return dict(value)


def _granted(value: Any) -> bool:
    """A consent entry is {"granted": bool, "at": ..., "history": [...]} (or a bare bool)."""
    if isinstance(value, dict):
        return bool(value.get("granted"))
    return bool(value)


def member_features(
    conn: Connection, program: ProgramInfo, *, now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """The features of every member of the program, by internal member id."""
    moment = now or clock.now()
    m, s = _members.c, _scores.c
    scale = 10.0**program.currency_exponent
    rows = conn.execute(
        select(
            m.id,
            m.public_id,
            m.tier,
            m.status,
            m.attributes,
            m.consents,
            m.enrolled_at,
            s.segment,
            s.r,
            s.f,
            s.m,
            s.recency_days,
            s.frequency,
            s.monetary_minor,
            s.clv,
            s.p_alive,
        )
        .outerjoin(_scores, (s.member_id == m.id) & (s.program_id == program.id))
        .where(m.program_id == program.id, m.status != "erased")
    )
    features: dict[int, dict[str, Any]] = {}
    for row in rows:
        enrolled = clock.as_utc(row.enrolled_at)
        consents = {k: _granted(v) for k, v in _loads(row.consents).items()}
        features[row.id] = {
            "id": row.public_id,
            "tier": row.tier or "",
            "status": row.status,
            "segment": row.segment or "",
            "r": row.r or 0,
            "f": row.f or 0,
            "m": row.m or 0,
            "recency_days": -1 if row.recency_days is None else int(row.recency_days),
            "frequency": int(row.frequency or 0),
            "monetary": (row.monetary_minor or 0) / scale,
            "clv": (row.clv or 0.0) / scale,
            "p_alive": float(row.p_alive or 0.0),
            "attributes": _loads(row.attributes),
            "consents": consents,
            "categories": [],
            "tenure_days": max((moment - enrolled).days, 0),
        }
    categories = conn.execute(
        select(_lines.c.member_id, _lines.c.category)
        .where(_lines.c.program_id == program.id, _lines.c.category.is_not(None))
        .distinct()
    )
    for member_id, category in categories:
        entry = features.get(member_id)
        if entry is not None:
            entry["categories"].append(category)
    return features


def evaluate(program: Any, features: dict[int, dict[str, Any]]) -> list[int]:
    """The ids of the members whose features satisfy the compiled condition, ascending."""
    out: list[int] = []
    for member_id in sorted(features):
        try:
            result = program.execute({"member": features[member_id]})
        except Exception:  # noqa: S112 - a condition failing on one member leaves it out
            continue
        if result is True:
            out.append(member_id)
    return out


def _info(row: Any) -> SegmentInfo:
    return SegmentInfo(
        code=row.code,
        name=row.name,
        condition=row.condition,
        members=row.members,
        computed_at=clock.as_utc(row.computed_at) if row.computed_at is not None else None,
        created_at=clock.as_utc(row.created_at),
    )


def recompute(
    conn: Connection,
    program: ProgramInfo,
    *,
    codes: Iterable[str] | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Recompute the memberships of the program's segments (all, or those named); sizes."""
    moment = now or clock.now()
    query = select(_segments).where(_segments.c.program_id == program.id)
    if codes is not None:
        query = query.where(_segments.c.code.in_(list(codes)))
    definitions = conn.execute(query.order_by(_segments.c.code)).all()
    if not definitions:
        return {}
    features = member_features(conn, program, now=moment)
    sizes: dict[str, int] = {}
    for definition in definitions:
        try:
            compiled = compile_condition(definition.condition)
            ids = evaluate(compiled, features)
        except InvalidSegmentCondition:
            ids = []
        conn.execute(delete(_segment_members).where(_segment_members.c.segment_id == definition.id))
        rows = [
            {"program_id": program.id, "segment_id": definition.id, "member_id": i} for i in ids
        ]
        for start in range(0, len(rows), INSERT_CHUNK):
            conn.execute(insert(_segment_members), rows[start : start + INSERT_CHUNK])
        conn.execute(
            update(_segments)
            .where(_segments.c.id == definition.id)
            .values(members=len(ids), computed_at=moment)
        )
        sizes[definition.code] = len(ids)
    return sizes


async def create_segment(
    session: AsyncSession, program: ProgramInfo, *, code: str, name: str, condition: str
) -> SegmentInfo:
    """Define a segment (its condition must compile) and compute its members at once."""
    compile_condition(condition)
    now = clock.now()
    try:
        async with session.begin_nested():
            await session.execute(
                insert(_segments).values(
                    program_id=program.id,
                    code=code,
                    name=name or code,
                    condition=condition,
                    members=0,
                    created_at=now,
                )
            )
    except IntegrityError as exc:
        raise SegmentExists(f"a segment {code!r} already exists in this program") from exc
    await session.run_sync(lambda s: recompute(s.connection(), program, codes=[code], now=now))
    from habitue.analytics import hooks as analytics_hooks  # the hooks import this module

    analytics_hooks.forget(program.id)
    return await get_segment(session, program, code)


async def get_segment(session: AsyncSession, program: ProgramInfo, code: str) -> SegmentInfo:
    """A segment by code; raises `SegmentNotFound`."""
    row = (
        await session.execute(
            select(_segments).where(_segments.c.program_id == program.id, _segments.c.code == code)
        )
    ).first()
    if row is None:
        raise SegmentNotFound(f"no segment {code!r} in this program")
    return _info(row)


async def list_segments(session: AsyncSession, program: ProgramInfo) -> list[SegmentInfo]:
    """The program's segments ordered by code."""
    rows = await session.execute(
        select(_segments).where(_segments.c.program_id == program.id).order_by(_segments.c.code)
    )
    return [_info(row) for row in rows]


async def recompute_async(
    session: AsyncSession, program: ProgramInfo, codes: Iterable[str] | None = None
) -> dict[str, int]:
    """`recompute` inside an async unit of work."""
    names = None if codes is None else list(codes)
    return await session.run_sync(lambda s: recompute(s.connection(), program, codes=names))


async def members_in_segment(session: AsyncSession, program: ProgramInfo, code: str) -> list[int]:
    """Internal ids of the segment's members at its last computation (for rules, offers, mail)."""
    segment = (
        await session.execute(
            select(_segments.c.id).where(
                _segments.c.program_id == program.id, _segments.c.code == code
            )
        )
    ).first()
    if segment is None:
        raise SegmentNotFound(f"no segment {code!r} in this program")
    rows = await session.execute(
        select(_segment_members.c.member_id)
        .where(_segment_members.c.segment_id == segment.id)
        .order_by(_segment_members.c.member_id)
    )
    return [int(r) for r in rows.scalars()]


async def targetable_members(
    session: AsyncSession, program: ProgramInfo, code: str
) -> list[int]:
    """The segment's members that an offer or a newsletter may target: all of them, or for a
    profiling segment only those consenting to profiling (at this moment)."""
    info = await get_segment(session, program, code)
    ids = await members_in_segment(session, program, code)
    if info.profiling:
        ids = await purposes.members_allowing(session, ids, purposes.Purpose.PROFILING)
    return ids


async def segments_for_rules(session: AsyncSession, member_id: int) -> frozenset[str]:
    """Codes of the segments a rule may see the member in (`MemberSnapshot.segments`): every
    segment they belong to, less the profiling ones when they do not consent to profiling.

    One statement, as `segments_of_member`: the member's consents come with the join."""
    rows = (
        await session.execute(
            select(_segments.c.code, _segments.c.condition, _members.c.consents)
            .join(_segment_members, _segment_members.c.segment_id == _segments.c.id)
            .join(_members, _members.c.id == _segment_members.c.member_id)
            .where(_segment_members.c.member_id == member_id)
        )
    ).all()
    if not rows:
        return frozenset()
    profiled = purposes.granted(_loads(rows[0].consents), purposes.Purpose.PROFILING)
    return frozenset(r.code for r in rows if profiled or not is_profiling(r.condition))


async def segments_of_member(session: AsyncSession, member_id: int) -> frozenset[str]:
    """Codes of the segments a member belongs to (for `MemberSnapshot.segments`)."""
    rows = await session.execute(
        select(_segments.c.code)
        .join(_segment_members, _segment_members.c.segment_id == _segments.c.id)
        .where(_segment_members.c.member_id == member_id)
    )
    return frozenset(rows.scalars())


async def member_public_ids(session: AsyncSession, ids: list[int]) -> list[str]:
    """Public ids of members given by internal id, in the same order."""
    found: dict[int, str] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = await session.execute(
            select(_members.c.id, _members.c.public_id).where(_members.c.id.in_(chunk))
        )
        found.update({r.id: r.public_id for r in rows})
    return [found[i] for i in ids if i in found]
