"""`habitue audit verify|export` and `habitue keys rotate-pii` (wired in `habitue.cli`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from habitue.settings import get_settings

audit_app = typer.Typer(help="The audit log (privacy room).", no_args_is_help=True)
console = Console()


@audit_app.command("verify")
def audit_verify(
    program: Annotated[str | None, typer.Option(help="one program (default: every chain)")] = None,
) -> None:
    """Recompute the audit log's hash chains; exits 1 when a row was deleted or altered."""
    from habitue.db import Database
    from habitue.privacy import audit
    from habitue.programs import service as programs_service

    settings = get_settings()

    async def run() -> list[audit.Breach]:
        db = Database(settings.database_url)
        try:
            async with db.read() as session:
                chain = None
                if program is not None:
                    chain = (await programs_service.get_info(session, program)).id
                return await audit.verify(session, hmac_key=settings.hmac_key, chain=chain)
        finally:
            await db.dispose()

    breaches = asyncio.run(run())
    for b in breaches:
        console.print(f"[red]BREACH[/] chain {b.chain} row {b.seq}: {b.problem}", highlight=False)
    if breaches:
        raise typer.Exit(1)
    console.print("[green]ok[/] the audit log is intact")


@audit_app.command("export")
def audit_export(
    program: Annotated[str, typer.Option(help="program code")],
    out: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
) -> None:
    """Write a program's audit log as JSON lines (the owner's copy)."""
    from habitue.db import Database
    from habitue.privacy import audit
    from habitue.programs import service as programs_service

    settings = get_settings()

    async def run() -> list[bytes]:
        db = Database(settings.database_url)
        lines: list[bytes] = []
        try:
            async with db.read() as session:
                chain = (await programs_service.get_info(session, program)).id
                after = 0
                while True:
                    rows = await audit.query(session, chain=chain, after=after, limit=1000)
                    lines += [orjson.dumps(r) + b"\n" for r in rows]
                    if len(rows) < 1000:
                        return lines
                    after = rows[-1]["seq"]
        finally:
            await db.dispose()

    lines = asyncio.run(run())
    if out is None:
        sys.stdout.buffer.write(b"".join(lines))
    else:
        out.write_bytes(b"".join(lines))
        console.print(f"{len(lines)} entries written to {out}")


def rotate_pii() -> None:
    """Re-encrypt members' email and phone with the first key of HABITUE_PII_KEYS (and
    encrypt those stored before encryption was on); then the old key can be dropped."""
    from habitue.db import Database
    from habitue.privacy import pii

    settings = get_settings()

    async def run() -> dict[str, int]:
        db = Database(settings.database_url, group_commit=False)
        try:
            return await db.write(lambda s: pii.rotate(s))
        finally:
            await db.dispose()

    done = asyncio.run(run())
    console.print(
        f"re-encrypted {done['email']:,} emails and {done['phone']:,} phone numbers "
        "with the first key of HABITUE_PII_KEYS"
    )
