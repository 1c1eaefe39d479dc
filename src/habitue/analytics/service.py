"""Member scores: RFM, named segments, lifetime value and churn, computed and stored per member.

`compute_scores` is pure over the Arrow snapshot; `refresh_scores` reads the snapshot, computes
and replaces the program's stored scores in the caller's transaction (one unit of work). The
async functions are what the routes call.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import asof, clv, consented, recommend, recommend_eval, rfm, snapshot
from habitue.analytics.errors import AnalyticsError
from habitue.analytics.models import MemberScore
from habitue.db import Database, make_sync_engine, table_of
from habitue.events.models import Event, EventLine
from habitue.members.errors import MemberNotFound
from habitue.members.models import Member
from habitue.money import format_minor
from habitue.privacy import release
from habitue.programs.service import ProgramInfo

T = TypeVar("T")

_scores = table_of(MemberScore)
_members = table_of(Member)

WINDOW_DAYS = 365
HORIZON_MONTHS = 12
ANNUAL_DISCOUNT = 0.10
INSERT_CHUNK = 5000

SCORES_SCHEMA = pa.schema(
    [
        ("member_id", pa.int64()),
        ("recency_days", pa.int64()),
        ("frequency", pa.int64()),
        ("monetary_minor", pa.int64()),
        ("r", pa.int32()),
        ("f", pa.int32()),
        ("m", pa.int32()),
        ("segment", pa.string()),
        ("clv", pa.float64()),
        ("p_alive", pa.float64()),
        ("expected_purchases", pa.float64()),
    ]
)


@dataclass(frozen=True, slots=True)
class ScoresRun:
    """What one computation of scores did."""

    members_scored: int
    members_with_rfm: int
    clv_fitted: bool
    computed_at: datetime
    segments: dict[str, int]
    as_of: datetime | None = None
    """The moment the scores describe (`habitue.analytics.asof`)."""


def _finite(values: np.ndarray[Any, Any]) -> pa.Array:
    """A float array where NaN and infinities become nulls (the API never shows a NaN)."""
    array = np.asarray(values, dtype=np.float64)
    return pa.array(array, type=pa.float64(), mask=~np.isfinite(array))


def lifetime_values(
    events: pa.Table,
    *,
    as_of: datetime,
    horizon_months: int = HORIZON_MONTHS,
    annual_discount_rate: float = ANNUAL_DISCOUNT,
) -> tuple[pa.Table, bool]:
    """CLV, probability alive and expected purchases per purchasing member; (table, fitted)."""
    purchases = events.filter(pc.equal(events.column("type"), "purchase"))
    schema = pa.schema(
        [
            ("member_id", pa.int64()),
            ("clv", pa.float64()),
            ("p_alive", pa.float64()),
            ("expected_purchases", pa.float64()),
        ]
    )
    if purchases.num_rows == 0:
        return schema.empty_table(), False
    end = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us")
    times = purchases.column("occurred_at").to_numpy().astype("datetime64[us]")
    before = times < end  # the calibration period is the history before as_of
    summary = clv.summarise_transactions(
        purchases.column("member_id").to_numpy()[before],
        times[before],
        purchases.column("total_minor").to_numpy().astype(np.float64)[before],
        calibration_end=end - np.timedelta64(1, "us"),
    )
    if summary.frequency.size == 0:
        return schema.empty_table(), False
    ids = pa.array(summary.customer_id.astype(np.int64), pa.int64())
    nulls = pa.nulls(len(ids), pa.float64())
    try:
        with np.errstate(all="ignore"):
            bgnbd = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
            alive = clv.probability_alive(bgnbd, summary.frequency, summary.recency, summary.T)
            expected = clv.conditional_expected_purchases(
                bgnbd, 30.0 / 7.0, summary.frequency, summary.recency, summary.T
            )
    except AnalyticsError:
        return pa.Table.from_arrays([ids, nulls, nulls, nulls], schema=schema), False
    value: pa.Array = nulls
    try:
        with np.errstate(all="ignore"):
            spend = clv.fit_gamma_gamma(summary.frequency, summary.monetary_value)
            value = _finite(
                clv.customer_lifetime_value(
                    bgnbd,
                    spend,
                    summary.frequency,
                    summary.recency,
                    summary.T,
                    np.maximum(summary.monetary_value, 0.0),
                    horizon_months=horizon_months,
                    annual_discount_rate=annual_discount_rate,
                )
            )
    except AnalyticsError:
        value = nulls
    table = pa.Table.from_arrays([ids, value, _finite(alive), _finite(expected)], schema=schema)
    return table, True


def compute_scores(
    events: pa.Table, *, as_of: datetime, window_days: int | None = WINDOW_DAYS
) -> tuple[pa.Table, bool]:
    """RFM scores, segment and CLV per member with a purchase; (table ordered by member, fitted)."""
    scores = rfm.compute_rfm(events, as_of=as_of, window_days=window_days)
    values, fitted = lifetime_values(events, as_of=as_of)
    if values.num_rows == 0 and scores.num_rows == 0:
        return SCORES_SCHEMA.empty_table(), fitted
    joined = scores.join(values, "member_id", join_type="full outer").sort_by("member_id")
    return joined.select(SCORES_SCHEMA.names).cast(SCORES_SCHEMA), fitted


def store_scores(
    conn: Connection, program_id: int, scores: pa.Table, *, computed_at: datetime
) -> int:
    """Replace the program's stored scores by these, in the caller's transaction."""
    conn.execute(delete(_scores).where(_scores.c.program_id == program_id))
    erased = set(
        conn.execute(
            select(_members.c.id).where(
                _members.c.program_id == program_id, _members.c.status == "erased"
            )
        ).scalars()
    )  # an erased member's purchases count in the aggregates, never as their own scores
    rows = [row for row in scores.to_pylist() if row["member_id"] not in erased]
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        for row in chunk:
            row["program_id"] = program_id
            row["computed_at"] = computed_at
        conn.execute(insert(_scores), chunk)
    return len(rows)


def _segment_counts(scores: pa.Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in scores.column("segment").to_pylist():
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def refresh_scores(
    conn: Connection,
    program: ProgramInfo,
    *,
    as_of: datetime | None = None,
    window_days: int | None = WINDOW_DAYS,
    stream: bool = False,
) -> ScoresRun:
    """Read the program's events, score every member who purchased, and store the scores.

    The scores describe the program as of ``as_of`` (default: `asof.resolve`, the end of an
    imported history, or now); they are stamped with the time they were computed."""
    moment = asof.resolve(conn, program, as_of)
    table = snapshot.events(conn, program.id, stream=stream)
    scores, fitted = compute_scores(table, as_of=moment, window_days=window_days)
    computed_at = clock.now()
    stored = store_scores(conn, program.id, scores, computed_at=computed_at)
    with_rfm = scores.num_rows - scores.column("r").null_count
    return ScoresRun(stored, with_rfm, fitted, computed_at, _segment_counts(scores), moment)


async def refresh_scores_async(
    session: AsyncSession, program: ProgramInfo, *, as_of: datetime | None = None
) -> ScoresRun:
    """`refresh_scores` inside an async unit of work."""
    return await session.run_sync(lambda s: refresh_scores(s.connection(), program, as_of=as_of))


async def stored_segment_sizes(session: AsyncSession, program: ProgramInfo) -> dict[str, int]:
    """Members per RFM segment in the stored scores (`member_scores`), in `rfm.SEGMENTS` order;
    empty when the program was never scored."""
    rows = (
        await session.execute(
            select(_scores.c.segment, func.count())
            .where(_scores.c.program_id == program.id, _scores.c.segment.is_not(None))
            .group_by(_scores.c.segment)
        )
    ).all()
    counts = {str(name): int(n) for name, n in rows}
    ordered = {name: counts.pop(name) for name in rfm.SEGMENTS if name in counts}
    return {**ordered, **dict(sorted(counts.items()))}


def _clean(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


async def member_scores(
    session: AsyncSession, program: ProgramInfo, public_id: str
) -> dict[str, Any]:
    """A member's stored scores (all null when never computed or never purchased)."""
    member = (
        await session.execute(
            select(_members.c.id).where(
                _members.c.program_id == program.id, _members.c.public_id == public_id
            )
        )
    ).first()
    if member is None:
        raise MemberNotFound("no such member in this program")
    row = (
        await session.execute(
            select(_scores).where(
                _scores.c.program_id == program.id, _scores.c.member_id == member.id
            )
        )
    ).first()
    out: dict[str, Any] = {
        "member_id": public_id,
        "recency_days": None,
        "frequency": None,
        "monetary": None,
        "r": None,
        "f": None,
        "m": None,
        "segment": None,
        "clv": None,
        "p_alive": None,
        "expected_purchases_30d": None,
        "computed_at": None,
    }
    if row is None:
        return out
    exponent = program.currency_exponent
    value = _clean(row.clv)
    out.update(
        recency_days=row.recency_days,
        frequency=row.frequency,
        monetary=None
        if row.monetary_minor is None
        else format_minor(int(row.monetary_minor), exponent),
        r=row.r,
        f=row.f,
        m=row.m,
        segment=row.segment,
        clv=None if value is None else format_minor(round(value), exponent),
        p_alive=_clean(row.p_alive),
        expected_purchases_30d=_clean(row.expected_purchases),
        computed_at=clock.as_utc(row.computed_at),
    )
    return out


def month_starts(end: datetime, months: int) -> list[datetime]:
    """The first instants (UTC) of the last `months` months up to end's, then end, ascending."""
    end = end.astimezone(UTC)
    index = end.year * 12 + end.month - 1
    out = [
        datetime(i // 12, i % 12 + 1, 1, tzinfo=UTC) for i in range(index - months + 1, index + 1)
    ]
    return out if out[-1] == end else [*out, end]


def segment_history(
    conn: Connection,
    program: ProgramInfo,
    *,
    months: int = 12,
    now: datetime | None = None,
    window_days: int | None = WINDOW_DAYS,
) -> list[dict[str, Any]]:
    """RFM segment sizes at the start of each of the last months and at ``now`` (default: the
    program's as-of moment, `asof.resolve`), oldest first."""
    if not 1 <= months <= 120:
        raise AnalyticsError("months must be between 1 and 120")
    moment = asof.resolve(conn, program, now)
    table = snapshot.events(conn, program.id)
    dates = month_starts(moment, months)
    sizes = rfm.segment_sizes_over_time(table, as_of_dates=dates, window_days=window_days)
    return [
        {
            "as_of": row["as_of"],
            "segment": row["segment"],
            "members": int(row["members"]),
            "monetary_minor": int(row["monetary_minor"] or 0),
        }
        for row in sizes.to_pylist()
    ]


def released_segment_history(
    conn: Connection,
    program: ProgramInfo,
    *,
    months: int = 12,
    now: datetime | None = None,
    k: int,
    window_days: int | None = WINDOW_DAYS,
) -> list[dict[str, Any]]:
    """`segment_history` as released to a key without `admin`: month starts only, and a cell
    null (`suppressed`) when `release.differencing_cells` withholds it over the fixed grid of
    every month start from the program's first event to the current month (whatever the
    request's `months` and `as_of`, so a cell's answer never depends on them)."""
    if not 1 <= months <= 120:
        raise AnalyticsError("months must be between 1 and 120")
    moment = asof.resolve(conn, program, now)
    table = snapshot.events(conn, program.id)
    first = pc.min(table.column("occurred_at")).as_py() if table.num_rows else None
    if first is None:
        return []
    current = month_starts(clock.now(), 1)[0]
    start = first.astimezone(UTC)
    count = (current.year - start.year) * 12 + current.month - start.month
    grid = month_starts(current, count) if count > 0 else []
    scored = [rfm.compute_rfm(table, as_of=d, window_days=window_days) for d in grid]
    memberships = [
        dict(zip(t.column("member_id").to_pylist(), t.column("segment").to_pylist(), strict=True))
        for t in scored
    ]
    hidden = release.differencing_cells(grid, memberships, k)
    shown = set(month_starts(moment, months))
    out: list[dict[str, Any]] = []
    for d, t in zip(grid, scored, strict=True):
        if d not in shown:
            continue
        sizes: dict[str, list[int]] = {}
        for segment, value in zip(
            t.column("segment").to_pylist(), t.column("monetary_minor").to_pylist(), strict=True
        ):
            cell = sizes.setdefault(segment, [0, 0])
            cell[0] += 1
            cell[1] += int(value or 0)
        for segment in sorted(sizes):
            withheld = (d, segment) in hidden
            out.append(
                {
                    "as_of": d,
                    "segment": segment,
                    "members": None if withheld else sizes[segment][0],
                    "monetary_minor": None if withheld else sizes[segment][1],
                    "suppressed": withheld,
                }
            )
    return out


SCORES_MAX_AGE = timedelta(hours=24)


# Recommendations ---------------------------------------------------------------------------

_lines = table_of(EventLine)
_model_cache: dict[int, tuple[tuple[int, ...], recommend.ItemSimilarityModel]] = {}
_served_cache: dict[int, tuple[tuple[int, ...], recommend_eval.ServedModel, int]] = {}
BLENDS_REFRESH = 0.1
"""The served model's blends are chosen again (`recommend_eval.fit_served`'s validation, most
of its cost) when the lines they were chosen on have changed by this share; in between the
model is refitted on every change with the blends kept (docs/analytics.md)."""


def baskets(lines: pa.Table) -> pa.Table:
    """Basket lines as the recommender reads them: member, item (SKU, else category), time."""
    item = pc.coalesce(lines.column("sku"), lines.column("category"))
    table = pa.table(
        {
            "member_id": pc.cast(lines.column("member_id"), pa.string()),
            "item_id": item,
            "occurred_at": lines.column("occurred_at"),
        }
    )
    return table.filter(pc.is_valid(table.column("item_id")))


def _lines_stamp(conn: Connection, program_id: int) -> tuple[int, int]:
    row = conn.execute(
        select(func.count(), func.coalesce(func.max(_lines.c.id), 0)).where(
            _lines.c.program_id == program_id
        )
    ).one()
    return int(row[0]), int(row[1])


def recommend_for_member(
    conn: Connection,
    program: ProgramInfo,
    member_id: int,
    *,
    k: int = 10,
    exclude_recent_days: int | None = None,
    now: datetime | None = None,
    personal: bool = True,
    strategy: str = "item-item",
) -> tuple[list[str], str]:
    """Up to k items for a member and the source: 'item-item' (or 'blend', the model the
    recommendation protocol evaluates, with ``strategy="blend"``: `recommend_eval.fit_served`,
    its blends chosen on the program's own lines, cached until they change) or 'popular' (no
    history, or `personal` false: the member has not consented to profiling)."""
    if not 1 <= k <= 100:
        raise AnalyticsError("k must be between 1 and 100")
    if exclude_recent_days is not None and exclude_recent_days < 1:
        raise AnalyticsError("exclude_recent_days must be at least 1")
    stamp = (*_lines_stamp(conn, program.id), *consented.consents_stamp(conn, program.id))
    cached = _model_cache.get(program.id)
    training: pa.Table | None = None
    if cached is not None and cached[0] == stamp:
        model = cached[1]
    else:  # learnt from the baskets of the members consenting to analytics only
        lines = consented.training_lines(snapshot.lines(conn, program.id), conn, program.id)
        training = baskets(lines)
        model = recommend.fit_item_similarity(training)
        _model_cache[program.id] = (stamp, model)
    mine = baskets(snapshot.lines(conn, program.id, member_id=member_id))
    history = mine.column("item_id").to_pylist()
    exclude: list[str] = []
    if exclude_recent_days is not None:
        cutoff = (now or clock.now()) - timedelta(days=exclude_recent_days)
        recent = pc.greater_equal(
            mine.column("occurred_at"), pa.scalar(cutoff, pa.timestamp("us", "UTC"))
        )
        exclude = mine.filter(recent).column("item_id").to_pylist()
    if not history or not personal:
        return recommend.popular_items(model, k=k, exclude=exclude), "popular"
    if strategy == "blend":
        served = _served_cache.get(program.id)
        if served is None or served[0] != stamp:
            if training is None:
                lines = consented.training_lines(
                    snapshot.lines(conn, program.id), conn, program.id
                )
                training = baskets(lines)
            chosen_on = training.num_rows
            validation = None
            if served is not None and abs(chosen_on - served[2]) <= BLENDS_REFRESH * served[2]:
                validation, chosen_on = served[1].validation, served[2]
            fitted = recommend_eval.fit_served(training, validation=validation)
            served = (stamp, fitted, chosen_on)
            _served_cache[program.id] = served
        return recommend_eval.recommend_top_k(served[1], history, k=k, exclude=exclude), "blend"
    return recommend.recommend(model, history, k=k, exclude=exclude), "item-item"


def evaluate_recommendations(
    conn: Connection, program: ProgramInfo, *, split_at: datetime | None = None, k: int = 10
) -> recommend.OfflineEvaluation:
    """Precision@k and NDCG@k on a time split (default: 80 % of the history before the split)."""
    table = baskets(consented.training_lines(snapshot.lines(conn, program.id), conn, program.id))
    if split_at is None:
        if table.num_rows == 0:
            split_at = clock.now()
        else:
            times = table.column("occurred_at")
            low = pc.min(times).as_py()
            high = pc.max(times).as_py()
            split_at = low + (high - low) * 0.8
    return recommend.evaluate_time_split(table, split_at=split_at, k=k)


def evaluate_protocol(
    conn: Connection,
    program: ProgramInfo,
    *,
    split_at: datetime | None = None,
    k: int = 10,
    horizon_days: int | None = None,
) -> recommend_eval.ProtocolResult:
    """The recommendation protocol (`recommend_eval`) on the program's basket lines; the split
    defaults to 80 % of the way through the history."""
    lines = snapshot.lines(conn, program.id, stream=True)
    table = baskets(consented.training_lines(lines, conn, program.id))
    if split_at is None:
        if table.num_rows == 0:
            split_at = clock.now()
        else:
            times = table.column("occurred_at")
            low = pc.min(times).as_py()
            split_at = low + (pc.max(times).as_py() - low) * 0.8
    return recommend_eval.evaluate_protocol(
        table, split_at=split_at, k=k, horizon_days=horizon_days
    )


# Scheduled work ------------------------------------------------------------------------------

SEGMENTS_MAX_AGE = timedelta(hours=1)
_events = table_of(Event)


async def _scores_due(session: AsyncSession, program: ProgramInfo, now: datetime) -> bool:
    newest = (
        await session.execute(
            select(func.max(_scores.c.computed_at)).where(_scores.c.program_id == program.id)
        )
    ).scalar()
    if newest is not None:
        return clock.as_utc(newest) <= now - SCORES_MAX_AGE
    bought = (
        await session.execute(
            select(_events.c.id)
            .where(_events.c.program_id == program.id, _events.c.type == "purchase")
            .limit(1)
        )
    ).first()
    return bought is not None


async def run_scheduled(db: Database, code: str) -> dict[str, int]:
    """Rescore members daily and recompute dynamic segments hourly; sizes of those recomputed."""
    from habitue.analytics import segments as segments_service
    from habitue.programs import service as programs_service

    now = clock.now()
    async with db.read() as session:
        program = await programs_service.get_info(session, code)
        scores_due = await _scores_due(session, program, now)
        stale = [
            s.code
            for s in await segments_service.list_segments(session, program)
            if scores_due or s.computed_at is None or s.computed_at <= now - SEGMENTS_MAX_AGE
        ]
    if not scores_due and not stale:
        return {}

    async def work(session: AsyncSession) -> dict[str, int]:
        if scores_due:
            await refresh_scores_async(session, program)
        if not stale:
            return {}
        return await segments_service.recompute_async(session, program, stale)

    return await db.write(work)


# Heavy reads off the event loop ----------------------------------------------------------------

_read_engines: dict[str, Engine] = {}


def _read_engine(url: str) -> Engine:
    """The process's engine for heavy reads of `url`. Its pooled connections are checked
    before use (one round trip per heavy read): one the server closed while it sat in the
    pool (a restart, an outage) is replaced instead of failing the next report."""
    engine = _read_engines.get(url)
    if engine is None:
        engine = _read_engines[url] = make_sync_engine(
            url, pool_size=2, max_overflow=2, pool_pre_ping=True
        )
    return engine


async def run_read(db: Database, work: Callable[[Connection], T]) -> T:
    """Run a heavy read: in a worker thread over a sync engine (PostgreSQL, with COPY), or in
    the async read session on SQLite, whose sync engine would take the write lock to read."""
    if db.sqlite:
        async with db.read() as session:
            return await session.run_sync(lambda s: work(s.connection()))
    engine = _read_engine(db.url)

    def run() -> T:
        with engine.connect() as conn:
            return work(conn)

    return await asyncio.to_thread(run)
