"""The delivery worker: reads the outbox in commit order and sends what each event calls for.

One step of the worker:

1. **Plan.** For each program, under its cursor's row lock (`FOR UPDATE SKIP LOCKED` on
   PostgreSQL: one planner per program at a time, the others skip it), the committed outbox
   events get their feed positions (`outbox.sequence_pending`), and the events after the
   cursor become `deliveries` rows — one per subscribed webhook endpoint and one per message
   channel — in the same transaction that moves the cursor. A worker killed here loses
   nothing: the transaction is rolled back and the next planner reads the same events.
2. **Claim.** Pending deliveries that are due, and the oldest pending one of their
   `order_key` (one member on one channel or endpoint), are claimed for
   `worker_lease_seconds` (`locked_until`), with `FOR UPDATE SKIP LOCKED` on PostgreSQL so
   that several workers share the work and never claim one delivery together.
3. **Send** the claimed deliveries concurrently (at most one per member and channel), then
   **record** each attempt and the outcome: `sent`, `skipped` (with the reason), retried
   later (exponential back-off with jitter) or, after the retry period, `failed` (parked).
   A worker killed while sending leaves its deliveries claimed until the lease ends; another
   worker (or the same, restarted) then sends them again: at least once.

SQLite runs one worker (its writes go through one writer anyway).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dt_time
from typing import Any

import orjson
import structlog
from sqlalchemy import bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, dialect_name, table_of
from habitue.ids import new_id
from habitue.members.models import Member
from habitue.messaging import (
    defaults,
    newsletters,
    outbox,
    render,
    signing,
    timed,
    triggers,
    unsubscribe,
    webhooks,
)
from habitue.messaging.channels import Channels, DeliveryError, Outgoing
from habitue.messaging.errors import InvalidTemplate
from habitue.messaging.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryCursor,
    MessageTemplate,
    OutboxEvent,
    WebhookEndpoint,
)
from habitue.programs.models import Program
from habitue.programs.service import ProgramInfo
from habitue.settings import Settings

log = structlog.get_logger()

_d = table_of(Delivery)
_a = table_of(DeliveryAttempt)
_c = table_of(DeliveryCursor)
_o = table_of(OutboxEvent)
_e = table_of(WebhookEndpoint)
_t = table_of(MessageTemplate)
_p = table_of(Program)
_m = table_of(Member)

PLAN_LIMIT = 1000
MAX_DELAY_SECONDS = 3600.0
SIGN_IN_LINK = "sign_in_link"


def message_code(type_: str, payload: Any) -> str | None:
    """The message an event calls for: a template code, or the sign-in link email."""
    if type_ == "member.sign_in_link":
        return SIGN_IN_LINK
    if type_ == newsletters.QUEUED:
        template = payload.get("template") if isinstance(payload, dict) else None
        return template if isinstance(template, str) else None
    return triggers.template_code(type_, payload if isinstance(payload, dict) else {})


# --- plan -------------------------------------------------------------------------------------


async def ensure_cursors(session: AsyncSession) -> None:
    """A cursor for every program without one, at the start of its feed."""
    await session.execute(
        text(
            "INSERT INTO delivery_cursors (program_id, last_seq, skip_through_id) "
            "SELECT p.id, 0, 0 FROM programs p WHERE NOT EXISTS "
            "(SELECT 1 FROM delivery_cursors c WHERE c.program_id = p.id) "
            "ON CONFLICT DO NOTHING"
        )
    )


def _row(
    program_id: int,
    event: Any,
    channel: str,
    now: datetime,
    *,
    template: str | None = None,
    endpoint_id: int | None = None,
    order_key: str | None = None,
    newsletter_id: int | None = None,
) -> dict[str, Any]:
    return {
        "public_id": new_id(),
        "program_id": program_id,
        "outbox_id": event.id,
        "event_type": event.type,
        "member_id": event.member_id,
        "channel": channel,
        "template": template,
        "endpoint_id": endpoint_id,
        "order_key": order_key,
        "status": "pending",
        "reason": None,
        "attempts": 0,
        "next_attempt_at": now,
        "locked_until": None,
        "retry_from": now,
        "created_at": now,
        "sent_at": None,
        "newsletter_id": newsletter_id,
    }


async def plan_program(
    session: AsyncSession,
    program_id: int,
    *,
    limit: int = PLAN_LIMIT,
    built_in: Collection[str] = ("email",),
) -> int:
    """Turn the program's next outbox events into deliveries; the number of events read.

    A message goes on each channel the program wrote its template for, and on each channel of
    `built_in` that has a built-in text for it (`defaults.BUILT_IN`)."""
    q = select(_c.c.last_seq, _c.c.skip_through_id).where(_c.c.program_id == program_id)
    if dialect_name(session) == "postgresql":
        q = q.with_for_update(skip_locked=True)
    cursor = (await session.execute(q)).first()
    if cursor is None:  # another worker is planning this program (or no cursor yet)
        return 0
    last, skip_through = cursor
    await outbox.sequence_pending(session, program_id)
    events = (
        await session.execute(
            select(_o.c.id, _o.c.seq, _o.c.type, _o.c.member_id, _o.c.payload)
            .where(_o.c.program_id == program_id, _o.c.seq > last)
            .order_by(_o.c.seq)
            .limit(limit)
        )
    ).all()
    if not events:
        return 0
    endpoints = (
        await session.execute(
            select(_e.c.id, _e.c.events).where(
                _e.c.program_id == program_id, _e.c.enabled.is_(True)
            )
        )
    ).all()
    written = {
        (code, channel)
        for code, channel in await session.execute(
            select(_t.c.code, _t.c.channel).where(_t.c.program_id == program_id).distinct()
        )
    }
    now = clock.now()
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.id <= skip_through:  # written before the upgrade that brought the worker
            continue
        member = event.member_id
        for endpoint in endpoints:
            if webhooks.subscribed(list(endpoint.events or []), event.type):
                key = f"w{endpoint.id}:{member}" if member else None
                rows.append(
                    _row(program_id, event, "webhook", now, endpoint_id=endpoint.id, order_key=key)
                )
        code = message_code(event.type, event.payload)
        if code is None or member is None:
            continue
        if code == SIGN_IN_LINK:
            channels = ["email"]
        else:
            channels = [
                ch
                for ch in render.CHANNELS
                if (code, ch) in written or (ch in built_in and code in defaults.BUILT_IN[ch])
            ]
        newsletter = (
            event.payload.get("newsletter_id") if event.type == newsletters.QUEUED else None
        )
        for ch in channels:
            rows.append(
                _row(
                    program_id,
                    event,
                    ch,
                    now,
                    template=code,
                    order_key=f"{ch}:{member}",
                    newsletter_id=newsletter if isinstance(newsletter, int) else None,
                )
            )
    if rows:
        await session.execute(insert(_d), rows)
    await session.execute(
        update(_c).where(_c.c.program_id == program_id).values(last_seq=events[-1].seq)
    )
    return len(events)


async def plan(db: Database, *, built_in: Collection[str] = ("email",)) -> int:
    """Plan every program with events after its cursor; the number of events read.

    An idle worker only reads: which programs lack a cursor, which have outbox rows not yet
    sequenced or after their cursor (both through the outbox's indexes)."""
    async with db.read() as session:
        missing = (
            await session.execute(
                select(_p.c.id).where(~exists().where(_c.c.program_id == _p.c.id)).limit(1)
            )
        ).first()
    if missing is not None:
        await db.write(ensure_cursors)
    unsequenced = exists().where(_o.c.program_id == _c.c.program_id, _o.c.seq.is_(None))
    ahead = exists().where(_o.c.program_id == _c.c.program_id, _o.c.seq > _c.c.last_seq)
    async with db.read() as session:
        ids = list(
            (
                await session.execute(
                    select(_c.c.program_id).where(or_(unsequenced, ahead)).order_by(_c.c.program_id)
                )
            ).scalars()
        )
    total = 0
    for program_id in ids:
        total += await db.write(
            functools.partial(_plan_one, program_id=program_id, built_in=built_in)
        )
    return total


async def _plan_one(session: AsyncSession, *, program_id: int, built_in: Collection[str]) -> int:
    return await plan_program(session, program_id, built_in=built_in)


def built_in_channels(channels: Channels) -> tuple[str, ...]:
    """The channels whose built-in texts are sent: email always (recorded as skipped when it
    is not configured), SMS and push when this worker can send them."""
    return ("email", *(ch for ch in ("sms", "push") if channels.get(ch) is not None))


# --- claim ------------------------------------------------------------------------------------


async def claim(session: AsyncSession, *, limit: int, lease_seconds: float) -> list[int]:
    """Claim due deliveries, the oldest pending one of each order key only."""
    now = clock.now()
    older = _d.alias("older")
    waiting = (
        exists()
        .where(
            older.c.order_key == _d.c.order_key,
            older.c.status == "pending",
            older.c.id < _d.c.id,
        )
        .correlate(_d)
    )
    q = (
        select(_d.c.id)
        .where(
            _d.c.status == "pending",
            _d.c.next_attempt_at <= now,
            or_(_d.c.locked_until.is_(None), _d.c.locked_until < now),
            ~waiting,
        )
        .order_by(_d.c.id)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        q = q.with_for_update(skip_locked=True, of=_d)
    ids = list((await session.execute(q)).scalars())
    if ids:
        await session.execute(
            update(_d)
            .where(_d.c.id.in_(ids))
            .values(locked_until=now + timedelta(seconds=lease_seconds))
        )
    return ids


# --- prepare and send -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one attempt came to. `status`: `sent`, `skipped`, `failed`, `retry` or `defer`
    (not tried: due again at `until`, e.g. the end of quiet hours)."""

    delivery: Any
    status: str
    reason: str | None = None
    attempted: bool = True
    status_code: int | None = None
    duration_ms: int = 0
    until: datetime | None = None


class _Context:
    """What a batch's preparation reads once: programs, endpoints, events."""

    def __init__(self, session: AsyncSession, settings: Settings, channels: Channels) -> None:
        self.session = session
        self.settings = settings
        self.channels = channels
        self.programs: dict[int, tuple[ProgramInfo, dict[str, Any]]] = {}
        self.endpoints: dict[int, Any] = {}
        self.events: dict[int, Any] = {}

    async def load(self, deliveries: Sequence[Any]) -> None:
        endpoint_ids = {d.endpoint_id for d in deliveries if d.endpoint_id is not None}
        if endpoint_ids:
            rows = await self.session.execute(select(_e).where(_e.c.id.in_(endpoint_ids)))
            self.endpoints = {r.id: r for r in rows}
        event_ids = {d.outbox_id for d in deliveries}
        rows = await self.session.execute(
            select(_o.c.id, _o.c.type, _o.c.payload, _o.c.created_at).where(_o.c.id.in_(event_ids))
        )
        self.events = {r.id: r for r in rows}

    async def program(self, program_id: int) -> tuple[ProgramInfo, dict[str, Any]]:
        if program_id not in self.programs:
            from habitue.programs import service as programs_service

            row = (
                await self.session.execute(
                    select(_p.c.code, _p.c.settings).where(_p.c.id == program_id)
                )
            ).one()
            info = await programs_service.get_info(self.session, row.code)
            self.programs[program_id] = (info, dict(row.settings or {}))
        return self.programs[program_id]


def _skip(delivery: Any, reason: str) -> Outcome:
    return Outcome(delivery, "skipped", reason, attempted=False)


def _fail(delivery: Any, reason: str) -> Outcome:
    return Outcome(delivery, "failed", reason, attempted=False)


async def _prepare_webhook(ctx: _Context, d: Any) -> Outgoing | Outcome:
    endpoint = ctx.endpoints.get(d.endpoint_id)
    if endpoint is None:
        return _skip(d, "endpoint-deleted")
    if not endpoint.enabled:
        return _skip(d, "endpoint-disabled")
    event = ctx.events.get(d.outbox_id)
    if event is None:
        return _fail(d, "the event is gone")
    body = orjson.dumps(
        {
            "type": event.type,
            "timestamp": clock.as_utc(event.created_at).isoformat(),
            "data": event.payload,
        }
    )
    headers = signing.headers(
        webhooks.signing_secrets(endpoint), f"evt_{d.outbox_id}", int(time.time()), body
    )
    return Outgoing(to=endpoint.url, text=body.decode(), headers=headers)


async def _sent_this_week(ctx: _Context, d: Any) -> int:
    since = clock.now() - timedelta(days=7)
    q = select(func.count()).where(
        _d.c.program_id == d.program_id,
        _d.c.member_id == d.member_id,
        _d.c.channel == d.channel,
        _d.c.status == "sent",
        _d.c.sent_at >= since,
        _d.c.template.not_in(sorted(defaults.UNCAPPED)),
    )
    return int((await ctx.session.execute(q)).scalar_one())


async def _templates_for(
    ctx: _Context, program: ProgramInfo, code: str, channel: str
) -> dict[str, tuple[str | None, str]]:
    rows = await ctx.session.execute(
        select(_t.c.locale, _t.c.subject, _t.c.body).where(
            _t.c.program_id == program.id, _t.c.code == code, _t.c.channel == channel
        )
    )
    stored: dict[str, tuple[str | None, str]] = {r.locale: (r.subject, r.body) for r in rows}
    if not stored:
        stored = defaults.built_in(code, channel)
    return stored


async def _prepare_message(ctx: _Context, d: Any) -> Outgoing | Outcome:
    settings = ctx.settings
    program, program_settings = await ctx.program(d.program_id)
    member = (
        await ctx.session.execute(
            select(_m.c.email, _m.c.phone, _m.c.consents, _m.c.locale, _m.c.status).where(
                _m.c.program_id == d.program_id, _m.c.public_id == d.member_id
            )
        )
    ).first()
    if member is None or member.status != "active":
        return _skip(d, "no-member")
    channel = d.channel
    code = d.template
    if code != SIGN_IN_LINK and not triggers.consent_given(member.consents or {}, channel):
        return _skip(d, "no-consent")
    if (channel == "email" and not member.email) or (channel == "sms" and not member.phone):
        return _skip(d, "no-address")
    if ctx.channels.get(channel) is None:
        return _skip(d, "channel-not-configured")
    if channel in ("sms", "push"):
        window = quiet_window(program_settings, settings)
        until = timed.quiet_until(clock.now(), program.timezone, window)
        if until is not None:
            return Outcome(d, "defer", "quiet-hours", attempted=False, until=until)
    if code not in defaults.UNCAPPED:
        cap = program_settings.get("message_weekly_cap", settings.message_weekly_cap)
        if isinstance(cap, int) and cap > 0 and await _sent_this_week(ctx, d) >= cap:
            return _skip(d, "frequency-cap")
    if code == SIGN_IN_LINK:
        from habitue.web import service as web_service

        event = ctx.events.get(d.outbox_id)
        payload = event.payload if event is not None and isinstance(event.payload, dict) else {}
        link_id = payload.get("link_id")
        link = None
        if isinstance(link_id, int):
            link = await web_service.sign_in_link_url(
                ctx.session, program, link_id, settings=settings
            )
        if link is None:
            return _skip(d, "link-used-or-expired")
        mail_subject, body_text, body_html = defaults.sign_in_email(
            member.locale, program.name, link, settings.signin_link_minutes
        )
        return Outgoing(to=member.email, subject=mail_subject, text=body_text, html=body_html)
    stored = await _templates_for(ctx, program, code, channel)
    locale = render.pick_locale(stored, member.locale)
    if locale is None:
        return _fail(d, f"no {channel} template {code!r}")
    from habitue.messaging import templates as templates_service

    try:
        raw, _ = await templates_service.member_values(ctx.session, program, d.member_id)
        values = render.format_values(raw, locale, program.timezone)
        subject, template_body = stored[locale]
        out = render.render(channel, subject, template_body, values)
    except InvalidTemplate as exc:
        return _fail(d, f"template: {exc.detail}")
    if channel == "email":
        link = unsubscribe.url(settings, program.code, d.member_id)
        label = defaults.UNSUBSCRIBE.get(locale, defaults.UNSUBSCRIBE["en"])
        html_part = f'{out.body}\n<p><a href="{link}">{label}</a></p>'
        text_part = defaults.html_to_text(out.body) + f"\n{label}: {link}\n"
        return Outgoing(
            to=member.email,
            subject=out.subject,
            text=text_part,
            html=html_part,
            headers={
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
    if channel == "sms":
        return Outgoing(to=member.phone, text=out.body)
    return Outgoing(
        to=d.member_id,
        subject=out.subject or program.name,
        text=out.body,
        data={"template": code, "event_type": d.event_type},
    )


async def _send(ctx: _Context, d: Any, prepared: Outgoing | Outcome) -> Outcome:
    if isinstance(prepared, Outcome):
        return prepared
    channel = ctx.channels.get(d.channel)
    if channel is None:
        return _skip(d, "channel-not-configured")
    started = time.monotonic()
    try:
        code = await channel.send(prepared)
    except DeliveryError as exc:
        ms = int((time.monotonic() - started) * 1000)
        status = "retry" if exc.retry else "failed"
        return Outcome(d, status, exc.reason, status_code=exc.status_code, duration_ms=ms)
    except Exception as exc:  # a channel's bug must not stop the worker: retried later
        log.exception("delivery failed unexpectedly", channel=d.channel, delivery=d.public_id)
        return Outcome(d, "retry", f"unexpected error: {type(exc).__name__}")
    ms = int((time.monotonic() - started) * 1000)
    return Outcome(d, "sent", None, status_code=code, duration_ms=ms)


async def deliver(db: Database, settings: Settings, channels: Channels, ids: list[int]) -> None:
    """Prepare, send and record the claimed deliveries."""
    async with db.read() as session:
        deliveries = (
            await session.execute(select(_d).where(_d.c.id.in_(ids)).order_by(_d.c.id))
        ).all()
        ctx = _Context(session, settings, channels)
        await ctx.load(deliveries)
        prepared: list[Outgoing | Outcome] = []
        for d in deliveries:
            try:
                if d.channel == "webhook":
                    prepared.append(await _prepare_webhook(ctx, d))
                else:
                    prepared.append(await _prepare_message(ctx, d))
            except Exception as exc:  # retried later; the others go
                log.exception("preparing a delivery failed", delivery=d.public_id)
                prepared.append(Outcome(d, "retry", f"unexpected error: {type(exc).__name__}"))
    outcomes = await asyncio.gather(
        *(_send(ctx, d, p) for d, p in zip(deliveries, prepared, strict=True))
    )
    await db.write(lambda s: record(s, settings, outcomes))


def quiet_window(
    program_settings: dict[str, Any], settings: Settings
) -> tuple[dt_time, dt_time] | None:
    """The quiet hours in force: the program's `quiet_hours` setting, else
    `HABITUE_QUIET_HOURS`; None: none (a bad stored value counts as none)."""
    value = program_settings.get("quiet_hours", settings.quiet_hours)
    if not isinstance(value, str) or not value:
        return None
    try:
        return timed.parse_quiet_hours(value)
    except ValueError:
        return None


def backoff_seconds(attempts: int, base: float) -> float:
    """The delay after the `attempts`-th failed try: doubling, capped at an hour, with jitter
    (between half and all of it)."""
    delay = min(base * float(2 ** max(0, attempts - 1)), MAX_DELAY_SECONDS)
    jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 (spreads retries, no secret)
    return delay * jitter


async def record(session: AsyncSession, settings: Settings, outcomes: Sequence[Outcome]) -> None:
    """Write each attempt and each delivery's new state."""
    now = clock.now()
    period = timedelta(hours=settings.retry_period_hours)
    attempts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for o in outcomes:
        d = o.delivery
        n = d.attempts + (1 if o.attempted else 0)
        status, reason, next_at, sent_at = o.status, o.reason, d.next_attempt_at, None
        if o.attempted:
            attempts.append(
                {
                    "delivery_id": d.id,
                    "at": now,
                    "ok": o.status == "sent",
                    "status_code": o.status_code,
                    "error": None if o.status == "sent" else (o.reason or "")[:500],
                    "duration_ms": o.duration_ms,
                }
            )
        if status == "sent":
            sent_at = now
        elif status == "defer":
            status, next_at = "pending", o.until or now
        elif status == "retry":
            next_at = now + timedelta(seconds=backoff_seconds(n, settings.retry_base_seconds))
            if next_at - clock.as_utc(d.retry_from) > period:
                status = "failed"
                reason = f"gave up after {n} attempts: {o.reason}"[:500]
            else:
                status = "pending"
        changes.append(
            {
                "b_id": d.id,
                "b_status": status,
                "b_reason": reason,
                "b_attempts": n,
                "b_next": next_at,
                "b_sent": sent_at,
            }
        )
    if attempts:
        await session.execute(insert(_a), attempts)
    if changes:
        await session.execute(
            update(_d)
            .where(_d.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                reason=bindparam("b_reason"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"),
                sent_at=bindparam("b_sent"),
                locked_until=None,
            ),
            changes,
            execution_options={"synchronize_session": False},
        )


# --- the loop ---------------------------------------------------------------------------------


async def step(db: Database, settings: Settings, channels: Channels) -> int:
    """Plan, then claim and deliver one batch; how much was done (0: nothing due)."""
    planned, delivered = await _step(db, settings, channels)
    return planned + delivered


async def _step(db: Database, settings: Settings, channels: Channels) -> tuple[int, int]:
    """One step: (outbox events planned, deliveries claimed and delivered)."""
    planned = await plan(db, built_in=built_in_channels(channels))
    ids = await db.write(
        lambda s: claim(s, limit=settings.worker_batch, lease_seconds=settings.worker_lease_seconds)
    )
    if ids:
        await deliver(db, settings, channels, ids)
    return planned, len(ids)


async def run_until_idle(
    db: Database, settings: Settings, channels: Channels | None = None
) -> None:
    """Work until nothing is due now (deliveries waiting for a retry stay pending)."""
    own = channels is None
    channels = channels or Channels.from_settings(settings)
    try:
        while await step(db, settings, channels):
            pass
    finally:
        if own:
            await channels.close()


async def run(db: Database, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The worker's loop, until `stop` is set (or the task is cancelled)."""
    stop = stop or asyncio.Event()
    channels = Channels.from_settings(settings)
    log.info("delivery worker started")
    failures = 0
    # The timed scan runs beside the delivery loop: a long scan (many programs) never holds
    # back the deliveries of events already in the outbox.
    scanner = asyncio.create_task(_scan_loop(db, settings, stop))
    try:
        while not stop.is_set():
            try:
                planned, delivered = await _step(db, settings, channels)
                failures = 0
                # Straight on only while a backlog is left (a full plan or a full batch);
                # otherwise the worker waits, so that under a steady stream of events each step
                # takes what came in the meantime in one go instead of a few rows at a time
                # (the cost of a step is mostly fixed). The wait bounds the delivery lag.
                backlog = planned >= PLAN_LIMIT or delivered >= settings.worker_batch
            except Exception:  # the database is away, a bug: try again, less and less often
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.exception("delivery worker step failed", failures=failures)
                backlog = False
            if not backlog:
                pause = min(30.0, settings.worker_idle_seconds * 2 ** min(failures, 10))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=pause)
                except TimeoutError:
                    pass
    finally:
        scanner.cancel()
        await asyncio.gather(scanner, return_exceptions=True)
        await channels.close()


async def _scan_loop(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    """`timed.scan` every `timed_scan_seconds`, until `stop` is set."""
    while not stop.is_set():
        try:
            await timed.scan(db, settings)
        except Exception:  # the database is away, a bug: the next scan tries again
            log.exception("timed messages scan failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.timed_scan_seconds)
        except TimeoutError:
            pass


# --- retry on demand --------------------------------------------------------------------------


def retry_values() -> dict[str, Any]:
    """A parked (or pending) delivery made due now, with a fresh retry period."""
    now = clock.now()
    return {
        "status": "pending",
        "reason": None,
        "next_attempt_at": now,
        "retry_from": now,
        "locked_until": None,
    }
