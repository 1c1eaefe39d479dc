"""The plan reads back only the events that can call for a delivery: none of the others is
ever one that did (endpoints, written and built-in messages, sign-in links, newsletters), the
feed positions stay contiguous and in commit order, and the cursor ends at the last one."""

from __future__ import annotations

import functools
import itertools
import uuid
from typing import Any, NamedTuple

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from habitue import clock
from habitue.db import Database, table_of
from habitue.messaging import newsletters, outbox, planning, render, triggers, webhooks
from habitue.messaging.models import (
    Delivery,
    DeliveryCursor,
    MessageTemplate,
    OutboxEvent,
    WebhookEndpoint,
)
from habitue.programs import service as programs_service
from habitue.programs.models import Program
from tests.messaging.test_webhooks import _endpoint

_d = table_of(Delivery)
_e = table_of(WebhookEndpoint)
_c = table_of(DeliveryCursor)
_o = table_of(OutboxEvent)
_p = table_of(Program)
_t = table_of(MessageTemplate)

QUIET = ["event.recorded", "member.updated", "card.blocked", "points.spent"]
"""Types nothing below subscribes to and no message is sent for."""


async def _program_id(db: Database, program: str) -> int:
    async with db.read() as s:
        return (await programs_service.get_info(s, program)).id


async def _emit(db: Database, program_id: int, types: list[str], **payload: Any) -> None:
    rows = [
        outbox.outbox_row(program_id, t, str(uuid.uuid4()), {"i": i, **payload})
        for i, t in enumerate(types)
    ]
    await db.write(lambda s: outbox.emit_many(s, rows))


async def _plan(db: Database, program_id: int, limit: int) -> int:
    return await db.write(
        functools.partial(planning.plan_program, program_id=program_id, limit=limit)
    )


async def _catch_up(db: Database, program_id: int, limit: int = 1000) -> None:
    await db.write(planning.ensure_cursors)
    while await _plan(db, program_id, limit):
        pass


async def _state(db: Database, program_id: int) -> tuple[list[Any], list[Any], int, int]:
    """(outbox rows by id, deliveries by id, the cursor, the program's last position)."""
    async with db.read() as s:
        events = (
            await s.execute(
                select(_o.c.id, _o.c.seq, _o.c.type, _o.c.member_id)
                .where(_o.c.program_id == program_id)
                .order_by(_o.c.id)
            )
        ).all()
        deliveries = (
            await s.execute(
                select(_d.c.outbox_id, _d.c.channel, _d.c.endpoint_id, _d.c.template,
                       _d.c.member_id, _d.c.newsletter_id, _d.c.order_key)
                .where(_d.c.program_id == program_id)
                .order_by(_d.c.id)
            )
        ).all()  # fmt: skip
        cursor = (
            await s.execute(select(_c.c.last_seq).where(_c.c.program_id == program_id))
        ).scalar_one()
        feed = (await s.execute(select(_p.c.feed_seq).where(_p.c.id == program_id))).scalar_one()
    return list(events), list(deliveries), int(cursor), int(feed)


async def test_an_endpoint_gets_every_event_of_its_type_across_plan_steps(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    """Small plan steps over commits of mixed types, some numbered first by the events feed
    (`sequence_pending`, as `GET /events-feed` does): every `points.earned` once, in order."""
    program_id = await _program_id(db, program)
    await _catch_up(db, program_id)
    hook = await _endpoint(client, program, "https://example.com/hook", ["points.earned"])
    async with db.read() as s:
        hook_id = (
            await s.execute(select(_e.c.id).where(_e.c.public_id == hook["id"]))
        ).scalar_one()
    mixed = [*QUIET[:2], "points.earned", *QUIET[2:], "points.earned", "points.earned"]
    for round_ in range(6):
        await _emit(db, program_id, mixed[round_:] + mixed[:round_])
        if round_ % 3 == 1:  # the feed numbers them before the worker comes
            await db.write(lambda s: outbox.sequence_pending(s, program_id, limit=5))
        await _plan(db, program_id, limit=4)
        if round_ % 2:
            await _plan(db, program_id, limit=3)
    await _catch_up(db, program_id, limit=4)

    events, deliveries, cursor, feed = await _state(db, program_id)
    earned = [e.id for e in events if e.type == "points.earned"]
    assert len(earned) == 18
    assert [d.outbox_id for d in deliveries] == earned  # each once, in commit order
    assert {(d.channel, d.endpoint_id) for d in deliveries} == {("webhook", hook_id)}
    by_id = {e.id: e for e in events}
    assert [d.order_key for d in deliveries] == [
        f"w{hook_id}:{by_id[d.outbox_id].member_id}" for d in deliveries
    ]
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous, in id order
    assert cursor == feed == seqs[-1]


async def _template(db: Database, program_id: int, code: str, channel: str) -> None:
    now = clock.now()
    row = {"program_id": program_id, "code": code, "channel": channel, "locale": "en",
           "subject": "Hi" if channel == "email" else None, "body": "Hello",
           "created_at": now, "updated_at": now}  # fmt: skip
    await db.write(lambda s: s.execute(insert(_t), row))


async def test_messages_are_planned_among_events_that_call_for_nothing(
    program: str, db: Database
) -> None:
    """Written templates (here `points_earned` by SMS only and a newsletter's), built-in texts
    (`tier_up` when moving up only), sign-in links and newsletters, each once; nothing for
    the events between them, nor for an event without a member."""
    program_id = await _program_id(db, program)
    await _catch_up(db, program_id)
    await _template(db, program_id, "points_earned", "sms")
    await _template(db, program_id, "spring_news", "email")
    rows = []
    for i in range(5):
        member = f"m{i}"
        rows += [
            outbox.outbox_row(program_id, "event.recorded", member, {"points": i}),
            outbox.outbox_row(program_id, "points.earned", member, {"points": i}),
            outbox.outbox_row(program_id, "tier.changed", member,
                              {"direction": "up" if i % 2 else "down"}),
            outbox.outbox_row(program_id, "member.sign_in_link", member,
                              {"member_id": member, "email": f"{member}@example.org",
                               "locale": "en", "link_id": i}),
            outbox.outbox_row(program_id, newsletters.QUEUED, member,
                              {"template": "spring_news", "newsletter_id": 40 + i}),
            outbox.outbox_row(program_id, "member.enrolled", None, {}),
            outbox.outbox_row(program_id, "points.expired", member, {"points": i}),
        ]  # fmt: skip
    await db.write(lambda s: outbox.emit_many(s, rows))
    await _catch_up(db, program_id, limit=6)

    events, deliveries, cursor, feed = await _state(db, program_id)
    mine = events[-len(rows) :]
    expected = []
    for e in mine:
        member = e.member_id
        if e.type == "points.earned":
            expected.append((e.id, "sms", None, "points_earned", member, None, f"sms:{member}"))
        elif e.type == "tier.changed" and int(member[1:]) % 2:
            expected.append((e.id, "email", None, "tier_up", member, None, f"email:{member}"))
        elif e.type == "member.sign_in_link":
            expected.append(
                (e.id, "email", None, planning.SIGN_IN_LINK, member, None, f"email:{member}")
            )
        elif e.type == newsletters.QUEUED:
            news = 40 + int(member[1:])
            expected.append((e.id, "email", None, "spring_news", member, news, f"email:{member}"))
    assert [tuple(d) for d in deliveries] == expected
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert cursor == feed == seqs[-1]


async def test_a_plan_that_fails_leaves_its_events_to_the_next(
    client: httpx.AsyncClient, program: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numbering, the cursor and the deliveries go in one transaction: a planner that
    fails (or is killed) before the commit leaves the events unnumbered and unplanned."""
    program_id = await _program_id(db, program)
    await _catch_up(db, program_id)
    await _endpoint(client, program, "https://example.com/hook", ["points.earned"])
    _, _, cursor_before, _ = await _state(db, program_id)
    await _emit(db, program_id, ["event.recorded", "points.earned"] * 3)

    async def broken(*_: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(planning, "insert_deliveries", broken)
    with pytest.raises(RuntimeError, match="killed"):
        await _plan(db, program_id, limit=1000)
    events, deliveries, cursor, _ = await _state(db, program_id)
    assert [e.seq for e in events[-6:]] == [None] * 6
    assert (deliveries, cursor) == ([], cursor_before)

    monkeypatch.undo()
    await _catch_up(db, program_id)
    events, deliveries, cursor, _ = await _state(db, program_id)
    assert [d.outbox_id for d in deliveries] == [e.id for e in events[-6:] if e.type != QUIET[0]]
    assert cursor == events[-1].seq


class _Event(NamedTuple):
    id: int
    seq: int
    type: str
    member_id: str | None
    payload: Any


_TYPES = sorted(
    {*webhooks.CATALOGUE, *triggers.TRIGGERS, "member.sign_in_link", newsletters.QUEUED,
     "unknown.type"}
)  # fmt: skip
_PAYLOADS = [
    {},
    {"direction": "up"},
    {"direction": "down"},
    {"template": "spring_news", "newsletter_id": 7},
    {"template": "welcome"},
    {"points": 5},
    {"source": triggers.IMPORTED},
]
_CODES = sorted({*triggers.TRIGGERS.values(), "spring_news", "nope"})


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(_TYPES), st.sampled_from(_PAYLOADS), st.booleans()),
        max_size=30,
    ),
    endpoints=st.lists(
        st.lists(st.sampled_from([*sorted(webhooks.CATALOGUE), "*"]), min_size=1, max_size=3),
        max_size=3,
    ),
    written=st.sets(st.tuples(st.sampled_from(_CODES), st.sampled_from(render.CHANNELS))),
    built_in=st.sampled_from([(), ("email",), ("email", "sms", "push")]),
    skip_through=st.integers(0, 5),
)
def test_the_events_left_unread_never_call_for_a_delivery(
    events: list[tuple[str, dict[str, Any], bool]],
    endpoints: list[list[str]],
    written: set[tuple[str, str]],
    built_in: tuple[str, ...],
    skip_through: int,
) -> None:
    """What the plan makes of every event, read whole, is what it makes of the events of
    `wanted_types` only, read without the payload unless their type is in `PAYLOAD_TYPES`."""
    hooks = [(i + 1, subscription) for i, subscription in enumerate(endpoints)]
    whole = [
        _Event(i + 1, i + 1, type_, "m" if member else None, payload)
        for i, (type_, payload, member) in enumerate(events)
    ]
    wanted = planning.wanted_types(hooks, written, built_in)
    read = [
        e._replace(payload=e.payload if e.type in planning.PAYLOAD_TYPES else None)
        for e in whole
        if e.type in wanted
    ]

    def plan(of: list[_Event]) -> list[tuple[Any, ...]]:
        rows = planning._deliveries(of, hooks, written, built_in, skip_through)
        return [r[1:] for r in rows]  # all but the public id, new for each row

    assert plan(read) == plan(whole)


def test_each_event_left_unread_calls_for_nothing_whatever_the_program() -> None:
    """Every type and payload, alone, against endpoints and templates of every kind."""
    written_sets = [
        set(),
        *({(code, ch)} for code in _CODES for ch in render.CHANNELS),
        {(code, ch) for code in _CODES for ch in render.CHANNELS},
    ]
    for type_ in _TYPES:
        endpoint_sets = [[], [(1, ["*"])], [(1, ["points.earned"]), (2, [type_])]]
        for payload in _PAYLOADS:
            for member in ("m", None):
                event = _Event(1, 1, type_, member, payload)
                bare = event._replace(payload=None)
                for hooks, written, built_in in itertools.product(
                    endpoint_sets, written_sets, [(), ("email",), ("email", "sms", "push")]
                ):
                    whole = planning._deliveries([event], hooks, written, built_in, 0)
                    if type_ not in planning.wanted_types(hooks, written, built_in):
                        assert whole == [], (event, hooks, written, built_in)
                    elif type_ not in planning.PAYLOAD_TYPES:
                        read = planning._deliveries([bare], hooks, written, built_in, 0)
                        assert [r[1:] for r in read] == [r[1:] for r in whole]
