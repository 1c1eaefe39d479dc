"""The console's tiers pages: the program's ladder with its tier mix, and a tier's form.

The ladder is read through `tiers.service.load_ladder`; a tier is changed through
`tiers.service.update_tier` (the ladder's checks apply); members per tier come from
`queries.tier_counts`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from habitue.errors import HabitueError
from habitue.tiers import service as tiers_service
from habitue.tiers.errors import InvalidLadder, NoLadder, UnknownTier
from habitue.tiers.schemas import LadderRead, TierWrite
from habitue.web import queries
from habitue.web.admin import Console, _db
from habitue.web.admin_forms import CHECK, MAX_CODE, FormReader, console_for, posted
from habitue.web.i18n import _l
from habitue.web.portal import METRIC_LABELS

router = APIRouter(prefix="/admin", include_in_schema=False)

METRICS = {
    "qualifying_spend": _l("Qualifying spend"),
    "tier_credits": _l("Tier credits"),
    "visits": _l("Visits"),
    "purchases": _l("Purchases"),
    "bookings": _l("Bookings"),
}
WINDOWS = {
    "calendar_year": _l("Calendar year"),
    "anniversary_year": _l("A year from each member's enrolment"),
    "rolling_months": _l("Rolling months"),
}
THRESHOLD_ORDER = _l(
    "Thresholds must rise up the ladder: stay above the tier below and below the tier above."
)
WHOLE_THRESHOLD = _l("Enter a whole number, 0 or more.")
MULTIPLIER = _l("Enter a multiplier from 1 to 100, such as 1.5.")
PRIVILEGE = _l("Each privilege is a name of 1 to 64 characters.")
TIER_REFUSED = _l("This change was refused.")


async def ladder_view(request: Request, console: Console) -> LadderRead | None:
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        ladder = await tiers_service.load_ladder(session, info.id)
    return tiers_service.to_read(ladder, info) if ladder is not None else None


@router.get("/{program}/tiers")
async def tiers(request: Request, program: str) -> Response:
    console = await console_for(request, program, "tiers")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        ladder = await tiers_service.load_ladder(session, info.id)
        counts = await queries.tier_counts(session, info)
    view = tiers_service.to_read(ladder, info) if ladder is not None else None
    rows = [(t, counts.pop(t.code, 0)) for t in view.tiers] if view else []
    without = counts.pop(None, 0)
    return console.render(
        "admin/tiers.html",
        ladder=view,
        rows=rows,
        without=without,
        others=sorted((str(code), n) for code, n in counts.items()),
        total=sum(n for _, n in rows) + without + sum(counts.values()),
        metrics=METRICS,
        windows=WINDOWS,
        saved=request.query_params.get("saved", "")[:MAX_CODE],
    )


def _tier_values(tier: Any) -> dict[str, str]:
    return {
        "name": tier.name,
        "threshold": str(tier.threshold),
        "multiplier": tier.multiplier,
        "privileges": ", ".join(tier.privileges),
    }


def _tier_page(
    console: Console,
    ladder: LadderRead,
    code: str,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    index = next(i for i, t in enumerate(ladder.tiers) if t.code == code)
    return console.render(
        "admin/tier.html",
        status,
        ladder=ladder,
        tier=ladder.tiers[index],
        below=ladder.tiers[index - 1] if index > 0 else None,
        above=ladder.tiers[index + 1] if index + 1 < len(ladder.tiers) else None,
        metrics=METRICS,
        units=METRIC_LABELS,
        values=values,
        errors=errors,
    )


@router.get("/{program}/tiers/{code}/edit")
async def tier_form(request: Request, program: str, code: str) -> Response:
    console = await console_for(request, program, "edit_tiers")
    if isinstance(console, Response):
        return console
    ladder = await ladder_view(request, console)
    tier = next((t for t in ladder.tiers if t.code == code), None) if ladder else None
    if ladder is None or tier is None:
        return console.not_found()
    return _tier_page(console, ladder, code, _tier_values(tier), {})


@router.post("/{program}/tiers/{code}/edit")
async def save_tier(request: Request, program: str, code: str) -> Response:
    found = await posted(request, program, "edit_tiers")
    if isinstance(found, Response):
        return found
    console, form = found
    info = console.program
    assert info is not None
    ladder = await ladder_view(request, console)
    if ladder is None or all(t.code != code for t in ladder.tiers):
        return console.not_found()
    reader = FormReader(form, ("name", "threshold", "multiplier", "privileges"), info.timezone)
    name = reader.text("name", required=True)
    threshold: int | str | None
    if ladder.metric == tiers_service.MONEY_METRIC:
        threshold = reader.money("threshold", info.currency_exponent, required=True)
    else:
        threshold = reader.integer("threshold", required=True, message=WHOLE_THRESHOLD)
    multiplier = reader.decimal(
        "multiplier", message=MULTIPLIER, required=True, at_least=Decimal(1), at_most=Decimal(100)
    )
    privileges = [p.strip() for p in re.split(r"[,\n]", reader.values["privileges"]) if p.strip()]
    if any(len(p) > 64 for p in privileges) or len(privileges) > 50:
        reader.fail("privileges", PRIVILEGE)
    if name is not None and threshold is not None and multiplier is not None and not reader.errors:
        try:
            data = TierWrite(
                code=code,
                name=name,
                threshold=threshold,
                multiplier=str(multiplier),
                privileges=privileges,
            )
            await _db(request).write(lambda s: tiers_service.update_tier(s, info, code, data))
        except ValidationError:
            reader.fail("privileges", PRIVILEGE)
        except InvalidLadder as exc:
            messages = " ".join(str(e.get("message", "")) for e in exc.errors)
            reader.fail("threshold", THRESHOLD_ORDER if "tier below" in messages else CHECK)
        except (NoLadder, UnknownTier):
            return console.not_found()
        except HabitueError:
            reader.fail("threshold", TIER_REFUSED)
    if reader.errors:
        return _tier_page(console, ladder, code, reader.values, reader.errors, 422)
    return console.page.redirect(f"/admin/{info.code}/tiers?saved={code}")
