"""`habitue`: serve, migrate, keys, import, expire, ledger verify, demo."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from habitue.settings import get_settings

# Tracebacks without local variables: they would print the settings' secrets.
app = typer.Typer(
    help="Habitué loyalty engine.", no_args_is_help=True, pretty_exceptions_show_locals=False
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports.", no_args_is_help=True)
ledger_app = typer.Typer(help="The points ledger.", no_args_is_help=True)
programs_app = typer.Typer(help="Programs.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(import_app, name="import")
app.add_typer(ledger_app, name="ledger")
app.add_typer(programs_app, name="programs")

console = Console()
err = Console(stderr=True)


@app.callback()
def _configuration() -> None:
    """Refuse to run on a refused configuration (weak production secrets…), saying why."""
    from habitue.settings import SettingsError

    try:
        get_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/]", markup=True, highlight=False)
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Apply the database migrations to HABITUE_DATABASE_URL."""
    from habitue.migrate import upgrade

    url = get_settings().database_url
    upgrade(url)
    console.print(f"[green]migrated[/] {url}")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="worker processes (PostgreSQL)")] = 1,
) -> None:
    """Serve the API (and pages); on SQLite the schema is migrated first."""
    import uvicorn

    from habitue.db import is_sqlite
    from habitue.migrate import upgrade

    settings = get_settings()
    if is_sqlite(settings.database_url):
        upgrade(settings.database_url)
        workers = 1  # one writer: group commit in one process is the fast path
    uvicorn.run(
        "habitue.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        loop=os.environ.get("HABITUE_UVICORN_LOOP", "auto"),
    )


@app.command()
def worker() -> None:
    """Deliver messages and webhooks from the outbox until stopped (Ctrl-C, SIGTERM).

    Run several on PostgreSQL to share the work; one on SQLite.
    """
    import gc
    import signal

    from habitue.db import Database
    from habitue.messaging import worker as delivery_worker

    settings = get_settings()
    # What the imports made lives as long as the process: out of the collector's way, so that
    # its full collections look at the worker's own objects only (a quarter of the worker's
    # CPU went to them in bench/outbox; docs/benchmarks.md).
    gc.collect()
    gc.freeze()

    async def run() -> None:
        db = Database(settings.database_url, group_commit=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await delivery_worker.run(db, settings, stop)
        finally:
            await db.dispose()

    asyncio.run(run())


@programs_app.command("create")
def programs_create(
    code: str,
    name: str,
    currency: str = "EUR",
    timezone: str = "UTC",
    earn_rate: str = "1",
) -> None:
    """Create a program."""
    from habitue.db import Database
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ProgramCreate

    data = ProgramCreate(
        code=code, name=name, currency=currency, timezone=timezone, earn_rate=earn_rate
    )

    async def run() -> None:
        db = Database(get_settings().database_url)
        try:
            await db.write(lambda s: programs_service.create_program(s, data))
        finally:
            await db.dispose()

    asyncio.run(run())
    console.print(f"[green]created program[/] {code}")


@keys_app.command("create")
def keys_create(
    program: Annotated[str, typer.Option(help="program code")],
    scopes: Annotated[str, typer.Option(help="comma-separated scopes")] = "admin",
    name: Annotated[str, typer.Option(help="a name for the key")] = "cli",
    partner: Annotated[
        str | None, typer.Option(help="a partner's code: the key acts as its tills only")
    ] = None,
) -> None:
    """Create a scoped API key; the secret is printed once."""
    from pydantic import ValidationError

    from habitue.db import Database
    from habitue.errors import HabitueError
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ApiKeyCreate

    try:
        data = ApiKeyCreate(
            name=name,
            partner=partner,
            scopes=[s.strip() for s in scopes.split(",") if s.strip()],
        )
    except ValidationError as exc:
        err.print(f"[red]invalid key:[/] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc

    async def run() -> str:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                info = await programs_service.get_info(session, program)
            made = await db.write(lambda s: programs_service.create_api_key(s, info, data))
            return made.key or ""
        finally:
            await db.dispose()

    try:
        console.print(asyncio.run(run()))
    except HabitueError as exc:
        err.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(1) from exc


@keys_app.command("list")
def keys_list(program: Annotated[str, typer.Option(help="program code")]) -> None:
    """A program's keys: scopes, partner, creation, last use, revocation (never the secret)."""
    from datetime import datetime

    from habitue.db import Database
    from habitue.errors import HabitueError
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ApiKeyRead

    async def run() -> list[ApiKeyRead]:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                info = await programs_service.get_info(session, program)
                return await programs_service.list_api_keys(session, info)
        finally:
            await db.dispose()

    try:
        keys = asyncio.run(run())
    except HabitueError as exc:
        err.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(1) from exc

    def when(t: datetime | None) -> str:
        return t.isoformat(timespec="seconds") if t is not None else "-"

    # One tab-separated line per key (scripts read it); never the secret.
    typer.echo("id\tname\tprefix\tscopes\tpartner\tcreated_at\tlast_used_at\trevoked_at")
    for k in keys:
        fields = (str(k.id), k.name, k.prefix, ",".join(k.scopes), k.partner or "-")
        typer.echo(
            "\t".join((*fields, when(k.created_at), when(k.last_used_at), when(k.revoked_at)))
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="the key's id", min=1)]) -> None:
    """Revoke a key: servers refuse it within 5 seconds (their key cache's lifetime)."""
    from habitue.db import Database
    from habitue.errors import HabitueError
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ApiKeyRead

    async def run() -> ApiKeyRead:
        db = Database(get_settings().database_url)
        try:
            return await db.write(lambda s: programs_service.revoke_api_key(s, None, key_id))
        finally:
            await db.dispose()

    try:
        made = asyncio.run(run())
    except HabitueError as exc:
        err.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(1) from exc
    programs_service.forget_key(key_id)
    console.print(f"[green]revoked[/] key {made.id} ({made.name})")


def _run_import(
    engine: Any, program: str, file: Path, enrol_missing: bool, source: str, chunk: int
) -> Any:
    """`import_purchases` under a progress bar."""
    from habitue.events.importer import import_purchases as run_import

    with Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("import", total=None)
        return run_import(
            engine,
            program,
            file,
            enrol_missing=enrol_missing,
            source=source,
            chunk=chunk,
            progress=lambda n: bar.advance(task, n),
        )


@import_app.command("purchases")
def import_purchases(
    file: Path,
    program: Annotated[str, typer.Option(help="program code")],
    enrol_missing: Annotated[bool, typer.Option(help="enrol unknown members")] = False,
    rejects: Annotated[Path | None, typer.Option(help="where rejected rows go")] = None,
    source: str = "default",
    chunk: Annotated[
        int | None,
        typer.Option(min=1, help="purchases per transaction [default: 100,000; memory grows]"),
    ] = None,
) -> None:
    """Import purchases from CSV; re-running credits nothing twice.

    Exit status: 0 all imported, 1 some rows rejected (see the rejects file), 2 the import
    could not run or stopped (what was committed stays; run it again)."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from habitue.db import make_sync_engine
    from habitue.events.importer import CHUNK, ImportConflict, ImportFailed, write_rejects

    engine = make_sync_engine(get_settings().database_url)
    try:
        report = _run_import(engine, program, file, enrol_missing, source, chunk or CHUNK)
    except (ImportFailed, ImportConflict, SQLAlchemyError) as exc:
        err.print(f"[red]import stopped:[/] {escape(str(exc).splitlines()[0])}")
        err.print("What was committed before stays; run the import again to write the rest.")
        raise typer.Exit(2) from None
    except (LookupError, ValueError, OSError) as exc:
        err.print(f"[red]import failed:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    rejects_path = rejects or file.with_suffix(".rejects.csv")
    if report.rejected:
        write_rejects(report, rejects_path)
    table = Table(show_header=False)
    for k, v in (
        ("rows", report.rows),
        ("purchases imported", report.imported),
        ("of which by the API path (benefits, coupons, tier credits, caps)", report.delivered),
        ("already imported", report.already),
        ("members enrolled", report.enrolled),
        ("points credited", report.points),
        ("purchases rejected", report.rejected),
    ):
        table.add_row(k, f"{v:,}")
    console.print(table)
    if report.rejected:
        err.print(f"[red]{report.rejected} purchases rejected[/], see {rejects_path}")
        raise typer.Exit(1)


@app.command()
def consume(
    program: Annotated[str, typer.Option(help="the program's code")],
    stream: Annotated[str, typer.Option(help="the JetStream stream")] = "HABITUE_EVENTS",
    subject: Annotated[
        str | None, typer.Option(help="subject to read (default habitue.events.<program>)")
    ] = None,
    durable: Annotated[
        str | None, typer.Option(help="durable consumer name (default habitue-<program>)")
    ] = None,
    batch: Annotated[int, typer.Option(help="messages per batch", min=1, max=1000)] = 1000,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="stop once nothing waits and nothing is unacked")
    ] = False,
    max_messages: Annotated[
        int | None, typer.Option(help="stop after this many messages", min=1)
    ] = None,
    ack_wait: Annotated[
        float, typer.Option(help="seconds before an unacknowledged message is redelivered")
    ] = 30.0,
    list_parked: Annotated[
        bool, typer.Option("--parked", help="list the parked messages instead, latest first")
    ] = False,
) -> None:
    """Record event bodies from NATS JetStream (HABITUE_NATS_URL) with a durable consumer."""
    from habitue import rooms
    from habitue.db import Database
    from habitue.events import consume as intake
    from habitue.programs import service as programs_service

    settings = get_settings()

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            async with db.read() as session:
                info = await programs_service.get_info(session, program)
                if list_parked:
                    rows = await intake.parked(session, info, limit=1000)
            if list_parked:
                # One message a line, tab-separated (bodies are raw: no markup, no wrapping).
                typer.echo("parked_at\tstream\tseq\tstatus\treason\tbody")
                for row in rows:
                    fields = (
                        row["parked_at"].isoformat(timespec="seconds"),
                        row["stream"],
                        str(row["stream_seq"]),
                        str(row["status"]),
                        row["reason"],
                        row["body"],
                    )
                    typer.echo("\t".join(" ".join(f.split()) for f in fields))
                return

            # As `habitue serve` in production: what start-up allocated stays out of the
            # collector's way, and a larger first generation makes collections rarer.
            import gc

            gc.freeze()
            gc.set_threshold(50_000, 20, 20)

            def progress(stats: intake.Stats) -> None:
                if not until_idle and max_messages is None:
                    err.print(f"recorded {stats.recorded}, parked {stats.parked}")

            stats = await intake.consume(
                db,
                rooms.build_pipeline(),
                info,
                url=settings.nats_url,
                stream=stream,
                subject=subject,
                durable=durable,
                batch=batch,
                until_idle=until_idle,
                max_messages=max_messages,
                ack_wait=ack_wait,
                on_batch=progress,
            )
            console.print(
                f"recorded {stats.recorded}, parked {stats.parked}, "
                f"redelivered {stats.redelivered}, batches {stats.batches}"
            )
        finally:
            await db.dispose()

    _run_refusing(run)


@app.command()
def expire(program: Annotated[str | None, typer.Option(help="one program")] = None) -> None:
    """Release due pending points and expire due lots; safe to run twice."""
    from habitue import jobs
    from habitue.db import Database
    from habitue.programs import service as programs_service

    async def run() -> None:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                codes = [program] if program else await programs_service.list_programs(session)
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,} members"),
                console=err,
            ) as bar:
                for code in codes:
                    released = await jobs.run_release(db, code)
                    task = bar.add_task(f"expiring {code}", total=None)

                    def advance(n: int, t: TaskID = task) -> None:
                        bar.advance(t, n)

                    members, points = await jobs.run_expiry(db, code, progress=advance)
                    console.print(
                        f"{code}: released {released:,} pending points; expired "
                        f"{points:,} points of {members:,} members"
                    )
        finally:
            await db.dispose()

    asyncio.run(run())


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant; exits non-zero on a breach."""
    from habitue.db import Database
    from habitue.ledger.verify import verify

    async def run() -> dict[str, list[tuple[object, ...]]]:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                return await verify(session)
        finally:
            await db.dispose()

    breaches = asyncio.run(run())
    bad = False
    for name, rows in breaches.items():
        if rows:
            bad = True
            console.print(f"[red]BREACH[/] {name}: {rows}")
        else:
            console.print(f"[green]ok[/] {name}")
    if bad:
        raise typer.Exit(1)


@app.command()
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
    members: int = 2000,
    purchases: int = 50000,
    seed: int = 7,
    port: int = 8000,
) -> None:
    """Load the demo café chain (reproducible from the seed) and serve it."""
    import os

    from habitue import demo as demo_data

    settings = get_settings()
    admin_key = settings.admin_key or "demo-admin-key"
    os.environ["HABITUE_ADMIN_KEY"] = admin_key
    os.environ.setdefault("HABITUE_PUBLIC_URL", f"http://127.0.0.1:{port}")  # emailed links
    get_settings.cache_clear()
    info = demo_data.load(settings.database_url, members=members, purchases=purchases, seed=seed)
    console.print(f"[bold]demo program[/] {info['program']}: {info['summary']}")
    if info["rooms"] is not None:
        for line in info["rooms"].lines():
            console.print(f"  {line}")
    console.print(f"[bold]admin key[/] (HABITUE_ADMIN_KEY): {admin_key}")
    console.print(f"[bold]till key[/] (events:write, members:read): {info['till_key']}")
    console.print(f"[bold]sample member[/]: {info['sample_member']}")
    console.print(f"[bold]admin console[/]: {info['admin_user']}")
    if serve_after:
        console.print(f"serving on http://127.0.0.1:{port} (docs at /docs)")
        serve(host="127.0.0.1", port=port, workers=1)


# --- rewards room ---------------------------------------------------------------------------
coupons_app = typer.Typer(help="Coupons (rewards room).", no_args_is_help=True)
app.add_typer(coupons_app, name="coupons")


@coupons_app.command("generate")
def coupons_generate(
    program: Annotated[str, typer.Option(help="program code")],
    reward: Annotated[str, typer.Option(help="the reward the codes give")],
    count: Annotated[int, typer.Option(help="how many codes", min=1, max=1_000_000)],
    out: Annotated[Path, typer.Option(help="CSV file to write (code,expires_at)")],
    campaign: Annotated[str, typer.Option(help="campaign name")] = "campaign",
) -> None:
    """Generate a campaign's coupon codes in bulk and export them as CSV."""
    import time
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession

    from habitue.db import Database
    from habitue.programs import service as programs_service
    from habitue.rewards import coupons
    from habitue.rewards.schemas import MAX_COUPONS_PER_BATCH, CouponBatchCreate

    sizes = [MAX_COUPONS_PER_BATCH] * (count // MAX_COUPONS_PER_BATCH)
    if count % MAX_COUPONS_PER_BATCH:
        sizes.append(count % MAX_COUPONS_PER_BATCH)
    batches = [CouponBatchCreate(reward=reward, count=n, campaign=campaign) for n in sizes]

    async def run() -> int:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                info = await programs_service.get_info(session, program)

            async def work(session: AsyncSession) -> list[tuple[str, datetime | None]]:
                # One transaction for every batch: all the codes or none.
                made: list[tuple[str, datetime | None]] = []
                for data in batches:
                    made += await coupons.generate(session, info, data)
                return made

            made = await db.write(work)
        finally:
            await db.dispose()
        with out.open("w", newline="") as fh:
            coupons.write_csv(fh, made)
        return len(made)

    started = time.perf_counter()
    n = asyncio.run(run())
    took = time.perf_counter() - started
    console.print(f"[green]{n:,} codes[/] written to {out} in {took:.1f} s")


# --- web: console users (issue 7) ------------------------------------------------------------

admin_app = typer.Typer(help="Admin console users.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("create-user")
def admin_create_user(
    email: Annotated[str, typer.Option(help="the user's email, used to sign in")],
    role: Annotated[str, typer.Option(help="owner, marketer, support or analyst")],
    password: Annotated[
        str, typer.Option(help="at least 10 characters", prompt=True, hide_input=True)
    ],
    program: Annotated[str | None, typer.Option(help="limit the user to one program")] = None,
) -> None:
    """Create a user of the admin console (/admin) with a role."""
    from habitue.db import Database
    from habitue.errors import HabitueError
    from habitue.migrate import upgrade
    from habitue.programs import service as programs_service
    from habitue.web import service as web_service

    url = get_settings().database_url

    async def run() -> None:
        db = Database(url)
        try:
            program_id = None
            if program is not None:
                async with db.read() as session:
                    program_id = (await programs_service.get_info(session, program)).id
            await db.write(
                lambda s: web_service.create_staff(
                    s, email=email, role=role, password=password, program_id=program_id
                )
            )
        finally:
            await db.dispose()

    upgrade(url)
    try:
        asyncio.run(run())
    except HabitueError as exc:
        err.print(f"[red]refused[/] {exc.detail}")
        raise typer.Exit(1) from exc
    console.print(f"[green]created[/] {role} {email.strip().lower()}")


# --- tiers and clubs rooms (issue 4) -------------------------------------------------------
from collections.abc import Callable, Coroutine  # noqa: E402

tiers_app = typer.Typer(help="Club statuses (tiers).", no_args_is_help=True)
app.add_typer(tiers_app, name="tiers")
clubs_app = typer.Typer(help="The paid VIP club.", no_args_is_help=True)
app.add_typer(clubs_app, name="clubs")


def _run_refusing(run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a command's coroutine; a refusal (unknown program…) exits 1 with its reason."""
    from habitue.errors import HabitueError

    try:
        asyncio.run(run())
    except HabitueError as exc:
        err.print(f"[red]refused[/] {exc.detail}")
        raise typer.Exit(1) from exc


def _each_program(
    program: str | None, step: Callable[[Any, str, bool], Coroutine[Any, Any, str | None]]
) -> None:
    """Run `step(db, code, chosen)` for one program or for every program, printing its line."""
    from habitue.db import Database
    from habitue.programs import service as programs_service

    async def run() -> None:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                codes = [program] if program else await programs_service.list_programs(session)
            for code in codes:
                line = await step(db, code, program is not None)
                if line is not None:
                    console.print(f"{code}: {line}")
        finally:
            await db.dispose()

    _run_refusing(run)


@tiers_app.command("evaluate")
def tiers_evaluate(
    program: Annotated[str | None, typer.Option(help="a program's code (default: all)")] = None,
) -> None:
    """Close due qualification periods and apply downgrades (idempotent)."""
    from habitue.tiers.jobs import run_evaluation

    async def step(db: Any, code: str, _chosen: bool) -> str:
        done = await run_evaluation(db, code)
        return (
            f"closed {done.closed:,} periods; {done.downgraded:,} downgrades; "
            f"{done.graced:,} put in grace; {done.grace_ended:,} grace periods ended"
        )

    _each_program(program, step)


@tiers_app.command("rebuild")
def tiers_rebuild(
    program: Annotated[str | None, typer.Option(help="a program's code (default: all)")] = None,
) -> None:
    """Recompute this period's qualification counters from the events and upgrade (idempotent)."""
    from habitue.programs import service as programs_service
    from habitue.tiers import service as tiers_service
    from habitue.tiers.jobs import run_rebuild

    async def step(db: Any, code: str, chosen: bool) -> str | None:
        if not chosen:  # over every program: only those with a ladder
            async with db.read() as session:
                info = await programs_service.get_info(session, code)
                if await tiers_service.load_ladder(session, info.id) is None:
                    return None
        done = await run_rebuild(db, code)
        return (
            f"{done.members:,} members counted this period; "
            f"{done.upgraded:,} upgrades; {done.left_grace:,} left grace"
        )

    _each_program(program, step)


@clubs_app.command("renew")
def clubs_renew(
    program: Annotated[str | None, typer.Option(help="a program's code (default: all)")] = None,
) -> None:
    """Charge due renewals, retry failed ones, end lapsed subscriptions, grant vouchers."""
    from habitue.clubs.jobs import run_renewals

    async def step(db: Any, code: str, _chosen: bool) -> str:
        r = await run_renewals(db, code)
        return (
            f"renewed {r.renewed}, failed {r.failed}, expired {r.expired}, "
            f"ended {r.ended}, vouchers {r.vouchers}"
        )

    _each_program(program, step)


referrals_app = typer.Typer(help="Referrals.", no_args_is_help=True)
app.add_typer(referrals_app, name="referrals")


@referrals_app.command("pay")
def referrals_pay(
    program: Annotated[str | None, typer.Option(help="a program's code (default: all)")] = None,
) -> None:
    """Reward both sides of referrals whose return window closed unrefunded (idempotent)."""
    from habitue.rewards.tasks import run_referral_payouts

    async def step(db: Any, code: str, _chosen: bool) -> str:
        return f"paid {await run_referral_payouts(db, code):,} referrals"

    _each_program(program, step)


# --- analytics (issue 6) -------------------------------------------------------------------

import contextlib  # noqa: E402
import typing  # noqa: E402

recommend_app = typer.Typer(help="Recommendations (analytics room).", no_args_is_help=True)
app.add_typer(recommend_app, name="recommend")
report_app = typer.Typer(help="Program reports (analytics room).", no_args_is_help=True)
app.add_typer(report_app, name="report")

if typing.TYPE_CHECKING:
    from datetime import datetime as Moment

    from habitue.analytics.backtest import BacktestResult
    from habitue.programs.service import ProgramInfo


def _program_info(code: str) -> ProgramInfo:
    """A program's settings, read once through the async store."""
    from habitue.db import Database
    from habitue.programs import service as programs_service

    async def run() -> ProgramInfo:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                return await programs_service.get_info(session, code)
        finally:
            await db.dispose()

    return asyncio.run(run())


_AS_OF_HELP = (
    "analytics as of this date (its end, UTC) or ISO timestamp [default: now, or the end of "
    "the day of the last event when the history is older than the pending period]"
)


def _parse_as_of(value: str | None) -> Moment | None:
    from habitue.analytics import asof
    from habitue.analytics.errors import AnalyticsError

    if value is None:
        return None
    try:
        return asof.parse_as_of(value)
    except AnalyticsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None


def _analytics_steps(*, quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )


@app.command()
def rfm(
    program: Annotated[str, typer.Option(help="program code")],
    window_days: Annotated[int, typer.Option(help="RFM window in days")] = 365,
    as_of: Annotated[str | None, typer.Option(help=_AS_OF_HELP)] = None,
) -> None:
    """Score every member (RFM, segment, CLV, probability alive), store it, refresh segments."""
    from habitue.analytics import segments as segments_service
    from habitue.analytics import service as analytics_service
    from habitue.db import make_sync_engine

    info = _program_info(program)
    moment = _parse_as_of(as_of)
    engine = make_sync_engine(get_settings().database_url)
    try:
        with _analytics_steps() as bar:
            task = bar.add_task("scoring members", total=2)
            with engine.begin() as conn:
                run = analytics_service.refresh_scores(
                    conn, info, window_days=window_days, stream=True, as_of=moment
                )
                bar.advance(task)
                bar.update(task, description="recomputing segments")
                sizes = segments_service.recompute(conn, info)
                bar.advance(task)
    finally:
        engine.dispose()
    table = Table("RFM segment", "members")
    for name, count in run.segments.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if run.as_of is not None:
        console.print(f"as of {run.as_of.isoformat()}")
    console.print(
        f"{run.members_scored:,} members scored ({run.members_with_rfm:,} in the window); "
        f"CLV {'fitted' if run.clv_fitted else 'not fitted (no repeat purchases)'}; "
        f"{len(sizes)} dynamic segments recomputed"
    )


@app.command()
def clv(
    program: Annotated[str, typer.Option(help="program code")],
    as_of: Annotated[str | None, typer.Option(help=_AS_OF_HELP)] = None,
    holdout_until: Annotated[
        str | None,
        typer.Option(help="end of the holdout period [default: the end of the history]"),
    ] = None,
) -> None:
    """Fit BG/NBD + Gamma-Gamma as of a date; print the parameters and a holdout check."""
    from habitue.analytics import asof, holdout, snapshot
    from habitue.db import make_sync_engine

    info = _program_info(program)
    moment = _parse_as_of(as_of)
    until = _parse_as_of(holdout_until)
    engine = make_sync_engine(get_settings().database_url)
    try:
        with engine.connect() as conn:
            moment = asof.resolve(conn, info, moment)
            events = snapshot.events(conn, info.id, stream=True)
    finally:
        engine.dispose()
    check = holdout.check_fit(events, as_of=moment, holdout_end=until)
    console.print(
        f"as of {moment.isoformat()}: {check.members:,} members with purchases before, "
        f"{check.repeat_buyers:,} repeat buyers (time unit: weeks)"
    )
    if check.bgnbd is not None:
        b = check.bgnbd
        console.print(
            f"BG/NBD r = {b.r:.4f}, alpha = {b.alpha:.4f}, a = {b.a:.4f}, b = {b.b:.4f}, "
            f"log-likelihood {b.log_likelihood:,.2f}"
        )
        console.print(f"mean expected purchases in the next 30 days {check.expected_30d_mean:.4f}")
    if check.gamma_gamma is not None:
        g = check.gamma_gamma
        console.print(
            f"Gamma-Gamma p = {g.p:.4f}, q = {g.q:.4f}, gamma = {g.gamma:.4f} (minor units), "
            f"log-likelihood {g.log_likelihood:,.2f}, {g.n_customers:,} repeat buyers"
        )
    if check.reason is not None:
        console.print(f"not fitted: {check.reason}")
    if check.holdout_end is None:
        console.print("holdout check: no purchases after the as-of date")
        return
    table = Table(
        "repeat purchases before",
        "members",
        "predicted purchases",
        "actual purchases",
        title=f"holdout {moment.date()} to {check.holdout_end.date()} "
        f"({check.holdout_weeks:.1f} weeks), purchase days per member group",
    )
    for bucket in check.buckets:
        table.add_row(
            bucket.label, f"{bucket.members:,}", f"{bucket.predicted:,.1f}", f"{bucket.actual:,}"
        )
    console.print(table)
    error = (check.predicted - check.actual) / check.actual if check.actual else float("nan")
    console.print(
        f"holdout: predicted {check.predicted:,.1f} purchases, actual {check.actual:,} "
        f"({error:+.1%})"
    )


def _replay(
    info: ProgramInfo,
    *,
    source: str,
    rules: Path | None,
    ladder: Path | None,
    redemption_rate: float,
    point_value: str | None,
    quiet: bool,
) -> BacktestResult:
    """The backtest of `source` (a CSV or 'store'), with a progress bar unless quiet."""
    from decimal import Decimal

    from habitue.analytics import backtest as bt
    from habitue.db import make_sync_engine

    rule_set = bt.load_rules(rules) if rules is not None else None
    tier_ladder = (
        bt.load_ladder(ladder, currency_exponent=info.currency_exponent)
        if ladder is not None
        else None
    )
    scale = Decimal(10) ** info.currency_exponent
    value_minor = Decimal(point_value or info.redeem_rate) * scale
    engine = make_sync_engine(get_settings().database_url) if source == "store" else None
    try:
        with _analytics_steps(quiet=quiet) as bar:
            task = bar.add_task("replaying transactions", total=None)
            with contextlib.ExitStack() as stack:
                txs: typing.Iterable[bt.Transaction]
                if engine is not None:
                    conn = stack.enter_context(engine.connect())
                    if tier_ladder is None:
                        tier_ladder = bt.store_ladder(conn, info.id)
                    txs = bt.read_store(conn, info.id)  # streamed while replayed
                else:
                    txs = bt.read_csv(Path(source), currency_exponent=info.currency_exponent)
                return bt.run_backtest(
                    txs,
                    program=info.snapshot(),
                    rules=rule_set,
                    redemption_rate=redemption_rate,
                    point_value_minor=value_minor,
                    progress=lambda n: bar.advance(task, n),
                    ladder=tier_ladder,
                )
    finally:
        if engine is not None:
            engine.dispose()


@app.command()
def backtest(
    program: Annotated[str, typer.Option(help="program code")],
    source: Annotated[str, typer.Option("--from", help="a purchases CSV, or 'store'")],
    rules: Annotated[Path | None, typer.Option(help="rules JSON (default: base earn only)")] = None,
    ladder: Annotated[
        Path | None,
        typer.Option(help="tier ladder JSON, as the API takes (default: the store's with store)"),
    ] = None,
    redemption_rate: Annotated[float, typer.Option(help="share of points redeemed")] = 0.7,
    point_value: Annotated[
        str | None, typer.Option(help="value of a point in currency (default: redeem rate)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Replay past transactions through the rules with a simulated ledger; print points, cost.

    A CSV is read as `habitue import purchases` reads it: what the import would reject is
    not replayed, its purchases are listed with the reason, and the exit status is then 1."""
    import orjson

    from habitue.errors import HabitueError
    from habitue.money import format_minor

    info = _program_info(program)
    try:
        result = _replay(
            info, source=source, rules=rules, ladder=ladder, redemption_rate=redemption_rate,
            point_value=point_value, quiet=as_json,
        )  # fmt: skip
    except HabitueError as exc:
        err.print(f"[red]refused[/] {exc.detail}", highlight=False)
        raise typer.Exit(2) from exc
    if as_json:
        console.print_json(orjson.dumps(result.as_dict(), default=str).decode())
    else:
        rule_codes = sorted(result.by_rule)
        table = Table("month", *rule_codes, "total")
        for month, by_rule in sorted(result.by_month.items()):
            table.add_row(
                month,
                *(f"{by_rule.get(c, 0):,}" for c in rule_codes),
                f"{sum(by_rule.values()):,}",
            )
        table.add_row(
            "all", *(f"{result.by_rule[c]:,}" for c in rule_codes), f"{result.points_issued:,}"
        )
        console.print(table)
        if result.tier_mix is not None:
            codes = list(dict.fromkeys(c for mix in result.tier_mix.values() for c in mix))
            tiers_table = Table("month", *codes, title="tier mix (members at the month's end)")
            for month, mix in sorted(result.tier_mix.items()):
                tiers_table.add_row(month, *(f"{mix.get(c, 0):,}" for c in codes))
            console.print(tiers_table)
        exp = info.currency_exponent
        console.print(
            f"{result.transactions:,} transactions of {result.members:,} members in "
            f"{result.seconds:.2f} s ({result.rate:,.0f}/s); points issued "
            f"{result.points_issued:,}, taken back {result.points_taken_back:,}; expected "
            f"redemptions {result.expected_redemptions:,} ({redemption_rate:.0%}) costing "
            f"{format_minor(result.expected_cost_minor, exp)} {info.currency}"
            + ("" if result.tier_mix is not None else "; tier mix: no ladder")
        )
    if result.rejected:
        err.print(
            f"{result.rejected:,} purchases not replayed: the import rejects them", highlight=False
        )
        for external_id, reason in result.rejects[:20]:
            err.print(f"  {external_id or '(line)'}: {reason}", highlight=False, markup=False)
        raise typer.Exit(1)


@recommend_app.command("evaluate")
def recommend_evaluate(
    program: Annotated[str, typer.Option(help="program code")],
    split_at: Annotated[
        str | None, typer.Option(help="ISO time of the split (default: 80 % of the history)")
    ] = None,
    k: Annotated[int, typer.Option(help="list length", min=1, max=100)] = 10,
    horizon_days: Annotated[
        int | None, typer.Option(help="days after the split tested (default: all)", min=1)
    ] = None,
) -> None:
    """Evaluate recommendations on a time split: the model against three baselines, on the
    "next basket" and "new to you" tasks (protocol: docs/analytics.md)."""
    from habitue import clock
    from habitue.analytics import service as analytics_service
    from habitue.db import make_sync_engine

    info = _program_info(program)
    split = clock.as_utc(_parse_iso(split_at)) if split_at else None
    engine = make_sync_engine(get_settings().database_url)
    try:
        with _analytics_steps() as bar:
            bar.add_task("evaluating", total=None)
            with engine.connect() as conn:
                result = analytics_service.evaluate_protocol(
                    conn, info, split_at=split, k=k, horizon_days=horizon_days
                )
    finally:
        engine.dispose()
    console.print(
        f"split at {result.split_at.isoformat()}: {result.train_lines:,} training lines, "
        f"{result.test_lines:,} test lines"
    )
    for task in result.tasks:
        table = Table(
            "method",
            f"precision@{k}",
            f"recall@{k}",
            f"NDCG@{k}",
            "hit rate",
            title=f"{task.task}: {task.members:,} members evaluated",
        )
        for s in task.scores:
            table.add_row(
                s.method,
                f"{s.precision:.4f}",
                f"{s.recall:.4f}",
                f"{s.ndcg:.4f}",
                f"{s.hit_rate:.4f}",
            )
        console.print(table)
    validation = result.validation
    if validation is not None and validation.split_at is not None:
        from habitue.analytics.recommend_eval import describe

        console.print(
            f"the model's blends, chosen on the training period split at "
            f"{validation.split_at.isoformat()} ({validation.members:,} members):"
        )
        for task_name, blend in validation.blends.items():
            console.print(f"  {task_name}: {describe(blend)}")
    console.print(f"evaluated in {result.seconds:.2f} s")


def _parse_iso(value: str) -> Moment:
    from datetime import datetime

    return datetime.fromisoformat(value)


@report_app.command("monthly")
def report_monthly(
    program: Annotated[str, typer.Option(help="program code")],
    out: Annotated[Path, typer.Option(help="file to write")],
    fmt: Annotated[str, typer.Option("--format", help="json, csv or parquet")] = "json",
    as_of: Annotated[
        str | None, typer.Option(help="months up to this date's (default: every month)")
    ] = None,
) -> None:
    """Write the monthly program report (members, points, liability, breakage, revenue)."""
    from habitue.analytics import report as report_service
    from habitue.db import make_sync_engine

    info = _program_info(program)
    moment = _parse_as_of(as_of)
    engine = make_sync_engine(get_settings().database_url)
    try:
        with engine.connect() as conn:
            rows, rewards = report_service.program_report(conn, info, stream=True, as_of=moment)
    finally:
        engine.dispose()
    body, _ = report_service.render(rows, fmt, rewards=rewards)
    out.write_bytes(body)
    console.print(f"{len(rows)} months written to {out}")


idempotency_app = typer.Typer(help="Idempotency-Key records.", no_args_is_help=True)
app.add_typer(idempotency_app, name="idempotency")


@idempotency_app.command("purge")
def idempotency_purge(
    ttl_hours: Annotated[
        int | None,
        typer.Option(help="age in hours (default HABITUE_IDEMPOTENCY_TTL_HOURS)", min=1),
    ] = None,
) -> None:
    """Delete the Idempotency-Key records past their time (the scheduler does it too)."""
    from habitue import jobs
    from habitue.db import Database

    settings = get_settings()

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            return await jobs.purge_idempotency(db, ttl_hours or settings.idempotency_ttl_hours)
        finally:
            await db.dispose()

    console.print(f"purged {asyncio.run(run()):,} idempotency records")


from habitue.privacy.cli import audit_app, rotate_pii  # noqa: E402  (privacy room)

app.add_typer(audit_app, name="audit")
keys_app.command("rotate-pii")(rotate_pii)
