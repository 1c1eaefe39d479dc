"""A program's own words per language: its points name, its tiers' names, its privileges.

Read by every page of the program (`for_page`), written by the console's Words page (`save`).
A word missing in a language falls back to the program's own name (points name, tier name)
or to the built-in label (`habitue.web.labels`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.web.models import ProgramWord

_words = table_of(ProgramWord)
KINDS = ("points", "tier", "privilege")
MAX_WORD = 200


async def for_page(
    session: AsyncSession, program_id: int, locale: str
) -> dict[tuple[str, str], str]:
    """The program's words in `locale`, keyed (kind, code); the points name's code is ""."""
    rows = await session.execute(
        select(_words.c.kind, _words.c.code, _words.c.text).where(
            _words.c.program_id == program_id, _words.c.locale == locale
        )
    )
    return {(str(k), str(c)): str(t) for k, c, t in rows}


async def all_words(session: AsyncSession, program_id: int) -> dict[tuple[str, str, str], str]:
    """Every word of the program, keyed (locale, kind, code)."""
    rows = await session.execute(
        select(_words.c.locale, _words.c.kind, _words.c.code, _words.c.text).where(
            _words.c.program_id == program_id
        )
    )
    return {(str(loc), str(k), str(c)): str(t) for loc, k, c, t in rows}


async def save(
    session: AsyncSession, program_id: int, words: Mapping[tuple[str, str, str], str]
) -> int:
    """Replace the program's words with `words` ((locale, kind, code) → text; empty texts
    are dropped); the number kept."""
    await session.execute(delete(_words).where(_words.c.program_id == program_id))
    now = clock.now()
    rows = [
        {
            "program_id": program_id,
            "locale": locale,
            "kind": kind,
            "code": code,
            "text": text.strip()[:MAX_WORD],
            "updated_at": now,
        }
        for (locale, kind, code), text in sorted(words.items())
        if kind in KINDS and text.strip()
    ]
    if rows:
        await session.execute(insert(_words), rows)
    return len(rows)
