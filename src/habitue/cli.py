"""`habitue`: serve, migrate, keys, import, expire, ledger verify, demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from habitue.settings import get_settings

app = typer.Typer(help="Habitué loyalty engine.", no_args_is_help=True)
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
    )


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
) -> None:
    """Create a scoped API key; the secret is printed once."""
    from habitue.db import Database
    from habitue.programs import service as programs_service
    from habitue.programs.schemas import ApiKeyCreate

    data = ApiKeyCreate(name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()])

    async def run() -> str:
        db = Database(get_settings().database_url)
        try:
            async with db.read() as session:
                info = await programs_service.get_info(session, program)
            made = await db.write(lambda s: programs_service.create_api_key(s, info, data))
            return made.key or ""
        finally:
            await db.dispose()

    console.print(asyncio.run(run()))


@import_app.command("purchases")
def import_purchases(
    file: Path,
    program: Annotated[str, typer.Option(help="program code")],
    enrol_missing: Annotated[bool, typer.Option(help="enrol unknown members")] = False,
    rejects: Annotated[Path | None, typer.Option(help="where rejected rows go")] = None,
    source: str = "default",
) -> None:
    """Import purchases from CSV; re-running credits nothing twice."""
    from habitue.db import make_sync_engine
    from habitue.events.importer import import_purchases as run_import
    from habitue.events.importer import write_rejects

    engine = make_sync_engine(get_settings().database_url)
    size = file.stat().st_size
    with Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("import", total=None)
        report = run_import(
            engine,
            program,
            file,
            enrol_missing=enrol_missing,
            source=source,
            progress=lambda n: bar.advance(task, n),
        )
        del size
    engine.dispose()
    rejects_path = rejects or file.with_suffix(".rejects.csv")
    if report.rejected:
        write_rejects(report, rejects_path)
    table = Table(show_header=False)
    for k, v in (
        ("rows", report.rows),
        ("purchases imported", report.imported),
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
    get_settings.cache_clear()
    info = demo_data.load(settings.database_url, members=members, purchases=purchases, seed=seed)
    console.print(f"[bold]demo program[/] {info['program']}: {info['summary']}")
    console.print(f"[bold]admin key[/] (HABITUE_ADMIN_KEY): {admin_key}")
    console.print(f"[bold]till key[/] (events:write, members:read): {info['till_key']}")
    console.print(f"[bold]sample member[/]: {info['sample_member']}")
    if serve_after:
        console.print(f"serving on http://127.0.0.1:{port} (docs at /docs)")
        serve(host="127.0.0.1", port=port, workers=1)
