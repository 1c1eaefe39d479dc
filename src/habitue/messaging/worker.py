"""The delivery worker: reads the outbox in commit order and sends what each event calls for.

One step of the worker:

1. **Plan** (`planning`): the committed outbox events after each program's cursor become
   `deliveries` rows, in the transaction that moves the cursor.
2. **Claim** (`claims.claim`): due deliveries, the oldest pending one of each order key (one
   member on one channel or endpoint), leased to this worker (`FOR UPDATE SKIP LOCKED` on
   PostgreSQL: several workers share the work and never claim one delivery together).
3. **Send** the claimed deliveries concurrently (at most one per member and channel), then
   **record** (`claims.record`) each attempt and the outcome: `sent`, `skipped` (with the
   reason), retried later (exponential back-off with jitter) or, after the retry period,
   `failed` (parked). A worker killed while sending leaves its deliveries claimed until the
   lease ends; another worker (or the same, restarted) then sends them again: at least once.

SQLite runs one worker (its writes go through one writer anyway).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import time as dt_time
from datetime import timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import Database, table_of
from habitue.members.models import Member
from habitue.messaging import (
    defaults,
    outbox,
    render,
    signing,
    timed,
    triggers,
    unsubscribe,
    webhooks,
)
from habitue.messaging.channels import Channels, DeliveryError, Outgoing
from habitue.messaging.claims import Outcome, claim, record, refresh_statistics, retry_values
from habitue.messaging.errors import InvalidTemplate
from habitue.messaging.models import Delivery, MessageTemplate, OutboxEvent, WebhookEndpoint
from habitue.messaging.planning import PLAN_LIMIT, SIGN_IN_LINK, built_in_channels, plan
from habitue.programs.models import Program
from habitue.programs.service import ProgramInfo
from habitue.settings import Settings

__all__ = ["retry_values", "run", "run_until_idle", "step"]

log = structlog.get_logger()

SEND_CONCURRENCY = 64
"""Sends in flight at once per worker (as many as the webhook pool's connections per host)."""

ANALYZE_EVERY_SECONDS = 60.0
"""While a backlog lasts, the worker refreshes the deliveries' statistics at most this often
(autovacuum's default nap: a burst of deliveries is planned for before it looks)."""

VACUUM_EVERY_SECONDS = 10.0
"""While a backlog lasts, the worker vacuums the outbox at most this often (`outbox.vacuum`):
numbering's steps then walk at most ten seconds' worth of dead index entries."""

_d = table_of(Delivery)
_o = table_of(OutboxEvent)
_e = table_of(WebhookEndpoint)
_t = table_of(MessageTemplate)
_p = table_of(Program)
_m = table_of(Member)

# --- prepare and send -------------------------------------------------------------------------


class _Context:
    """What a batch's preparation reads once: programs, endpoints, events, members."""

    def __init__(self, session: AsyncSession, settings: Settings, channels: Channels) -> None:
        self.session = session
        self.settings = settings
        self.channels = channels
        self.programs: dict[int, tuple[ProgramInfo, dict[str, Any]]] = {}
        self.endpoints: dict[int, Any] = {}
        self.events: dict[int, Any] = {}
        self.members: dict[tuple[int, str], Any] = {}

    async def load(self, deliveries: Sequence[Any]) -> None:
        # The messages' members in one query: read one by one, they were most of the worker's
        # time once an import had enrolled 100,000 members (one welcome each; docs/benchmarks.md)
        member_ids = {
            d.member_id for d in deliveries if d.channel != "webhook" and d.member_id is not None
        }
        if member_ids:
            rows = await self.session.execute(
                select(
                    _m.c.program_id, _m.c.public_id, _m.c.email, _m.c.phone, _m.c.consents,
                    _m.c.locale, _m.c.status,
                ).where(_m.c.public_id.in_(sorted(member_ids)))
            )  # fmt: skip
            self.members = {(r.program_id, r.public_id): r for r in rows}
        endpoint_ids = {d.endpoint_id for d in deliveries if d.endpoint_id is not None}
        if endpoint_ids:
            rows = await self.session.execute(select(_e).where(_e.c.id.in_(endpoint_ids)))
            self.endpoints = {r.id: r for r in rows}
        event_ids = {d.outbox_id for d in deliveries}
        rows = await self.session.execute(
            # the payload as its stored JSON text: a webhook's body takes it as it is
            select(
                _o.c.id, _o.c.type, cast(_o.c.payload, Text).label("raw"), _o.c.created_at
            ).where(_o.c.id.in_(event_ids))
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
    # {"type", "timestamp", "data"}, the data spliced in as stored (not decoded and re-encoded)
    body = b"".join(
        (
            b'{"type":',
            orjson.dumps(event.type),
            b',"timestamp":',
            orjson.dumps(clock.as_utc(event.created_at).isoformat()),
            b',"data":',
            (event.raw or "null").encode(),
            b"}",
        )
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
    member = ctx.members.get((d.program_id, d.member_id))
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
        found = orjson.loads(event.raw) if event is not None else None
        payload = found if isinstance(found, dict) else {}
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


async def deliver(
    db: Database, settings: Settings, channels: Channels, deliveries: Sequence[Any]
) -> None:
    """Prepare, send and record the claimed deliveries (their rows, as `claim` returns them)."""
    async with db.read() as session:
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
    outcomes = await _send_all(ctx, list(zip(deliveries, prepared, strict=True)))
    await db.write(lambda s: record(s, settings, outcomes))


async def _send_all(ctx: _Context, work: list[tuple[Any, Outgoing | Outcome]]) -> list[Outcome]:
    """Send a batch, `SEND_CONCURRENCY` at a time; the outcomes in the batch's order.

    A few senders taking the next item, rather than a task per delivery all queued on the
    channel's per-host limit: the same parallelism (the webhook pool's limit per receiver),
    without hundreds of tasks waking one another (a tenth of the worker's CPU in bench/outbox).
    The batch holds at most one delivery per member and channel, so any order is in order."""
    outcomes: list[Outcome | None] = [None] * len(work)
    items = iter(enumerate(work))

    async def sender() -> None:
        for i, (d, p) in items:
            outcomes[i] = await _send(ctx, d, p)

    await asyncio.gather(*(sender() for _ in range(min(SEND_CONCURRENCY, len(work)))))
    return [o for o in outcomes if o is not None]


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


# --- the loop ---------------------------------------------------------------------------------


async def step(db: Database, settings: Settings, channels: Channels) -> int:
    """Plan, then claim and deliver one batch; how much was done (0: nothing due)."""
    planned, delivered = await _step(db, settings, channels)
    return planned + delivered


async def _step(db: Database, settings: Settings, channels: Channels) -> tuple[int, int]:
    """One step: (outbox events planned, deliveries claimed and delivered)."""
    planned = await plan(db, built_in=built_in_channels(channels))
    claimed = await db.write(
        lambda s: claim(s, limit=settings.worker_batch, lease_seconds=settings.worker_lease_seconds)
    )
    if claimed:
        await deliver(db, settings, channels, claimed)
    return planned, len(claimed)


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
    analysed = -ANALYZE_EVERY_SECONDS
    vacuumed = time.monotonic()
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
                if backlog and time.monotonic() - analysed >= ANALYZE_EVERY_SECONDS:
                    analysed = time.monotonic()
                    await db.write(refresh_statistics)
                if backlog and time.monotonic() - vacuumed >= VACUUM_EVERY_SECONDS:
                    vacuumed = time.monotonic()
                    await outbox.vacuum(db)
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
