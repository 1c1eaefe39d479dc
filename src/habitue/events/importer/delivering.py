"""Purchases whose decision delivers more than points, recorded through the API's own path.

A `benefit` grants a privilege with its `until`, a `coupon` issues a coupon of a reward,
`tier_credits` count toward the member's tier: each is applied by its room's applier in the
event's transaction (`events.apply`, `events.service`). A rule with caps or a budget reads
and writes its usage (per member and period, per rule). The bulk path writes points only and
keeps no usage, so a purchase whose decision (by the import's `decide`) holds any other
effect, or in which a rule with caps or a budget gave or was clipped, is set aside
while its chunk is prepared (`Deferred`) and, once every chunk is in, recorded in file
order by `events.service.record` exactly as `POST /events` records it: the same `decide` (caps,
budgets, the member's tier and benefits included), the same appliers, random effects drawn
from the same seed (rule, version, external id). Nearly every file has none of them (the
demo's pastry lottery wins 2 purchases in 100), so the import keeps its speed.

Each is one unit of work: one that fails is rejected with its reason and nothing of it is
written. A re-run skips a purchase recorded either way (same source and external id).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue.db import table_of
from habitue.errors import HabitueError
from habitue.events.importer.report import ImportReport
from habitue.events.models import Event
from habitue.events.schemas import EventCreate, LineIn, MemberSelector
from habitue.money import format_minor
from habitue.rules.types import Decision, EarnPoints, EventInput

_events = table_of(Event)


def delivers(decision: Decision, limited: frozenset[str] = frozenset()) -> bool:
    """Whether a decision holds an effect the bulk path does not write (anything but points),
    or one of the `limited` rules (with caps or a budget) gave or was clipped in it.

    The import decides without caps and budgets usage (tallies count as zero): when no
    limited rule appears, the API's decision with the real usage is the same
    (`rules.decide.limits_apply`); when one does, only the API's path can tell what its caps
    and budget leave, and it writes their usage."""
    effects = decision.effects
    for e in effects:  # a loop, not `any`: this runs for every purchase of a file
        if not isinstance(e, EarnPoints):
            return True
    if not limited:
        return False
    return any(e.rule_code in limited for e in effects) or any(
        c.rule_code in limited for c in decision.capped
    )


@dataclass(frozen=True, slots=True)
class Deferred:
    """A purchase set aside for the API's path: its body, its CSV rows for the rejects, and
    its place in the file (chunk number, then order in the chunk)."""

    body: EventCreate
    rows: tuple[dict[str, str], ...]
    position: tuple[int, int] = (0, 0)


def body_of(
    event: EventInput, member_external_id: str, *, source: str, exponent: int
) -> EventCreate:
    """The `POST /events` body of an imported purchase (amounts as the CSV gave them)."""
    return EventCreate(
        type="purchase",
        member=MemberSelector(external_id=member_external_id),
        external_id=event.external_id,
        source=source,
        occurred_at=event.occurred_at,
        total=format_minor(event.total_minor, exponent),
        lines=[
            LineIn(
                sku=ln.sku,
                category=ln.category,
                quantity=ln.quantity,
                unit_price=format_minor(ln.unit_price_minor, exponent),
                amount=format_minor(ln.amount_minor, exponent),
                tax_rate=ln.tax_rate,  # the line as charged, tax included: the same tax
            )
            for ln in event.lines
        ],
    )


def deliver(engine: Engine, program_code: str, report: ImportReport) -> None:
    """Record the report's deferred purchases through the API's path, in file order.

    Run on a thread of its own, with its own event loop: the import is synchronous and may
    be called from a coroutine (the tests do)."""
    deferred, report.deferred = report.deferred, []
    # In file order, whichever worker or chunk set them aside: a budget shared by all members
    # runs out at the same purchase as when the file's purchases are posted in order.
    deferred.sort(key=lambda item: item.position)
    report.deferred_ids.clear()
    if not deferred:
        return
    url = engine.url.render_as_string(hide_password=False)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_deliver(url, program_code, deferred, report))
        except BaseException as exc:  # raised again by the importing thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="habitue-import-deliver")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


async def _deliver(
    url: str, program_code: str, deferred: list[Deferred], report: ImportReport
) -> None:
    from habitue import rooms
    from habitue.db import Database
    from habitue.events import service
    from habitue.programs import service as programs_service

    db = Database(url, group_commit=False, pool_size=1)
    pipeline = rooms.build_pipeline()
    try:
        async with db.read() as session:
            program = await programs_service.get_info(session, program_code)
        for item in deferred:
            body = item.body

            async def unit(session: AsyncSession, body: EventCreate = body) -> tuple[bool, Any]:
                if await _recorded(session, program.id, body):
                    return False, None
                return True, await service.record(session, pipeline, program, body)

            try:
                new, answer = await db.write(unit, key=service.lock_key(body))
            except (HabitueError, ValidationError, ValueError) as exc:
                report.rejected += 1
                reason = exc.detail if isinstance(exc, HabitueError) else str(exc)
                report.rejects.extend((row, reason) for row in item.rows)
                continue
            if not new:
                report.already += 1
                continue
            report.imported += 1
            report.delivered += 1
            report.points += answer.points_earned
    finally:
        await db.dispose()


async def _recorded(session: AsyncSession, program_id: int, body: EventCreate) -> bool:
    """Whether an event of the body's source and external id is recorded already."""
    found = await session.execute(
        select(_events.c.id).where(
            _events.c.program_id == program_id,
            _events.c.source == body.source,
            _events.c.external_id == body.external_id,
        )
    )
    return found.first() is not None
