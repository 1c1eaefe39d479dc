"""The console's Words page: the program's points name, tier names and privilege labels in
each language of the pages (stored by `habitue.web.words`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from habitue.clubs import service as clubs_service
from habitue.tiers import service as tiers_service
from habitue.web import labels, words
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import console_for, posted
from habitue.web.i18n import LOCALE_NAMES, LOCALES

router = APIRouter(prefix="/admin", include_in_schema=False)


async def _rows(request: Request, console: Console) -> list[tuple[str, str, str]]:
    """What the program names: (kind, code, its own name) for the points, each tier, and
    each privilege its tiers and club plans give."""
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        ladder = await tiers_service.load_ladder(session, info.id)
        plans = await clubs_service.list_plans(session, info)
    rows = [("points", "", info.points_name)]
    privileges: list[str] = []
    if ladder is not None:
        view = tiers_service.to_read(ladder, info)
        for tier in view.tiers:
            rows.append(("tier", tier.code, tier.name))
            privileges += tier.privileges
    for plan in plans:
        privileges += plan.privileges
    for code in dict.fromkeys(privileges):
        rows.append(("privilege", code, labels.readable(code)))
    return rows


async def _page(
    request: Request, console: Console, status: int = 200, saved: bool = False
) -> Response:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        stored = await words.all_words(session, info.id)
    rows = await _rows(request, console)
    built_in = {
        (kind, code): labels.PRIVILEGES.get(code, "")
        for kind, code, _ in rows
        if kind == "privilege"
    }
    return console.render(
        "admin/words.html",
        status,
        rows=rows,
        stored=stored,
        built_in=built_in,
        languages=[(code, LOCALE_NAMES[code]) for code in LOCALES],
        saved=saved,
    )


@router.get("/{program}/words")
async def words_page(request: Request, program: str) -> Response:
    console = await console_for(request, program, "tiers")
    if isinstance(console, Response):
        return console
    return await _page(request, console, saved=request.query_params.get("saved") == "1")


@router.post("/{program}/words")
async def save_words(request: Request, program: str) -> Response:
    found = await posted(request, program, "edit_tiers")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    wanted: dict[tuple[str, str, str], str] = {}
    for kind, code, _ in await _rows(request, console):
        for locale in LOCALES:
            text = form.get(f"w-{locale}-{kind}-{code}", "").strip()
            if text:
                wanted[(locale, kind, code)] = text[: words.MAX_WORD]
    program_id = info.id
    await _db(request).write(lambda s: words.save(s, program_id, wanted))
    return console.page.redirect(f"/admin/{info.code}/words?saved=1")
