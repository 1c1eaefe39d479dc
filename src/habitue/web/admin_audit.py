"""The console's audit log: who read or changed which member, rule, reward, tier or setting.

Owners only (role permission `audit`). The page filters the program's chain of
`habitue.privacy.audit` rows by actor, resource, resource id, action and a date range (days in
the program's time zone), pages through them oldest first (by sequence number, as
`GET /v1/programs/{p}/audit`), exports the filtered rows as CSV, and shows the chain's
verification — what `habitue audit verify --program P` checks: ok, or the first broken row.
Reading the page is itself recorded (resource `audit`, action `read`; the CSV `export`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from habitue.privacy import audit
from habitue.programs.service import ProgramInfo
from habitue.settings import Settings
from habitue.web.admin import _db
from habitue.web.admin_forms import console_for
from habitue.web.i18n import _l

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
_MAX_SEQ = 2**63 - 1
_CSV_COLUMNS = ("seq", "at", "actor_kind", "actor", "action", "resource", "resource_id",
                "request_id", "detail", "hash")  # fmt: skip

RESOURCE_LABELS = {
    "member": _l("Member"),
    "rule": _l("Rule"),
    "reward": _l("Reward"),
    "tier": _l("Tier"),
    "api_key": _l("API key"),
    "webhook": _l("Webhook"),
    "setting": _l("Setting"),
    "partner": _l("Partner"),
    "offer": _l("Offer"),
    "campaign": _l("Campaign"),
    "program": _l("Program"),
    "audit": _l("Audit log"),
}
"""The kinds of resource the audit trail records (`audit_http.RESOURCES`, the console's)."""
ACTION_LABELS = {
    audit.Action.READ: _l("Read"),
    audit.Action.CREATE: _l("Created"),
    audit.Action.UPDATE: _l("Changed"),
    audit.Action.DELETE: _l("Deleted"),
    audit.Action.EXPORT: _l("Exported"),
}
BREACH_LABELS = {
    "missing": _l("Rows are missing before row %(seq)s: they were deleted."),
    "unlinked": _l("Row %(seq)s does not follow the row before it."),
    "altered": _l("Row %(seq)s was altered: its hash does not match its fields."),
    "truncated": _l("The newest rows were deleted: the chain ends before row %(seq)s."),
}
"""What each kind of `audit.Breach` is called on the page."""


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """The page's filters as typed (empty: any), with what they mean for `audit.query`."""

    actor: str = ""
    resource: str = ""
    resource_id: str = ""
    action: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, params: QueryParams) -> AuditFilters:
        def text(name: str, limit: int) -> str:
            return (params.get(name) or "").strip()[:limit]

        resource = text("resource", 32)
        action = text("action", 16)
        return cls(
            actor=text("actor", 200),
            resource=resource if resource in RESOURCE_LABELS else "",
            resource_id=text("resource_id", 200),
            action=action if action in ACTION_LABELS else "",
            since=_day(text("since", 10)),
            until=_day(text("until", 10)),
        )

    def query(self) -> dict[str, str]:
        """The filters set, as the page's query string holds them."""
        return {k: v for k, v in (
            ("actor", self.actor), ("resource", self.resource),
            ("resource_id", self.resource_id), ("action", self.action),
            ("since", self.since), ("until", self.until),
        ) if v}  # fmt: skip

    def arguments(self, timezone: str) -> dict[str, Any]:
        """`audit.query`'s filter arguments; the dates are whole days in the program's zone
        (`until` included)."""
        zone = ZoneInfo(timezone)

        def start(day: str) -> datetime:
            return datetime.combine(date.fromisoformat(day), time(), zone)

        return {
            "actor": self.actor or None,
            "resource": self.resource or None,
            "resource_id": self.resource_id or None,
            "action": self.action or None,
            "since": start(self.since) if self.since else None,
            "until": start(self.until) + timedelta(days=1) if self.until else None,
        }


def _day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat() if len(value) == 10 else ""
    except ValueError:
        return ""


async def _verify(request: Request, info: ProgramInfo) -> audit.Breach | None:
    settings: Settings = request.app.state.settings
    async with _db(request).read() as session:
        breaches = await audit.verify(session, hmac_key=settings.hmac_key, chain=info.id)
    return min(breaches, key=lambda b: b.seq) if breaches else None


@router.get("/{program}/audit")
async def audit_page(request: Request, program: str) -> Response:
    console = await console_for(request, program, "audit")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    filters = AuditFilters.of(request.query_params)
    after_text = request.query_params.get("after", "")
    after = int(after_text) if after_text.isdigit() and int(after_text) <= _MAX_SEQ else 0
    async with _db(request).read() as session:
        rows = await audit.query(
            session, chain=info.id, after=after, limit=PAGE_SIZE + 1,
            **filters.arguments(info.timezone),
        )  # fmt: skip
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = filters.query()
    base = f"/admin/{info.code}/audit"
    next_url = f"{base}?{urlencode({**query, 'after': rows[-1]['seq']})}" if more else None
    first_url = f"{base}?{urlencode(query)}" if after else None
    breach = await _verify(request, info)
    return console.render(
        "admin/audit.html",
        rows=rows,
        filters=filters,
        resources=RESOURCE_LABELS,
        actions=ACTION_LABELS,
        csv_url=f"/admin/{info.code}/audit.csv?{urlencode(query)}",
        next_url=next_url,
        first_url=first_url,
        breach=breach,
        breach_text=BREACH_LABELS.get(breach.kind, BREACH_LABELS["altered"]) if breach else None,
    )


@router.get("/{program}/audit.csv")
async def audit_csv(request: Request, program: str) -> Response:
    console = await console_for(request, program, "audit")
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    arguments = AuditFilters.of(request.query_params).arguments(info.timezone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    after = 0
    async with _db(request).read() as session:
        while True:
            rows = await audit.query(session, chain=info.id, after=after, limit=1000, **arguments)
            for r in rows:
                writer.writerow([
                    r["seq"], r["at"].isoformat(), r["actor_kind"], r["actor"], r["action"],
                    r["resource"], r["resource_id"] or "", r["request_id"] or "",
                    orjson.dumps(r["detail"], option=orjson.OPT_SORT_KEYS).decode(), r["hash"],
                ])  # fmt: skip
            if len(rows) < 1000:
                break
            after = rows[-1]["seq"]
    name = f"audit-{info.code}.csv"
    return console.page.finish(
        Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )
