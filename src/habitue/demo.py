"""The demo café chain: members and a year of purchases, reproducible from a seed."""

from __future__ import annotations

import asyncio
import csv
import random
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import segments as segments_service
from habitue.analytics import service as analytics_service
from habitue.db import Database, make_sync_engine, table_of
from habitue.demo_rooms import RoomsLoaded, load_rooms
from habitue.events.importer import import_purchases
from habitue.events.models import Event
from habitue.members import service as members_service
from habitue.members.models import Card, Member
from habitue.members.schemas import MemberCreate, MemberRead
from habitue.migrate import upgrade
from habitue.programs import service as programs_service
from habitue.programs.errors import ProgramNotFound
from habitue.programs.schemas import ApiKeyCreate, Expiry, ProgramCreate
from habitue.tiers.schemas import LadderWrite

PROGRAM = "cafe"
MENU: list[tuple[str, str, str]] = [
    ("espresso", "coffee", "2.20"),
    ("cappuccino", "coffee", "3.40"),
    ("latte", "coffee", "3.80"),
    ("filter", "coffee", "2.60"),
    ("tea", "tea", "2.80"),
    ("croissant", "pastry", "1.60"),
    ("pain-au-chocolat", "pastry", "1.80"),
    ("cookie", "pastry", "2.10"),
    ("sandwich", "food", "6.90"),
    ("salad", "food", "8.50"),
    ("beans-250g", "retail", "9.90"),
]
FIRST = [
    "Ana",
    "Louis",
    "Maja",
    "Emil",
    "Chloé",
    "Noah",
    "Ida",
    "Hugo",
    "Freja",
    "Léa",
    "Oscar",
    "Alma",
    "Jules",
    "Clara",
    "Victor",
    "Sofie",
    "Lucas",
    "Inès",
    "William",
    "Ella",
]
LAST = [
    "Martin",
    "Jensen",
    "Bernard",
    "Nielsen",
    "Dubois",
    "Hansen",
    "Moreau",
    "Pedersen",
    "Laurent",
    "Andersen",
    "Simon",
    "Larsen",
    "Michel",
    "Sørensen",
    "Lefebvre",
    "Rasmussen",
]


def _program_create() -> ProgramCreate:
    return ProgramCreate(
        code=PROGRAM,
        name="Café Habitué",
        currency="EUR",
        timezone="Europe/Paris",
        points_name="beans",
        earn_rate="1",
        expiry=Expiry(policy="days", days=365),
        redeem_rate="0.05",
        redeem_step=10,
    )


def _members(n: int, rng: random.Random) -> list[MemberCreate]:
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        locale = rng.choices(["en", "fr", "da"], weights=[3, 5, 2])[0]
        out.append(
            MemberCreate(
                external_id=f"C{i:06d}",
                email=f"{first.lower().replace('é', 'e').replace('è', 'e')}.{i}@example.com",
                first_name=first,
                last_name=last,
                birth_date=date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28)),
                locale=locale,
                consents={
                    "email": rng.random() < 0.7,
                    "sms": rng.random() < 0.3,
                    "analytics": rng.random() < 0.8,
                },
                attributes={
                    "favourite": rng.choice(["coffee", "tea", "pastry", "food"]),
                    "store": rng.choice(["Bastille", "Nørrebro", "Canal"]),
                },
                card_kind=rng.choice(["digital", "physical"]),
            )
        )
    return out


KINDS: tuple[tuple[str, ...], ...] = (
    ("espresso", "cappuccino", "latte", "croissant", "pain-au-chocolat"),
    ("filter", "latte", "cookie", "beans-250g", "espresso"),
    ("tea", "cookie", "croissant", "salad"),
    ("sandwich", "salad", "filter", "cookie", "latte"),
)
"""Kinds of customer (the morning coffee, the coffee lover, the tea drinker, lunch): what a
customer's favourites and the other things they try are drawn from."""


def _taste(rng: random.Random) -> tuple[list[tuple[str, str, str]], list[float], float]:
    """A customer's kind of items (`KINDS`), their one to three favourites among them with how
    much they like each, and the share of their basket lines that are a favourite (a
    regular's usual order); the other lines are, half the time, something else of their kind."""
    by_sku = {item[0]: item for item in MENU}
    kind = [by_sku[sku] for sku in rng.choice(KINDS)]
    favourites = rng.sample(kind, rng.choice([1, 2, 2, 3]))
    liking = [rng.uniform(0.2, 1.0) for _ in favourites]
    others = [item for item in kind if item not in favourites] or kind
    return favourites + others, liking + [0.0] * len(others), rng.uniform(0.5, 0.9)


def _line_of(
    taste: tuple[list[tuple[str, str, str]], list[float], float],
    rng: random.Random,
    drawn: tuple[str, str, str],
) -> tuple[str, str, str]:
    """A basket line of a customer of this taste: a favourite, something else of their kind,
    or the item drawn from the whole menu."""
    items, liking, loyalty = taste
    if rng.random() < loyalty:
        return rng.choices(items, weights=liking)[0]
    favourites = sum(1 for w in liking if w > 0)
    if favourites < len(items) and rng.random() < 0.5:
        return rng.choice(items[favourites:])
    return drawn


def _purchases_csv(
    path: Path, n_members: int, n_purchases: int, rng: random.Random, end: datetime
) -> None:
    # Regulars are few and frequent: a skewed draw of who buys, like a real café.
    weights = [1.0 / (1 + i) ** 0.6 for i in range(n_members)]
    start = end - timedelta(days=365)
    buyers = rng.choices(range(n_members), weights=weights, k=n_purchases)
    stamps = sorted(
        start + timedelta(seconds=rng.randint(0, 365 * 86400 - 1)) for _ in range(n_purchases)
    )
    # Each customer has a taste: one to three favourite items they reorder, most lines of
    # their baskets, the rest what the café offers. Drawn from a generator of its own, seeded
    # by the demo's, so the other draws (who, when, basket sizes, the rooms) stay as they were.
    taste = random.Random(repr(rng.getstate()))  # noqa: S311 - demo data, reproducible by design
    tastes = [_taste(taste) for _ in range(n_members)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "member_external_id",
                "external_id",
                "occurred_at",
                "total",
                "sku",
                "category",
                "quantity",
                "unit_price",
            ]
        )
        for k, (who, at) in enumerate(zip(buyers, stamps, strict=True)):
            local_hour = rng.choice([7, 8, 8, 9, 10, 12, 13, 15, 17, 21])
            at = at.replace(hour=local_hour, minute=rng.randint(0, 59))
            if at > end:
                at = end - timedelta(minutes=rng.randint(1, 600))
            drawn = [rng.choice(MENU) for _ in range(rng.choice([1, 1, 2, 2, 3]))]
            basket = [_line_of(tastes[who], taste, item) for item in drawn]
            cents = sum(int(p.replace(".", "")) for _, _, p in basket)
            total = f"{cents // 100}.{cents % 100:02d}"
            for sku, cat, price in basket:
                w.writerow([f"C{who:06d}", f"R{k:07d}", at.isoformat(), total, sku, cat, 1, price])


def _enrol_one(
    info: programs_service.ProgramInfo, data: MemberCreate
) -> Callable[[AsyncSession], Awaitable[MemberRead]]:
    async def work(session: AsyncSession) -> MemberRead:
        return await members_service.enrol(session, info, data)

    return work


async def _enrol_all(db: Database, members: list[MemberCreate]) -> str:
    async with db.read() as session:
        info = await programs_service.get_info(session, PROGRAM)
    first = ""
    for i in range(0, len(members), 200):
        batch = members[i : i + 200]
        reads = await asyncio.gather(*[db.write(_enrol_one(info, m)) for m in batch])
        first = first or reads[0].id
    return first


async def _setup(url: str, members: list[MemberCreate]) -> dict[str, Any]:
    db = Database(url)
    try:
        created = False
        try:
            async with db.read() as session:
                await programs_service.get_info(session, PROGRAM)
        except ProgramNotFound:
            await db.write(lambda s: programs_service.create_program(s, _program_create()))
            created = True
        sample = ""
        if created:
            sample = await _enrol_all(db, members)
            await _install_rules(db)
        async with db.read() as session:
            info = await programs_service.get_info(session, PROGRAM)
        name = f"till-{clock.now().strftime('%Y%m%d%H%M%S%f')}"
        key = await db.write(
            lambda s: programs_service.create_api_key(
                s, info, ApiKeyCreate(name=name, scopes=["events:write", "members:read"])
            )
        )
        return {"created": created, "till_key": key.key, "sample": sample}
    finally:
        await db.dispose()


async def _install_rules(db: Database) -> None:
    """The demo rule set, once the rules room provides it."""
    try:
        from habitue.rules import demo_install
    except ImportError:
        return
    await demo_install.install(db, PROGRAM)


def demo_ladder() -> LadderWrite:
    """The café's ladder: qualifying spend over the calendar year, a month of grace."""
    return LadderWrite.model_validate(
        {
            "metric": "qualifying_spend",
            "window": {"kind": "calendar_year"},
            "grace_days": 31,
            "tiers": [
                {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
                {"code": "silver", "name": "Silver", "threshold": "150.00",
                 "multiplier": "1.25", "privileges": ["free_refill"]},
                {"code": "gold", "name": "Gold", "threshold": "400.00", "multiplier": "1.5",
                 "privileges": ["free_refill", "priority_queue", "presale"]},
            ],
        }
    )  # fmt: skip


async def _install_tiers(url: str) -> str:
    """Install the demo ladder, then count the imported year toward it (`tiers rebuild`: the
    import does not run the event hooks). Returns the tier mix, e.g. `bronze 1,500, …`."""
    from sqlalchemy import func, select

    from habitue.db import table_of
    from habitue.members.models import Member
    from habitue.tiers import service as tiers_service
    from habitue.tiers.jobs import run_rebuild

    db = Database(url)
    try:
        async with db.read() as session:
            info = await programs_service.get_info(session, PROGRAM)
        await db.write(lambda s: tiers_service.set_ladder(s, info, demo_ladder()))
        await run_rebuild(db, PROGRAM)
        members = table_of(Member)
        async with db.read() as session:
            rows = (
                await session.execute(
                    select(members.c.tier, func.count())
                    .where(members.c.program_id == info.id)
                    .group_by(members.c.tier)
                )
            ).all()
    finally:
        await db.dispose()
    order = {"bronze": 0, "silver": 1, "gold": 2}
    counts = sorted(((r[0] or "none", int(r[1])) for r in rows), key=lambda r: order.get(r[0], 9))
    return ", ".join(f"{code} {n:,}" for code, n in counts)


async def _install_rooms(
    url: str, people: list[MemberCreate], rng: random.Random, end: datetime
) -> RoomsLoaded:
    """The catalogue and redemptions, an offer, a campaign, the club, a partner, templates;
    then the members' RFM and lifetime-value scores."""
    db = Database(url)
    try:
        async with db.read() as session:
            info = await programs_service.get_info(session, PROGRAM)
        loaded = await load_rooms(db, info, people, rng, end=end)

        async def score(session: AsyncSession) -> None:
            # RFM segments and lifetime values for the dashboard and the segments.
            await analytics_service.refresh_scores_async(session, info)
            await segments_service.recompute_async(session, info)

        await db.write(score)
        return loaded
    finally:
        await db.dispose()


def load(url: str, *, members: int, purchases: int, seed: int) -> dict[str, Any]:
    """Migrate, create the café program and its data (once), and mint a till key."""
    upgrade(url)
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible by design
    people = _members(members, rng)
    setup = asyncio.run(_setup(url, people))
    summary = "already loaded"
    rooms: RoomsLoaded | None = None
    if setup["created"]:
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "purchases.csv"
            _purchases_csv(path, members, purchases, rng, end)
            engine = make_sync_engine(url)
            report = import_purchases(engine, PROGRAM, path)
            engine.dispose()
        mix = asyncio.run(_install_tiers(url))
        summary = (
            f"{members:,} members, {report.imported:,} purchases, {report.points:,} points; "
            f"tiers {mix}"
        )
        rooms = asyncio.run(_install_rooms(url, people, rng, end))
        asyncio.run(_restamp(url))
    return {
        "program": PROGRAM,
        "summary": summary,
        "rooms": rooms,
        "till_key": setup["till_key"],
        "sample_member": setup["sample"] or "(see GET /v1/programs/cafe/members)",
        "admin_user": asyncio.run(_demo_staff(url)),
    }


# --- honest history (issue 19, item 1) ---------------------------------------------------------


async def restamp(session: AsyncSession, program_id: int) -> None:
    """Date the imported year as it happened: each purchase recorded at its time, each member
    enrolled at their first purchase, with their cards; so a year of charts shows a year.
    The ledger needs nothing: the import books each purchase's transaction effective at the
    purchase's time (`effective_at`), which the charts and reports read, and keeps the time
    of the load as its booking time."""
    events, members, cards = table_of(Event), table_of(Member), table_of(Card)
    await session.execute(
        update(events)
        .where(events.c.program_id == program_id)
        .values(created_at=events.c.occurred_at)
    )
    bought = exists(select(events.c.id).where(events.c.member_id == members.c.id))
    first = (
        select(func.min(events.c.occurred_at))
        .where(events.c.member_id == members.c.id)
        .scalar_subquery()
    )
    await session.execute(
        update(members)
        .where(members.c.program_id == program_id, bought)
        .values(enrolled_at=first, updated_at=first)
    )
    await session.execute(
        update(cards)
        .where(
            cards.c.member_id.in_(select(members.c.id).where(members.c.program_id == program_id))
        )
        .values(
            created_at=select(members.c.enrolled_at)
            .where(members.c.id == cards.c.member_id)
            .scalar_subquery()
        )
    )


async def _restamp(url: str) -> None:
    db = Database(url)
    try:
        async with db.read() as session:
            info = await programs_service.get_info(session, PROGRAM)
        program_id = info.id
        await db.write(lambda s: restamp(s, program_id))
    finally:
        await db.dispose()


# --- web: a console user for the demo (issue 7) -----------------------------------------------


async def _demo_staff(url: str) -> str:
    """Create the owner `admin@example.com` with a fresh random password (once); how to sign in."""
    import secrets

    from habitue.errors import Conflict
    from habitue.web import service as web_service

    password = secrets.token_urlsafe(12)
    db = Database(url)
    try:
        await db.write(
            lambda s: web_service.create_staff(
                s, email="admin@example.com", role="owner", password=password
            )
        )
    except Conflict:
        return "admin@example.com (already created; password printed on the first run)"
    finally:
        await db.dispose()
    return f"admin@example.com / {password}  (http://127.0.0.1:8000/admin, portal: /app/{PROGRAM})"
