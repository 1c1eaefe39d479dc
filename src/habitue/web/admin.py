"""The admin console, `/admin/…`: staff sign-in, dashboard, members, adjustments, simulator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import service as analytics_service
from habitue.db import Database
from habitue.errors import HabitueError
from habitue.events import explain as explain_service
from habitue.events.pipeline import Pipeline
from habitue.events.schemas import EventCreate
from habitue.ledger import service as ledger_service
from habitue.ledger.errors import InsufficientPoints
from habitue.ledger.schemas import AdjustmentCreate
from habitue.members import points as ledger_operations
from habitue.members import service as members_service
from habitue.members.errors import MemberNotFound
from habitue.members.schemas import MemberRead
from habitue.programs import service as programs_service
from habitue.programs.errors import ProgramNotFound
from habitue.programs.service import ProgramInfo
from habitue.rewards import coupons
from habitue.rewards import redeem as redeem_service
from habitue.rewards.schemas import MemberCouponRead, RedemptionRead
from habitue.rules import drafts
from habitue.rules import service as rules_service
from habitue.rules.errors import InvalidRule
from habitue.rules.schemas import RuleRead
from habitue.tiers import service as tiers_service
from habitue.tiers.benefits import benefits_of, privilege_list
from habitue.web import admin_basket, limits, member_messages, queries, words
from habitue.web import service as web_service
from habitue.web.i18n import _l, normalise
from habitue.web.pages import (
    LOCALE_COOKIE,
    STAFF_COOKIE,
    Page,
    form_of,
    new_page,
    safe_next,
    signin_url,
)
from habitue.web.portal import KIND_LABELS
from habitue.web.portal_rewards import STATES as COUPON_STATES

router = APIRouter(prefix="/admin", include_in_schema=False)


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


@dataclass
class Console:
    page: Page
    staff: web_service.Staff
    program: ProgramInfo | None = None

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return self.page.render(
            template,
            status,
            staff=self.staff,
            program=self.program,
            base=f"/admin/{self.program.code}" if self.program else "/admin",
            area="admin",
            member=None,
            **context,
        )

    def denied(self) -> Response:
        return self.render(
            "error.html",
            403,
            title=self.page._("Not allowed"),
            message=self.page._("Your role does not allow this. Ask an owner of the program."),
        )

    def not_found(self) -> Response:
        return self.render(
            "error.html",
            404,
            title=self.page._("Page not found"),
            message=self.page._("There is nothing at this address."),
        )


async def _load(request: Request, code: str | None = None) -> Console | Response:
    """The console context, or the response to send instead (sign-in or not found)."""
    token = request.cookies.get(STAFF_COOKIE)
    staff = None
    info = None
    async with _db(request).read() as session:
        info = await web_service.load_session(session, token, "staff")
        if info is not None and info.staff_id is not None:
            staff = await web_service.get_staff(session, info.staff_id)
    if staff is None:
        page = new_page(request)
        return page.redirect(signin_url("/admin/signin", request.url.path))
    program = None
    if code is not None:
        try:
            async with _db(request).read() as session:
                program = (
                    await programs_service.get_info(session, code) if len(code) <= 64 else None
                )
        except ProgramNotFound:
            program = None
        if program is not None and staff.program_id not in (None, program.id):
            program = None
    page = new_page(request, session=info, timezone=program.timezone if program else "UTC")
    if program is not None:
        async with _db(request).read() as session:
            page.words = await words.all_words(session, program.id)
    console = Console(page, staff, program)
    if code is not None and program is None:
        return console.not_found()
    return console


def _forbidden_form(console: Console) -> Response:
    return console.render(
        "error.html",
        403,
        title=console.page._("This form has expired"),
        message=console.page._("Please go back, reload the page and try again."),
    )


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    page = new_page(request)
    return page.render(
        "admin/signin.html",
        values={},
        errors={},
        next=safe_next(next, "/admin", ""),
        area="admin",
        staff=None,
        program=None,
        member=None,
    )


@router.post("/signin")
async def signin(request: Request) -> Response:
    page = new_page(request)
    form = await form_of(request)
    target = safe_next(form.get("next"), "/admin", "/admin")
    context = {"area": "admin", "staff": None, "program": None, "member": None, "next": target}
    if not page.csrf_ok(form):
        return page.render(
            "admin/signin.html",
            403,
            values={"email": form.get("email", "")},
            errors={"password": _l("This form has expired. Please try again.")},
            **context,
        )
    email = form.get("email", "").strip()
    password = form.get("password", "")
    buckets = limits.password_buckets(request, email and f"staff:{email.lower()}")
    wait = await limits.check(request, buckets)
    if wait:
        refused = page.render(
            "admin/signin.html",
            429,
            values={"email": email},
            errors={"password": limits.TOO_MANY_PASSWORDS},
            **context,
        )
        return limits.refused(refused, wait)

    async def work(session: AsyncSession) -> str | None:
        staff = await web_service.check_staff_password(session, email, password)
        if staff is None:
            return None
        token, _ = await web_service.open_session(
            session, kind="staff", program_id=staff.program_id, staff_id=staff.id
        )
        return token

    token = await _db(request).write(work) if email and password else None
    if token is None:
        await limits.hit(request, buckets)
        return page.render(
            "admin/signin.html",
            422,
            values={"email": email},
            errors={"password": _l("The email or the password is not right.")},
            **context,
        )
    page.set_cookie(STAFF_COOKIE, token, path="/admin")
    return page.redirect(target)


@router.post("/signout")
async def signout(request: Request) -> Response:
    console = await _load(request)
    if isinstance(console, Response):
        return console
    form = await form_of(request)
    if not console.page.csrf_ok(form):
        return _forbidden_form(console)
    token = request.cookies.get(STAFF_COOKIE)
    await _db(request).write(lambda s: web_service.close_session(s, token))
    console.page.delete_cookie(STAFF_COOKIE, path="/admin")
    return console.page.redirect("/admin/signin")


@router.post("/locale")
async def switch_locale(request: Request) -> Response:
    page = new_page(request)
    form = await form_of(request)
    token = request.cookies.get(STAFF_COOKIE)
    async with _db(request).read() as session:
        info = await web_service.load_session(session, token, "staff")
    if info is not None:
        page.csrf = info.csrf
    if not page.csrf_ok(form):
        return page.redirect("/admin")
    page.set_cookie(LOCALE_COOKIE, normalise(form.get("locale")) or page.locale)
    return page.redirect(safe_next(form.get("next"), "/admin", "/admin"))


@router.get("")
@router.get("/")
async def programs(request: Request) -> Response:
    console = await _load(request)
    if isinstance(console, Response):
        return console
    async with _db(request).read() as session:
        codes = await queries.program_codes(session)
    if console.staff.program_id is not None:
        async with _db(request).read() as session:
            mine = [
                (c, n)
                for c, n in codes
                if (await programs_service.get_info(session, c)).id == console.staff.program_id
            ]
        codes = mine
    if len(codes) == 1:
        return console.page.redirect(f"/admin/{codes[0][0]}")
    return console.render(
        "admin/programs.html",
        programs=codes,
        may_set_up=console.staff.program_id is None and console.staff.may("setup"),
    )


# The RFM segments' names (`analytics.rfm.SEGMENTS`), marked for translation on the dashboard.
SEGMENT_NAMES = (
    _l("Champions"),
    _l("Loyal"),
    _l("Potential loyalists"),
    _l("New"),
    _l("Promising"),
    _l("Need attention"),
    _l("About to sleep"),
    _l("At risk"),
    _l("Can't lose them"),
    _l("Hibernating"),
    _l("Lost"),
)


@router.get("/{program}")
async def dashboard(request: Request, program: str) -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    info = console.program
    assert info is not None
    async with _db(request).read() as session:
        figures = await queries.dashboard(session, info)
        segments = await analytics_service.stored_segment_sizes(session, info)
        tiers = await queries.tier_mix(session, info)
        expiring = await queries.expiry_forecast(session, info)
    t = console.page._
    figures["expiring"] = [
        (console.page.fmt.date(date(int(m[:4]), int(m[5:]), 1), "MMM y"), n) for m, n in expiring
    ]
    figures["segments"] = [(t(name), count) for name, count in segments.items()]
    figures["tiers"] = [(name if name is not None else t("No tier"), n) for name, n in tiers]
    figures["months"] = [
        console.page.fmt.date(date(int(m[:4]), int(m[5:]), 1), "MMM y") for m in figures["labels"]
    ]
    charts = {
        "members": {
            "labels": figures["months"],
            "datasets": [{"label": t("Members"), "data": figures["members"]}],
        },
        "points": {
            "labels": figures["months"],
            "datasets": [
                {"label": t("Issued"), "data": figures["issued"]},
                {"label": t("Redeemed"), "data": figures["redeemed"]},
                {"label": t("Expired"), "data": figures["expired"]},
            ],
        },
        "segments": {
            "labels": [name for name, _ in figures["segments"]],
            "datasets": [{"label": t("Members"), "data": [n for _, n in figures["segments"]]}],
        },
        "tiers": {
            "labels": [name for name, _ in figures["tiers"]],
            "datasets": [{"label": t("Members"), "data": [n for _, n in figures["tiers"]]}],
        },
    }
    return console.render(
        "admin/dashboard.html",
        figures=figures,
        charts=json.dumps(charts),
        created=request.query_params.get("created") == "1",
    )


@router.get("/{program}/members")
async def members(request: Request, program: str, q: str = "") -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("members"):
        return console.denied()
    info = console.program
    assert info is not None
    found: list[MemberRead] = []
    text = q.strip()[:200]
    if text:
        async with _db(request).read() as session:
            found = await _search(session, info, text)
    from habitue.web.admin_member_list import list_context  # the list's own module

    listed = await list_context(request, console)
    offered = request.query_params.get("offered", "")[:64]
    count = request.query_params.get("count", "")[:9]
    return console.render(
        "admin/members.html", q=text, found=found, offered=offered, offered_count=count, **listed
    )


async def _search(session: AsyncSession, info: ProgramInfo, text: str) -> list[MemberRead]:
    if "@" in text:
        items, _ = await members_service.find(
            session, info, external_id=None, email=text, card_number=None, after=None, limit=20
        )
        return items
    digits = text.replace(" ", "").replace("-", "")
    if digits.isdigit() or text.startswith("habitue:"):
        items, _ = await members_service.find(
            session, info, external_id=None, email=None, card_number=text, after=None, limit=20
        )
        return items
    ids = await queries.search_by_name(session, info, text)
    return [await members_service.read(session, info, i, with_balance=False) for i in ids]


@dataclass(frozen=True)
class MemberView:
    """What the member page shows: the member, the ledger, rewards taken and their coupons,
    and the latest events with the messages they would send."""

    member: MemberRead
    history: list[dict[str, Any]]
    redemptions: list[RedemptionRead]
    messages: member_messages.MemberMessages
    privileges: list[tuple[str, datetime | None]] = field(default_factory=list)
    """What the member may claim now (tier, clubs, `benefit` rules), with when each ends."""
    won: list[MemberCouponRead] = field(default_factory=list)
    """Coupons `coupon` rules issued the member (the redemptions' are in `redemptions`)."""


async def _member_view(request: Request, console: Console, public_id: str) -> MemberView | None:
    info = console.program
    assert info is not None
    try:
        async with _db(request).read() as session:
            member = await members_service.read(session, info, public_id[:64])
            ref = await members_service.resolve(session, info, member_id=member.id)
            history = await ledger_service.history(session, ref.id, before=None, limit=100)
            taken = await redeem_service.for_member(session, info, ref, limit=50)
            messages = await member_messages.load(
                session, info, member, settings=request.app.state.settings, limit=50
            )
            privileges = privilege_list(await benefits_of(session, info, ref))
            won = [c for c in await coupons.for_member(session, info, ref.id) if c.event_id]
    except MemberNotFound:
        return None
    return MemberView(member, history, taken, messages, privileges, won)


def _member_page(
    console: Console,
    view: MemberView,
    status: int = 200,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    done: str | None,
    **extra: Any,
) -> Response:
    return console.render(
        "admin/member.html",
        status,
        **extra,
        m=view.member,
        history=view.history,
        redemptions=view.redemptions,
        privileges=view.privileges,
        won=view.won,
        states=COUPON_STATES,
        kinds=KIND_LABELS,
        messages=view.messages,
        channels=member_messages.CHANNEL_LABELS,
        delivery_channels=member_messages.DELIVERY_CHANNELS,
        codes=member_messages.CODE_LABELS,
        blocked=member_messages.BLOCKED_LABELS,
        reasons=member_messages.REASON_LABELS,
        statuses=member_messages.STATUS_LABELS,
        values=values,
        errors=errors,
        done=done,
    )


@router.get("/{program}/members/{member_id}")
async def member(request: Request, program: str, member_id: str) -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("members"):
        return console.denied()
    view = await _member_view(request, console, member_id)
    if view is None:
        return console.not_found()
    return _member_page(
        console,
        view,
        values={},
        errors={},
        done=request.query_params.get("adjusted"),
        erased=request.query_params.get("erased") == "1",
    )


@router.post("/{program}/members/{member_id}/adjust")
async def adjust(request: Request, program: str, member_id: str) -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("adjust"):
        return console.denied()
    form = await form_of(request)
    if not console.page.csrf_ok(form):
        return _forbidden_form(console)
    view = await _member_view(request, console, member_id)
    if view is None:
        return console.not_found()
    errors: dict[str, str] = {}
    values = {"points": form.get("points", ""), "reason": form.get("reason", "")}
    try:
        points = int(values["points"].strip())
        if points == 0 or abs(points) > 10**9:
            raise ValueError
    except ValueError:
        points = 0
        errors["points"] = _l("Enter a whole number of points, not zero (negative to take back).")
    reason = values["reason"].strip()
    if len(reason) < 3:
        errors["reason"] = _l("Give a reason (at least 3 characters).")
    elif len(reason) > 500:
        errors["reason"] = _l("This is too long.")
    info = console.program
    assert info is not None
    if not errors:
        actor = f"staff:{console.staff.email}"
        data = AdjustmentCreate(points=points, reason=reason)
        public_id = view.member.id

        async def work(session: AsyncSession) -> None:
            ref = await members_service.resolve(
                session, info, member_id=public_id, reads=(members_service.LOCKED_STATUS,)
            )
            await ledger_operations.adjust(session, info, ref, data, actor=actor)

        try:
            await _db(request).write(work)
        except InsufficientPoints:
            errors["points"] = _l("The member does not have that many points.")
        except HabitueError:
            errors["points"] = _l("This adjustment was refused.")
    if errors:
        return _member_page(console, view, 422, values=values, errors=errors, done=None)
    return console.page.redirect(f"/admin/{info.code}/members/{view.member.id}?adjusted={points}")


SAMPLE_LINES = "espresso,coffee,2,2.20\ncroissant,pastry,1,1.60"


def _parse_lines(text: str) -> list[dict[str, Any]]:
    """`sku,category,quantity,unit_price` per line into basket lines."""
    lines = []
    for raw in text.strip().splitlines():
        if not raw.strip():
            continue
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) != 4:
            raise ValueError(raw)
        sku, category, quantity, price = parts
        Decimal(quantity)
        Decimal(price)
        lines.append(
            {
                "sku": sku or None,
                "category": category or None,
                "quantity": quantity,
                "unit_price": price,
            }
        )
    return lines


@router.get("/{program}/simulator")
async def simulator_form(request: Request, program: str) -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("simulate"):
        return console.denied()
    values = {
        "type": "purchase",
        "lines": SAMPLE_LINES,
        "member": request.query_params.get("member", ""),
    }
    rules = await _rules(request, console)
    chosen = request.query_params.get("rule", "")[:64]
    loaded: dict[str, Any] | None = None
    drafted = False
    if chosen and console.staff.may("rules"):
        info = console.program
        assert info is not None
        async with _db(request).read() as session:
            try:  # the rule as it is being worked on: its draft first
                loaded, drafted = (await drafts.get_draft(session, info, chosen)).spec, True
            except drafts.DraftNotFound:
                loaded = next((r.spec for r in rules if r.code == chosen), None)
    if loaded is not None:
        values["rule_json"] = json.dumps(loaded, indent=2, ensure_ascii=False)
    return console.render(
        "admin/simulator.html",
        values=values,
        errors={},
        result=None,
        rules=rules,
        loaded_draft=chosen if drafted else None,
    )


async def _rules(request: Request, console: Console) -> list[RuleRead]:
    """The program's live rules, for the editor (owners and marketers only)."""
    if console.program is None or not console.staff.may("rules"):
        return []
    info = console.program
    async with _db(request).read() as session:
        return (await rules_service.list_rules(session, info)).items


async def _save_rule(
    request: Request, console: Console, text: str, errors: dict[str, str]
) -> str | None:
    """Save the rule in `text` (JSON) as the draft of its code (`rules.drafts.put_draft`: a
    new rule or the next version of a live one, checked as the API checks it); the live rules
    stay as they are. Its code, or None with the error in `errors`."""
    info = console.program
    assert info is not None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError
    except ValueError:
        errors["rule_json"] = _l("This is not a JSON object.")
        return None
    code = data.get("code")
    if not isinstance(code, str) or not code:
        errors["rule_json"] = _l("The rule needs a code.")
        return None
    actor = f"staff:{console.staff.email}"

    async def work(session: AsyncSession) -> str:
        return (await drafts.put_draft(session, info, code, data, actor=actor)).code

    try:
        return await _db(request).write(work)
    except InvalidRule as exc:
        first = exc.errors[0] if exc.errors else {"field": "", "message": exc.detail}
        where = f" (line {first['line']}, column {first['column']})" if "line" in first else ""
        errors["rule_json"] = f"{first['field']}: {first['message']}{where}"
        return None
    except HabitueError as exc:
        errors["rule_json"] = exc.detail
        return None


@router.post("/{program}/simulator")
async def simulate(request: Request, program: str) -> Response:
    console = await _load(request, program)
    if isinstance(console, Response):
        return console
    if not console.staff.may("simulate"):
        return console.denied()
    form = await form_of(request)
    if not console.page.csrf_ok(form):
        return _forbidden_form(console)
    info = console.program
    assert info is not None
    fields = ("member", "type", "total", "lines", "json", "rule_json", "occurred_at", "codes",
              "points", "with_draft")  # fmt: skip
    values = {k: form.get(k, "") for k in fields}
    errors: dict[str, str] = {}
    saved: str | None = None
    if form.get("action") == "save_rule":
        if not console.staff.may("rules"):
            return console.denied()
        saved = await _save_rule(request, console, values["rule_json"], errors)
        values["with_draft"] = saved or ""
        if saved is None:
            rules = await _rules(request, console)
            return console.render(
                "admin/simulator.html", 422, values=values, errors=errors, result=None, rules=rules
            )
    body: dict[str, Any] = {}
    if values["json"].strip():
        try:
            body = json.loads(values["json"])
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            errors["json"] = _l("This is not a JSON object.")
    else:
        try:
            lines = _parse_lines(values["lines"])
        except (ValueError, InvalidOperation):
            lines = []
            errors["lines"] = _l("Write one line per item: sku,category,quantity,unit price.")
        total = values["total"].strip()
        if not total and lines:
            total = str(sum(Decimal(x["quantity"]) * Decimal(x["unit_price"]) for x in lines))
        body = {
            "type": values["type"].strip() or "purchase",
            "total": total or None,
            "lines": lines,
        }
    when = values["occurred_at"].strip()
    if when and "occurred_at" not in body:
        try:
            local = datetime.fromisoformat(when)
            if local.tzinfo is None:
                local = local.replace(tzinfo=ZoneInfo(info.timezone))
            body["occurred_at"] = local.isoformat()
        except ValueError:
            errors["occurred_at"] = _l("Enter a date and time.")
    who = values["member"].strip()
    if "member" not in body:
        if not who:
            errors["member"] = _l("Give a member's card number or id.")
        digits = who.replace(" ", "")
        body["member"] = (
            {"card_number": who} if digits.isdigit() or who.startswith("habitue:") else {"id": who}
        )
    body.setdefault("external_id", "simulator")
    points_text = values["points"].strip()
    if points_text and not points_text.isdigit():
        errors["points"] = _l("Enter a whole number of points.")
    result: explain_service.Explanation | None = None
    live_points: int | None = None
    basket: admin_basket.SimulatedBasket | None = None
    draft_code = values["with_draft"].strip()[:64] if console.staff.may("rules") else ""
    if not errors:
        try:
            event = EventCreate.model_validate(body)
            async with _db(request).read() as session:
                if event.type == "purchase" and event.lines:
                    basket = await _simulated_basket(request, session, info, body, values)
                if basket is not None and basket.purchase is not None:
                    event = basket.purchase
                if event.occurred_at is None:  # the live and the draft answers for one instant
                    event = event.model_copy(update={"occurred_at": clock.now()})
                pipeline = _pipeline(request)
                with_rules = None
                if draft_code:
                    try:
                        with_rules = await drafts.rules_with_draft(
                            session, pipeline, info, draft_code
                        )
                    except (drafts.DraftNotFound, InvalidRule):
                        draft_code = ""  # published, discarded or broken since: the live rules
                result = await explain_service.explain(
                    session, pipeline, info, event, rules=with_rules
                )
                if with_rules is not None:
                    live = await explain_service.explain(session, pipeline, info, event)
                    live_points = live.points
        except ValidationError as exc:
            first = exc.errors()[0]
            errors["json" if values["json"].strip() else "lines"] = (
                ".".join(str(p) for p in first.get("loc", ())) + ": " + str(first.get("msg"))
            )
        except MemberNotFound:
            errors["member"] = _l("No member with this card number or id.")
        except HabitueError as exc:
            errors["member" if "card" in exc.detail or "member" in exc.detail else "lines"] = (
                exc.detail
            )
    status = 422 if errors else 200
    tier_names: dict[str, str] = {}
    if result is not None and any(step.kind == "tier" for step in result.steps):
        async with _db(request).read() as session:
            ladder = await tiers_service.load_ladder(session, info.id)
        tier_names = {t.code: t.name for t in ladder.tiers} if ladder is not None else {}
    return console.render(
        "admin/simulator.html",
        status,
        values=values,
        errors=errors,
        result=result,
        tier_names=tier_names,
        rules=await _rules(request, console),
        saved=saved,
        basket=basket,
        with_draft=draft_code,
        live_points=live_points,
    )


async def _simulated_basket(
    request: Request,
    session: AsyncSession,
    info: ProgramInfo,
    body: dict[str, Any],
    values: dict[str, str],
) -> admin_basket.SimulatedBasket | None:
    """The basket priced as `POST /baskets/price` prices it (None: not a basket the till
    would take, such as a line without a price: the explanation says why)."""
    try:
        return await admin_basket.price(
            session, _pipeline(request), info, body,
            codes=admin_basket.codes_of(values["codes"]), points=int(values["points"] or 0),
        )  # fmt: skip
    except ValidationError:
        return None
