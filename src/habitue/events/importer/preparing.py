"""Preparing a chunk: look up its members, enrol the missing ones, decide every purchase and
build the rows to write (nothing is written here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    String,
    Table,
    bindparam,
    cast,
    func,
    select,
    true,
)
from sqlalchemy.types import NullType

from habitue import clock
from habitue.bounds import MAX_POINTS
from habitue.db import table_of
from habitue.events import rows as event_rows
from habitue.events.importer import delivering
from habitue.events.importer.program import (
    _Member,
    _Program,
)
from habitue.events.importer.reading import (
    _Layout,
    _parse_group,
)
from habitue.events.importer.report import (
    ImportReport,
)
from habitue.events.importer.sql import (
    ACCOUNT_COLS,
    BALANCE_AT,
    CARD_COLS,
    COUNTER_COLS,
    EVENT_COLS,
    LIFETIME_AT,
    LINE_COLS,
    MEMBER_COLS,
    OUTBOX_COLS,
    _Ids,
    _json_text,
    _match,
    _pg_array,
    _time_writer,
)
from habitue.events.models import Event, EventLine
from habitue.ids import new_id
from habitue.ledger import bulk
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.members.cards import new_card_numbers
from habitue.members.models import Card, Member
from habitue.messaging import triggers
from habitue.messaging.models import OutboxEvent
from habitue.money import format_minor
from habitue.rules import decide as rules_decide
from habitue.rules.counter_store import new_counters_row
from habitue.rules.models import MemberCounters
from habitue.rules.types import (
    EarnPoints,
    EventInput,
    MemberSnapshot,
)

_members = table_of(Member)
_cards = table_of(Card)
_accounts = table_of(Account)
_events = table_of(Event)
_lines = table_of(EventLine)
_txns = table_of(LedgerTransaction)
_postings = table_of(Posting)
_lots = table_of(Lot)
_outbox = table_of(OutboxEvent)
_counters = table_of(MemberCounters)


def _members_query(program_id: int, external_ids: list[str], dialect: str) -> Any:
    """The members among `external_ids` with their two accounts' ids.

    On PostgreSQL each id is looked up by itself, through the unique index on (program,
    external_id) and the accounts' (member, kind), in a LATERAL subquery that `OFFSET 0`
    keeps from being flattened into a join: its cost is a few index pages per member
    whatever the table's size. As one `= ANY(array)` join, the planner (costing each random
    page at four sequential ones) scanned `members` and `accounts` whole, in parallel, once a
    chunk's members were a few percent of the table: at 1,000,000 members 1.4–2 s of three
    processes for the 24,000 members of a chunk, with 10,000 members a few milliseconds.
    """
    avail = _accounts.alias("a")
    pend = _accounts.alias("p")
    cols = (
        _members.c.external_id,
        _members.c.id,
        _members.c.public_id,
        _members.c.status,
        _members.c.enrolled_at,
        _members.c.tier,
        avail.c.id.label("available"),
        pend.c.id.label("pending"),
    )
    joined = _members.join(
        avail, (avail.c.member_id == _members.c.id) & (avail.c.kind == "available")
    ).join(pend, (pend.c.member_id == _members.c.id) & (pend.c.kind == "pending"))
    if dialect != "postgresql":
        return (
            select(*cols)
            .select_from(joined)
            .where(
                _members.c.program_id == program_id,
                _match(_members.c.external_id, external_ids, dialect),
            )
        )
    wanted = func.unnest(
        cast(bindparam("match_values", _pg_array(external_ids), type_=NullType()), ARRAY(String()))
    ).table_valued("ext").render_derived(name="wanted")
    one = (
        select(*cols)
        .select_from(joined)
        .where(_members.c.program_id == program_id, _members.c.external_id == wanted.c.ext)
        .offset(0)
        .lateral("m")
    )
    return select(one).select_from(wanted.join(one, true()))


def _load_members(conn: Connection, program_id: int, external_ids: list[str]) -> dict[str, _Member]:
    out: dict[str, _Member] = {}
    if not external_ids:
        return out
    for r in conn.execute(_members_query(program_id, external_ids, conn.dialect.name)):
        out[r.external_id] = _Member(
            r.id,
            r.public_id,
            r.status,
            r.available,
            r.pending,
            clock.as_utc(r.enrolled_at),
            r.tier,
        )
    return out


def _fresh_card_numbers(
    conn: Connection, program: _Program, n: int, also_taken: set[str]
) -> list[str]:
    """`n` distinct card numbers under the program's prefix that no card has, nor
    `also_taken` holds, and that this process may issue (`_Program.may_issue`)."""
    out: set[str] = set()
    dialect = conn.dialect.name
    parts = program.share[1]
    while len(out) < n:
        want = (n - len(out)) * parts
        fresh = set(new_card_numbers(program.card_prefix, want)) - out - also_taken
        drawn = [number for number in fresh if program.may_issue(number)]
        taken = set(
            conn.execute(
                select(_cards.c.number).where(_match(_cards.c.number, drawn, dialect))
            ).scalars()
        )
        out.update(set(drawn) - taken)
    return list(out)[:n]


@dataclass
class _Writes:
    """What one chunk writes: rows per table (by name), balance and lifetime deltas. It is
    all the writer needs, and it pickles (the writer may be another process)."""

    number: int
    rows_read: int = 0
    share: tuple[int, int] = (0, 1)
    """The share of the worker that prepared it (`_Program.share`): the ids it numbered."""
    rows: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]] = field(default_factory=list)
    balance: dict[int, int] = field(default_factory=dict)
    lifetime: dict[int, int] = field(default_factory=dict)
    first_ids: dict[str, int] = field(default_factory=dict)
    """Per table, the smallest id the chunk numbered itself (checked on SQLite)."""

    def add(self, table: Table, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.rows.append((table.name, cols, rows))

    def totals(self) -> tuple[tuple[Table, str, dict[int, int]], ...]:
        """The running totals the chunk adds to: (table, column, deltas by row id)."""
        return (_accounts, "balance", self.balance), (_members, "lifetime_earned", self.lifetime)


@dataclass
class _Chunk:
    """A prepared chunk: its writes, and what later chunks must know while it is in flight."""

    writes: _Writes
    external_ids: set[str] = field(default_factory=set)
    enrolled: dict[str, _Member] = field(default_factory=dict)
    cards: set[str] = field(default_factory=set)

    def fold_new_rows(self) -> None:
        """Members and accounts this chunk creates get their lifetime and balance in the
        rows it inserts, rather than in updates of rows it has just written."""
        totals = {
            _members.name: (self.writes.lifetime, LIFETIME_AT),
            _accounts.name: (self.writes.balance, BALANCE_AT),
        }
        for table, _, rows in self.writes.rows:
            if table not in totals:
                continue
            deltas, at = totals[table]
            for n, row in enumerate(rows):
                if row[0] in deltas:
                    rows[n] = (*row[:at], row[at] + deltas.pop(row[0]), *row[at + 1 :])


class _InFlight:
    """Chunks handed to the writer and not committed yet: what the preparing side must
    treat as written although its queries cannot see it yet."""

    def __init__(self) -> None:
        self._chunks: dict[int, _Chunk] = {}

    def add(self, chunk: _Chunk) -> None:
        self._chunks[chunk.writes.number] = chunk

    def committed(self, number: int) -> _Chunk:
        return self._chunks.pop(number)

    def __len__(self) -> int:
        return len(self._chunks)

    def snapshot(self) -> list[_Chunk]:
        """Taken before a query: a chunk either committed before it (the query sees it) or
        is in the snapshot."""
        return list(self._chunks.values())


def _enrol_missing(
    conn: Connection,
    ids: _Ids,
    program: _Program,
    external_ids: list[str],
    now: datetime,
    chunk: _Chunk,
    cards_in_flight: set[str],
) -> dict[str, _Member]:
    member_ids = ids.take(_members, len(external_ids))
    acc_ids = ids.take(_accounts, 2 * len(member_ids))
    with conn.begin():
        numbers = _fresh_card_numbers(conn, program, len(external_ids), cards_in_flight)
    chunk.writes.first_ids.update({_members.name: member_ids[0], _accounts.name: acc_ids[0]})
    chunk.cards.update(numbers)
    ts = _time_writer(conn)(now)
    empty = _json_text({})
    nothing_counted = _json_text(new_counters_row(program.id, 0, now)["state"])
    members: list[tuple[Any, ...]] = []
    accounts: list[tuple[Any, ...]] = []
    counters: list[tuple[Any, ...]] = []
    cards: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    out: dict[str, _Member] = {}
    pid = program.id
    for n, (mid, ext, number) in enumerate(zip(member_ids, external_ids, numbers, strict=True)):
        public = new_id()
        members.append(
            (mid, public, pid, ext, None, None, None, None, None, None, None, "en", "active",
             None, empty, empty, 0, ts, ts)
        )  # fmt: skip
        available, pending = acc_ids[2 * n], acc_ids[2 * n + 1]
        accounts.append((available, pid, mid, "available", 0))
        accounts.append((pending, pid, mid, "pending", 0))
        counters.append((mid, pid, nothing_counted, ts))
        cards.append((pid, mid, number, "physical", "active", None, ts, None))
        payload = {"member_id": public, "card_number": number, "external_id": ext, "locale": "en",
                   "source": triggers.IMPORTED}
        outbox.append((pid, None, "member.enrolled", public, ts, _json_text(payload)))
        out[ext] = _Member(mid, public, "active", available, pending, now, None)
    chunk.writes.add(_members, MEMBER_COLS, members)
    chunk.writes.add(_accounts, ACCOUNT_COLS, accounts)
    chunk.writes.add(_counters, COUNTER_COLS, counters)
    chunk.writes.add(_cards, CARD_COLS, cards)
    chunk.writes.add(_outbox, OUTBOX_COLS, outbox)
    chunk.enrolled.update(out)
    return out


def _existing(conn: Connection, program_id: int, source: str, ext_ids: list[str]) -> set[str]:
    """The external ids among `ext_ids` that events of `source` already have.

    The ids' range bounds the lookup as well (a condition every one of them meets: both
    databases compare these columns byte by byte, the order of `min` and `max` on str).
    Files number their receipts in order, so a chunk's ids span a narrow range, and the
    unique index serves the lookup as one range scan. Without it, PostgreSQL matched a
    chunk of 50,000 ids against a million events with a parallel sequential scan (240 ms
    on three processes, against 45 ms for a range holding nothing yet).
    """
    dialect = conn.dialect.name
    if not ext_ids:
        return set()
    ext = _events.c.external_id
    return set(
        conn.execute(
            select(ext).where(
                _events.c.program_id == program_id,
                _events.c.source == source,
                _match(ext, ext_ids, dialect),
                ext.between(min(ext_ids), max(ext_ids)),
            )
        ).scalars()
    )


def _prepare_chunk(
    conn: Connection,
    ids: _Ids,
    in_flight: _InFlight,
    program: _Program,
    number: int,
    groups: list[list[list[str]]],
    layout: _Layout,
    report: ImportReport,
    *,
    enrol_missing: bool,
    source: str,
    now: datetime,
) -> _Chunk:
    """Parse, look up, decide and build the rows of one chunk; write nothing. `groups` is
    emptied once its rows are no longer needed.

    Lots are built as if no balance were negative; the writer corrects the lots of members
    whose balance is (`_repay_debts`), under the transaction that writes them.
    """
    chunk = _Chunk(_Writes(number, rows_read=sum(len(g) for g in groups), share=program.share))
    parsed: list[tuple[EventInput, str, list[list[str]]]] = []

    def reject(rows: list[list[str]], reason: str) -> None:
        report.rejected += 1
        report.rejects.extend((layout.as_dict(r), reason) for r in rows)

    latest = now + timedelta(minutes=10)
    exponent = program.snapshot.currency_exponent
    for rows in groups:
        try:
            event, member_ext = _parse_group(rows, layout, exponent, latest)
        except ValueError as exc:
            reject(rows, str(exc))
            continue
        parsed.append((event, member_ext, rows))
    pending_chunks = in_flight.snapshot()
    member_exts = sorted({m for _, m, _ in parsed if program.owns(m)})
    with conn.begin():
        existing = _existing(conn, program.id, source, [e.external_id for e, _, _ in parsed])
        members = _load_members(conn, program.id, member_exts)
    for earlier in pending_chunks:
        existing |= earlier.external_ids
        for ext, m in earlier.enrolled.items():
            members.setdefault(ext, m)
    missing = [m for m in member_exts if m not in members]
    if missing and enrol_missing:
        cards_in_flight = set().union(*(c.cards for c in pending_chunks))
        members.update(_enrol_missing(conn, ids, program, missing, now, chunk, cards_in_flight))
        report.enrolled += len(missing)
    todo: list[tuple[EventInput, _Member, list[list[str]]]] = []
    seen = chunk.external_ids
    for event, member_ext, rows in parsed:
        if event.external_id in existing or event.external_id in report.deferred_ids:
            report.already += 1
            continue
        if event.external_id in seen or not program.owns(member_ext):
            # A worker of a partitioned import only gets another worker's member as the
            # repeat of an external id whose first row it had (`_import_partitioned`).
            reject(rows, "duplicate external_id in the file")
            continue
        member = members.get(member_ext)
        if member is None:
            reject(rows, "unknown member_external_id")
            continue
        if member.status != "active":
            reject(rows, f"member is {member.status}")
            continue
        seen.add(event.external_id)
        todo.append((event, member, rows))
    del parsed
    if not todo:
        return chunk
    # By member, each member's purchases keeping their order in the file: the ids drawn
    # below then follow the members too, so that nearly every index the chunk writes to
    # (by member, account, transaction, event) is filled in ascending order, one page after
    # the next, instead of at random places.
    in_file = todo[:]  # the file's order, for the purchases set aside (`delivering`)
    positions: dict[str, int] | None = None
    todo.sort(key=lambda pair: pair[1].id)
    decided: list[tuple[EventInput, _Member, list[EarnPoints], list[EarnPoints], int]] = []
    snapshots: dict[int, MemberSnapshot] = {}
    decide, rules, program_snap = rules_decide.decide, program.rules, program.snapshot
    limited = program.limited_rules
    exponent = program_snap.currency_exponent
    for event, member, rows in todo:
        snap = snapshots.get(member.id)
        if snap is None:
            snap = snapshots[member.id] = MemberSnapshot(
                id=member.public_id,
                status=member.status,
                enrolled_at=member.enrolled_at,
                tier=member.tier,
            )
        try:
            decision = decide(event, snap, program_snap, rules, now)
        except ArithmeticError:  # a rate or rule whose points overflow a decimal
            seen.discard(event.external_id)
            reject(rows, "points: too large")
            continue
        if delivering.delivers(decision, limited):
            # A benefit, a coupon, tier credits or a rule with caps or a budget: recorded by
            # the API's path (`delivering`).
            member_ext = layout.get(rows[0], "member_external_id").strip()
            body = delivering.body_of(event, member_ext, source=source, exponent=exponent)
            if positions is None:
                positions = {e.external_id: i for i, (e, _, _) in enumerate(in_file)}
            report.deferred.append(
                delivering.Deferred(
                    body,
                    tuple(layout.as_dict(r) for r in rows),
                    (number, positions[event.external_id]),
                )
            )
            report.deferred_ids.add(event.external_id)
            continue
        # Points only (`delivering.delivers` sent any other effect to the API's path); as the
        # API credits them (`events.service`): the positive legs, one loop for all the checks.
        effects: list[EarnPoints] = []
        legs: list[EarnPoints] = []
        points, bounded = 0, True
        for e in decision.effects:
            if isinstance(e, EarnPoints):
                effects.append(e)
                amount = e.amount
                bounded = bounded and -MAX_POINTS <= amount <= MAX_POINTS
                if amount > 0:
                    legs.append(e)
                    points += amount
        if not bounded or points > MAX_POINTS:
            seen.discard(event.external_id)
            reject(rows, f"points: more than {MAX_POINTS:,} for one purchase")
            continue
        decided.append((event, member, effects, legs, points))
    # The file's rows are no longer needed (only rejects and purchases set aside quote them):
    # they go now, and each decided purchase once its rows are built, rather than all of them
    # staying until the chunk's rows are complete.
    del todo, in_file, snapshots, rows
    groups.clear()
    imported = len(decided)
    decided.reverse()
    txn_id_list = ids.take(_txns, sum(1 for d in decided if d[3]))
    if txn_id_list:
        chunk.writes.first_ids[_txns.name] = txn_id_list[0]
    txn_ids = iter(txn_id_list)
    ts = _time_writer(conn)
    now_ts = ts(now)
    pid = program.id
    pending_delta = timedelta(days=program_snap.pending_days) if program_snap.pending_days else None
    credits = bulk.BulkCredits(
        program.ledger_terms, ts, actor="import", balance=chunk.writes.balance
    )
    empty = _json_text({})
    events: list[tuple[Any, ...]] = []
    lines: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    lifetime = chunk.writes.lifetime
    answer, recorded, earned = (
        event_rows.purchase_answer,
        event_rows.recorded_payload,
        event_rows.earned_payload,
    )
    recorded_type, earned_type = event_rows.EVENT_RECORDED, event_rows.POINTS_EARNED
    while decided:
        event, member, effects, legs, points = decided.pop()
        event_id = new_id()
        occurred = event.occurred_at
        pending_until = occurred + pending_delta if pending_delta is not None else None
        pending = pending_until is not None and pending_until > now
        total = format_minor(event.total_minor, exponent)
        public = member.public_id
        response = answer(event_id=event_id, external_id=event.external_id, member=public,
                          occurred_at=occurred, total=total, effects=effects, points=points,
                          pending=pending)  # fmt: skip
        occurred_ts = ts(occurred)
        events.append(
            (event_id, pid, member.id, "purchase", source, event.external_id, occurred_ts,
             event.total_minor, points, 0, None, 0, 0, 0, empty, _json_text(response), now_ts)
        )  # fmt: skip
        for n, ln in enumerate(event.lines):
            lines.append(
                (pid, member.id, event_id, n, ln.sku, ln.category, str(ln.quantity),
                 ln.unit_price_minor, ln.amount_minor, ln.tax_minor)
            )  # fmt: skip
        if points:
            credits.earn(
                next(txn_ids), member.id, member.pending if pending else member.available, legs,
                event_id=event_id, earned_at=occurred,
                pending_until=pending_until if pending else None, now=now,
                earned_ts=occurred_ts,
            )  # fmt: skip
            lifetime[member.id] = lifetime.get(member.id, 0) + points
            payload = earned(public, points, event_id, "purchase", pending)
            outbox.append((pid, None, earned_type, public, now_ts, _json_text(payload)))
            report.points += points
        payload = recorded(public, event_id, "purchase", event.external_id, total)
        outbox.append((pid, None, recorded_type, public, now_ts, _json_text(payload)))
    chunk.writes.add(_events, EVENT_COLS, events)
    chunk.writes.add(_lines, LINE_COLS, lines)
    chunk.writes.add(_txns, bulk.TXN_COLS, credits.txns)
    chunk.writes.add(_postings, bulk.POSTING_COLS, credits.postings)
    chunk.writes.add(_lots, bulk.LOT_COLS, credits.lots)
    chunk.writes.add(_outbox, OUTBOX_COLS, outbox)
    chunk.fold_new_rows()
    report.imported += imported
    return chunk
