"""The demo café's rooms: a rewards catalogue and its redemptions, a personal offer, a campaign
with a hold-out, the paid club, a partner bakery and the trigger messages' templates.

Loaded once, after the members, the imported year and the tiers (`habitue.demo.load`), through
each room's own service functions, so that the console's and the portal's pages have something
to show. Who redeems, subscribes, activates or shops at the partner is drawn from the demo's
seeded generator; coupon codes and public ids stay random, as they are in production.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock, rooms
from habitue.analytics import campaigns as campaigns_service
from habitue.analytics import segments as segments_service
from habitue.clubs import service as clubs_service
from habitue.clubs.schemas import CancelRequest, PaymentRecord, PlanCreate, SubscriptionCreate
from habitue.db import Database, table_of
from habitue.events import service as events_service
from habitue.events.models import Event as EventRow
from habitue.events.pipeline import Pipeline
from habitue.events.schemas import EventCreate, LineIn, MemberSelector
from habitue.ledger.models import Account, Lot
from habitue.members import service as members_service
from habitue.members.models import Member
from habitue.members.schemas import MemberCreate
from habitue.messaging import templates as templates_service
from habitue.messaging.schemas import TemplateWrite
from habitue.partners import service as partners_service
from habitue.partners.schemas import PartnerCreate
from habitue.programs.service import ProgramInfo
from habitue.rewards import catalogue, coupons, offers, redeem
from habitue.rewards.schemas import (
    BasketIn,
    BasketLineIn,
    OfferCreate,
    RedemptionCreate,
    RedemptionRead,
    RewardCreate,
)

PLAN = "club-plus"
PLAN_PRICE = "4.90"
PARTNER = "fournil"
SEGMENT = "canal-email"
OFFER = "canal-pastry-week"
CAMPAIGN = "coffee-newsletter"
MUG_STOCK = 40
STAFF = "staff:admin@example.com"
CHUNK = 50
"""Redemptions, subscriptions and events per unit of work (or per gathered batch)."""

BAKERY: list[tuple[str, str, str]] = [
    ("baguette", "bread", "1.30"),
    ("pain-de-campagne", "bread", "4.20"),
    ("croissant", "viennoiserie", "1.40"),
    ("chausson-aux-pommes", "viennoiserie", "2.10"),
    ("eclair", "patisserie", "2.80"),
    ("tarte-aux-fraises", "patisserie", "3.90"),
]
TILL_BASKETS: dict[str, list[tuple[str, str]]] = {
    "voucher-5": [("latte", "3.80"), ("sandwich", "6.90")],
    "free-cappuccino": [("cappuccino", "3.40"), ("croissant", "1.60")],
    "basket-15": [("salad", "8.50"), ("latte", "3.80"), ("cookie", "2.10")],
}
"""What a member buys when a coupon of each kind is used at the till (above its minimum)."""
REWARD_WEIGHTS = {"voucher-5": 35, "free-cappuccino": 30, "basket-15": 15, "food-bank": 12,
                  "mug": 8}  # fmt: skip


def _texts(en: tuple[str, str], fr: tuple[str, str], da: tuple[str, str]) -> dict[str, Any]:
    return {lang: {"name": n, "description": d} for lang, (n, d) in zip(
        ("en", "fr", "da"), (en, fr, da), strict=True)}  # fmt: skip


def demo_rewards() -> list[RewardCreate]:
    """The café's catalogue: a voucher, a free product, a capped percentage off a basket, a
    gift sent home (in stock) and a donation."""
    specs: list[dict[str, Any]] = [
        {"code": "voucher-5", "kind": "voucher", "cost_points": 100, "value": "5.00",
         "coupon_days": 60, "texts": _texts(
             ("€5 voucher", "€5 off your next visit."),
             ("Bon de 5 €", "5 € de remise à votre prochaine visite."),
             ("Værdibevis på 5 €", "5 € rabat ved dit næste besøg."))},
        {"code": "free-cappuccino", "kind": "free_product", "cost_points": 70,
         "sku": "cappuccino", "coupon_days": 30, "texts": _texts(
             ("A cappuccino on us", "One cappuccino, any size."),
             ("Un cappuccino offert", "Un cappuccino, toutes tailles."),
             ("En cappuccino på os", "Én cappuccino, alle størrelser."))},
        {"code": "basket-15", "kind": "discount", "cost_points": 90, "percent": "15",
         "cap": "4.00", "min_basket": "12.00", "coupon_days": 45, "texts": _texts(
             ("15 % off your basket", "On a basket of €12 or more, up to €4 off."),
             ("15 % sur votre panier", "Dès 12 € d'achats, jusqu'à 4 € de remise."),
             ("15 % på din kurv", "Ved køb for mindst 12 €, op til 4 € i rabat."))},
        {"code": "mug", "kind": "product", "cost_points": 350, "stock": MUG_STOCK,
         "per_member_limit": 1, "texts": _texts(
             ("Habitué stoneware mug", "Sent to your home; one per member."),
             ("Mug Habitué en grès", "Livré chez vous ; un par membre."),
             ("Habitué-krus i stentøj", "Sendes hjem til dig; ét pr. medlem."))},
        {"code": "food-bank", "kind": "donation", "cost_points": 50,
         "cause": "Neighbourhood food bank", "texts": _texts(
             ("Give a meal", "50 beans become a meal at the neighbourhood food bank."),
             ("Offrir un repas", "50 beans deviennent un repas à la banque alimentaire."),
             ("Giv et måltid", "50 beans bliver til et måltid i kvarterets fødevarebank."))},
    ]  # fmt: skip
    return [RewardCreate.model_validate(spec) for spec in specs]


def demo_templates() -> dict[tuple[str, str], TemplateWrite]:
    """The welcome and tier-up emails in English, French and Danish."""
    texts = {
        ("welcome", "en"): (
            "Welcome to {{ program_name }}, {{ first_name }}!",
            "<p>Hello {{ first_name }},</p><p>Your card {{ card_number }} is ready: every euro "
            "you spend earns {{ points_name }}. You have {{ points }} {{ points_name }} so far."
            "</p><p>See you soon at the counter!</p>",
        ),
        ("welcome", "fr"): (
            "Bienvenue chez {{ program_name }}, {{ first_name }} !",
            "<p>Bonjour {{ first_name }},</p><p>Votre carte {{ card_number }} est prête : "
            "chaque euro dépensé vous rapporte des {{ points_name }}. Vous en avez déjà "
            "{{ points }}.</p><p>À très vite au comptoir !</p>",
        ),
        ("welcome", "da"): (
            "Velkommen til {{ program_name }}, {{ first_name }}!",
            "<p>Hej {{ first_name }},</p><p>Dit kort {{ card_number }} er klar: hver euro, du "
            "bruger, giver {{ points_name }}. Du har allerede {{ points }}.</p>"
            "<p>Vi ses ved disken!</p>",
        ),
        ("tier_up", "en"): (
            "You are now {{ tier }}, {{ first_name }}",
            "<p>Congratulations, {{ first_name }}!</p><p>Your visits have taken you to "
            "{{ tier }} at {{ program_name }}: every purchase now earns more {{ points_name }}."
            "</p><p>Balance: {{ points }} {{ points_name }}.</p>",
        ),
        ("tier_up", "fr"): (
            "Vous êtes désormais {{ tier }}, {{ first_name }}",
            "<p>Félicitations, {{ first_name }} !</p><p>Vos visites vous ont fait passer au "
            "niveau {{ tier }} chez {{ program_name }} : chaque achat vous rapporte désormais "
            "plus de {{ points_name }}.</p><p>Solde : {{ points }} {{ points_name }}.</p>",
        ),
        ("tier_up", "da"): (
            "Du er nu {{ tier }}, {{ first_name }}",
            "<p>Tillykke, {{ first_name }}!</p><p>Dine besøg har bragt dig op på {{ tier }} hos "
            "{{ program_name }}: hvert køb giver nu flere {{ points_name }}.</p>"
            "<p>Saldo: {{ points }} {{ points_name }}.</p>",
        ),
    }
    return {key: TemplateWrite(subject=s, body=b) for key, (s, b) in texts.items()}


@dataclass
class RoomsLoaded:
    """What was loaded, for the demo's summary and its test."""

    templates: int = 0
    subscriptions: Counter[str] = field(default_factory=Counter)
    ending: int = 0
    """Subscriptions canceled at their period's end."""
    partner_purchases: int = 0
    partner_spends: int = 0
    partner_refunds: int = 0
    rewards: int = 0
    redemptions: Counter[str] = field(default_factory=Counter)
    """Redemptions by reward code."""
    coupons_used: int = 0
    shipped: int = 0
    delivered: int = 0
    canceled: int = 0
    offer_targets: int = 0
    offer_clipped: int = 0
    offer_used: int = 0
    campaign_treatment: int = 0
    campaign_holdout: int = 0

    def lines(self) -> list[str]:
        subs = self.subscriptions
        return [
            f"catalogue: {self.rewards} rewards, {sum(self.redemptions.values()):,} redemptions "
            f"({self.coupons_used:,} coupons used at the till; gifts {self.shipped} shipped, "
            f"{self.delivered} delivered; {self.canceled} canceled); offer {OFFER}: "
            f"{self.offer_targets:,} members, {self.offer_clipped:,} activated, "
            f"{self.offer_used:,} used",
            f"campaign {CAMPAIGN}: {self.campaign_treatment:,} treated, "
            f"{self.campaign_holdout:,} held out; club {PLAN}: {subs['active']} active "
            f"({self.ending} ending), {subs['trialing']} trialing, {subs['canceled']} canceled; "
            f"partner {PARTNER}: {self.partner_purchases:,} purchases, {self.partner_refunds} "
            f"refunds; {self.templates} message templates",
        ]


async def load_rooms(
    db: Database,
    program: ProgramInfo,
    people: list[MemberCreate],
    rng: random.Random,
    *,
    end: datetime,
) -> RoomsLoaded:
    """Load every room's demo data; `end` is the last moment of the imported year."""
    pipeline = rooms.build_pipeline()  # the partner's purchases go through the event path
    loaded = RoomsLoaded()
    ids = [m.external_id for m in people if m.external_id is not None]
    with clock.at(end - timedelta(days=365)):  # the café wrote its messages as it opened
        await _templates(db, program, loaded)
    await _club(db, program, rng, ids, loaded)
    balances = await _balances(db, program)
    canal = [
        m.external_id for m in people if m.external_id and m.attributes.get("store") == "Canal"
    ]
    await _partner(db, pipeline, program, rng, canal or ids, balances, end, loaded)
    await _rewards(db, program, rng, balances, len(ids), end, loaded)
    await _offer(db, program, rng, loaded)
    await _campaign(db, program, end, loaded)
    return loaded


async def _templates(db: Database, program: ProgramInfo, loaded: RoomsLoaded) -> None:
    templates = demo_templates()

    async def work(session: AsyncSession) -> None:
        for (code, locale), data in templates.items():
            await templates_service.put_template(session, program, code, "email", locale, data)

    await db.write(work)
    loaded.templates = len(templates)


async def _balances(db: Database, program: ProgramInfo) -> dict[str, int]:
    """Available points by external id, in one read of the ledger's member accounts, less the
    points of lots past their expiry that the expiry job has not written down yet (a
    redemption cannot spend them: `ledger.lots.expired_points`)."""
    accounts, members, lots = table_of(Account), table_of(Member), table_of(Lot)
    expired = (
        select(lots.c.account_id, func.sum(lots.c.remaining).label("points"))
        .where(
            lots.c.program_id == program.id,
            lots.c.remaining > 0,
            lots.c.expires_at <= clock.now(),
        )
        .group_by(lots.c.account_id)
        .subquery()
    )
    query = (
        select(members.c.external_id, accounts.c.balance - func.coalesce(expired.c.points, 0))
        .join(accounts, accounts.c.member_id == members.c.id)
        .outerjoin(expired, expired.c.account_id == accounts.c.id)
        .where(members.c.program_id == program.id, accounts.c.kind == "available")
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return {external_id: int(balance) for external_id, balance in rows if external_id}


# --- the paid club ------------------------------------------------------------------------


async def _club(
    db: Database, program: ProgramInfo, rng: random.Random, ids: list[str], loaded: RoomsLoaded
) -> None:
    """One monthly plan with a trial; a few dozen members join, most pay at the counter, one
    leaves at the period's end and one during the trial."""
    plan = PlanCreate(
        code=PLAN, name="Club Habitué+", price=PLAN_PRICE, currency=program.currency,
        period="monthly", trial_days=14, grace_days=5, multiplier="2",
        privileges=["free_refill", "members_evening"], voucher_points=50,
    )  # fmt: skip
    joining = rng.sample(ids, min(len(ids), max(6, len(ids) // 50)))
    paying = set(rng.sample(joining, round(len(joining) * 0.6)))

    # Units of work may run again (a retried commit): they count nothing outside themselves.
    async def work(session: AsyncSession) -> tuple[Counter[str], int]:
        await clubs_service.create_plan(session, program, plan)
        refs = await members_service.refs_by_external_id(session, program, joining)
        paid: list[str] = []
        trial: list[str] = []
        for external_id in joining:
            sub = await clubs_service.subscribe(
                session, program, refs[external_id], SubscriptionCreate(plan=PLAN)
            )
            if external_id in paying:
                record = PaymentRecord(amount=PLAN_PRICE, reference=f"counter-{len(paid):04d}")
                await clubs_service.record_payment(session, program, sub.id, record)
                paid.append(sub.id)
            else:
                trial.append(sub.id)
        if paid:
            await clubs_service.cancel(session, program, paid[0], CancelRequest(at_period_end=True))
        if trial:
            await clubs_service.cancel(session, program, trial[-1], CancelRequest())
        states: Counter[str] = Counter()
        for sub_id in paid + trial:
            states[(await clubs_service.get_subscription(session, program, sub_id)).status] += 1
        return states, min(len(paid), 1)

    loaded.subscriptions, loaded.ending = await db.write(work)


# --- the partner bakery -------------------------------------------------------------------


async def _partner(
    db: Database,
    pipeline: Pipeline,
    program: ProgramInfo,
    rng: random.Random,
    customers: list[str],
    balances: dict[str, int],
    end: datetime,
    loaded: RoomsLoaded,
) -> None:
    """The bakery next door and its purchases over the last 75 days, recorded through the
    event path with its code as `source` (the import runs no hooks): some paid in part with
    points, two refunded today, so that its monthly statements have every kind of figure."""
    partner = PartnerCreate(
        code=PARTNER, name="Le Fournil du Canal", funding_rate="0.80", reimbursement_rate="4.50"
    )
    await db.write(lambda s: partners_service.create_partner(s, program, partner))
    bodies: list[EventCreate] = []
    for k in range(max(12, len(balances) // 16)):
        who = rng.choice(customers)
        at = end - timedelta(days=75 * rng.random())
        at = at.replace(hour=rng.randint(6, 17), minute=rng.randint(0, 59), microsecond=0)
        if at > end:
            at = end - timedelta(minutes=rng.randint(1, 600))
        # Every sixth basket (two items or more, 2.60 at least) is paid in part with points.
        paying = k % 6 == 0
        basket = [rng.choice(BAKERY) for _ in range(rng.choice([2, 3] if paying else [1, 1, 2]))]
        cents = sum(int(price.replace(".", "")) for _, _, price in basket)
        spend = (20 if cents < 400 else 40) if paying else 0  # 1.00 or 2.00 off
        if balances.get(who, 0) < spend:
            spend = 0
        balances[who] = balances.get(who, 0) - spend
        bodies.append(
            EventCreate(
                type="purchase",
                member=MemberSelector(external_id=who),
                external_id=f"F{k:05d}",
                source=PARTNER,
                occurred_at=at,
                total=f"{cents // 100}.{cents % 100:02d}",
                lines=[
                    LineIn(sku=sku, category=cat, unit_price=price) for sku, cat, price in basket
                ],
                spend_points=spend,
            )
        )
    for i in range(0, len(bodies), CHUNK):
        batch = bodies[i : i + CHUNK]
        await asyncio.gather(
            *[events_service.record_event(db, pipeline, program, b) for b in batch]
        )
    loaded.partner_purchases = len(bodies)
    loaded.partner_spends = sum(1 for b in bodies if b.spend_points)
    # A purchase paid with points refunded whole, and a basket refunded one line.
    refunds: list[EventCreate] = []
    paid_with_points = next((b for b in bodies if b.spend_points), None)
    if paid_with_points is not None:
        refunds.append(_refund(paid_with_points, paid_with_points.total or "0"))
    several = next((b for b in reversed(bodies) if len(b.lines) > 1 and not b.spend_points), None)
    if several is not None:
        refunds.append(_refund(several, several.lines[0].unit_price))
    for body in refunds:
        await events_service.record_event(db, pipeline, program, body)
    loaded.partner_refunds = len(refunds)


def _refund(purchase: EventCreate, total: str) -> EventCreate:
    return EventCreate(
        type="refund",
        external_id=f"{purchase.external_id}-r",
        source=purchase.source,
        refers_to=purchase.external_id,
        total=total,
    )


# --- the catalogue and its redemptions ----------------------------------------------------


def plan_redemptions(
    rng: random.Random, balances: dict[str, int], costs: dict[str, int], target: int
) -> list[tuple[str, str]]:
    """(external id, reward) pairs that members can afford, `balances` spent as they go.

    The richest members take three gifts and one of each other reward first, so that every
    state has an example; then members in a seeded order take one to three rewards each.
    """
    plan: list[tuple[str, str]] = []
    gift_owners: set[str] = set()

    def take(external_id: str, code: str) -> None:
        balances[external_id] -= costs[code]
        plan.append((external_id, code))
        if code == "mug":
            gift_owners.add(external_id)

    richest = sorted(balances, key=lambda e: (-balances[e], e))
    first = ["mug", "mug", "mug", "voucher-5", "free-cappuccino", "basket-15", "food-bank"]
    for external_id, code in zip(richest, first, strict=False):
        if balances[external_id] >= costs[code]:
            take(external_id, code)
    order = sorted(balances)
    rng.shuffle(order)
    for external_id in order:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if len(plan) >= target:
                return plan
            may_gift = len(gift_owners) < MUG_STOCK and external_id not in gift_owners
            affordable = [
                c
                for c in REWARD_WEIGHTS
                if costs[c] <= balances[external_id] and (c != "mug" or may_gift)
            ]
            if not affordable:
                break
            take(external_id, rng.choices(affordable, [REWARD_WEIGHTS[c] for c in affordable])[0])
    return plan


async def _earning(db: Database, program: ProgramInfo) -> dict[str, list[tuple[datetime, int]]]:
    """Each member's events in time order (UTC), by external id: when, and the points they
    added to the balance (earned less spent)."""
    events, members = table_of(EventRow), table_of(Member)
    query = (
        select(
            members.c.external_id,
            events.c.occurred_at,
            events.c.points - events.c.points_spent - events.c.points_taken_back,
        )
        .join(events, events.c.member_id == members.c.id)
        .where(members.c.program_id == program.id)
        .order_by(events.c.occurred_at, events.c.id)
    )
    out: dict[str, list[tuple[datetime, int]]] = {}
    async with db.read() as session:
        for external_id, at, points in (await session.execute(query)).all():
            if external_id:
                out.setdefault(external_id, []).append((clock.as_utc(at), int(points)))
    return out


def _affordable_from(history: list[tuple[datetime, int]], needed: int, end: datetime) -> datetime:
    """The first moment the member's points reached `needed` (`end` if they never did)."""
    held = 0
    for at, points in history:
        held += points
        if held >= needed:
            return at
    return end


def _after(
    times: random.Random, start: datetime, end: datetime, days: tuple[float, float]
) -> datetime:
    """A moment `days` (a range) after `start`, never after `end`."""
    return min(end, start + timedelta(days=times.uniform(*days)))


async def _rewards(
    db: Database,
    program: ProgramInfo,
    rng: random.Random,
    balances: dict[str, int],
    members: int,
    end: datetime,
    loaded: RoomsLoaded,
) -> None:
    """The catalogue, a few hundred redemptions, coupons used at the till, gifts sent.

    Each is booked at its simulated moment (`clock.at`), not at the load's: a member redeems
    within a fortnight of first holding enough points for it, uses a coupon at the till half
    a day to ten days later; a gift is shipped one to three days after it was ordered and
    delivered two to five days after that; all before `end`. So the dashboard's redeemed
    points spread over the year as the members' points build up. The catalogue and the
    message templates date from the start of the simulated year."""
    rewards = demo_rewards()

    async def create(session: AsyncSession) -> None:
        for reward in rewards:
            await catalogue.create(session, program, reward)

    start = min(end - timedelta(days=365), clock.now() - timedelta(days=365))
    with clock.at(start):
        await db.write(create)
    loaded.rewards = len(rewards)
    costs = {r.code: r.cost_points for r in rewards}
    plan = plan_redemptions(rng, balances, costs, max(7, members * 3 // 20))
    # The moments have a generator of their own: the demo's other draws stay as they were.
    times = random.Random(len(plan))  # noqa: S311 - demo data, reproducible by design
    # A member redeems within a fortnight of first holding enough points for it (and for
    # what they redeemed before): the redemptions spread over the year as the points build up.
    history = await _earning(db, program)
    spent: Counter[str] = Counter()
    moments = []
    for external_id, code in plan:
        spent[external_id] += costs[code]
        ready = _affordable_from(history.get(external_id, []), spent[external_id], end)
        moments.append(_after(times, ready, end, (0, 14)))
    booked: dict[int, tuple[str, RedemptionRead]] = {}
    for i in sorted(range(len(plan)), key=lambda i: moments[i]):
        with clock.at(moments[i]):
            booked[i] = (await db.write(_redeem(program, [plan[i]])))[0]
    done = [booked[i] for i in range(len(plan))]
    at = {r.id: moments[i] for i, (_, r) in enumerate(done)}
    loaded.redemptions.update(r.reward for _, r in done)

    # The last coupon is given back at the counter; of the others, the first of each kind and
    # about two in five are used at the till. A third of the gifts are delivered, a third sent.
    with_coupon = [r for _, r in done if r.coupon is not None]
    given_back = with_coupon.pop() if len(with_coupon) > len(TILL_BASKETS) else None
    seen: set[str] = set()
    used: list[RedemptionRead] = []
    for r in with_coupon:
        if r.reward not in seen or rng.random() < 0.4:
            used.append(r)
        seen.add(r.reward)
    gifts = [r.id for _, r in done if r.kind == "product"]
    delivered, shipped = gifts[0::3], gifts[0::3] + gifts[1::3]

    Step = Callable[[AsyncSession], Awaitable[None]]

    def use(code: str, basket: BasketIn) -> Step:
        async def step(session: AsyncSession) -> None:
            await coupons.redeem(session, program, code, basket, actor="till")

        return step

    def fulfil(gift: str, status: str) -> Step:
        async def step(session: AsyncSession) -> None:
            await redeem.fulfil(session, program, gift, status)

        return step

    def cancel(redemption: str) -> Step:
        async def step(session: AsyncSession) -> None:
            await redeem.cancel(session, program, redemption, actor=STAFF)

        return step

    steps: list[tuple[datetime, Step]] = []
    for n, r in enumerate(used):
        assert r.coupon is not None
        basket = BasketIn(
            total=_total(TILL_BASKETS[r.reward]),
            lines=[BasketLineIn(sku=s, unit_price=p) for s, p in TILL_BASKETS[r.reward]],
            member=r.member_id,
            reference=f"till-{n:05d}",
        )
        steps.append((_after(times, at[r.id], end, (0.5, 10)), use(r.coupon.code, basket)))
    for public_id in shipped:
        sent = _after(times, at[public_id], end, (1, 3))
        steps.append((sent, fulfil(public_id, "shipped")))
        if public_id in delivered:
            steps.append((_after(times, sent, end, (2, 5)), fulfil(public_id, "delivered")))
    if given_back is not None:  # its coupon dies and the points return
        steps.append((_after(times, at[given_back.id], end, (0.5, 3)), cancel(given_back.id)))
    for moment, step in sorted(steps, key=lambda item: item[0]):
        with clock.at(moment):
            await db.write(step)
    loaded.coupons_used = len(used)
    loaded.shipped = len(shipped) - len(delivered)
    loaded.delivered = len(delivered)
    loaded.canceled = 0 if given_back is None else 1


def _redeem(
    program: ProgramInfo, chunk: list[tuple[str, str]]
) -> Callable[[AsyncSession], Awaitable[list[tuple[str, RedemptionRead]]]]:
    """A unit of work redeeming a chunk of the plan, as members do from the portal."""

    async def work(session: AsyncSession) -> list[tuple[str, RedemptionRead]]:
        refs = await members_service.refs_by_external_id(session, program, [e for e, _ in chunk])
        out = []
        for external_id, code in chunk:
            data = RedemptionCreate(reward=code)
            read = await redeem.redeem(session, program, refs[external_id], data, actor="member")
            out.append((external_id, read))
        return out

    return work


def _total(lines: list[tuple[str, str]]) -> str:
    cents = sum(int(price.replace(".", "")) for _, price in lines)
    return f"{cents // 100}.{cents % 100:02d}"


# --- a personal offer to a dynamic segment ------------------------------------------------


async def _offer(
    db: Database, program: ProgramInfo, rng: random.Random, loaded: RoomsLoaded
) -> None:
    """Members of the Canal shop who accept email get 20 % off for four weeks; about two in
    five activate it, and a third of those have used it."""
    now = clock.now()
    offer = OfferCreate.model_validate(
        {"code": OFFER, "percent": "20", "cap": "3.00", "min_basket": "5.00",
         "starts_at": now - timedelta(days=3), "ends_at": now + timedelta(days=25),
         "segment": SEGMENT, "texts": {
             "en": {"name": "Pastry week at Canal",
                    "description": "20 % off your basket from €5, up to €3."},
             "fr": {"name": "Semaine des viennoiseries à Canal",
                    "description": "20 % de remise dès 5 € d'achats, jusqu'à 3 €."},
             "da": {"name": "Wienerbrødsuge på Canal",
                    "description": "20 % rabat ved køb fra 5 €, op til 3 €."}}}
    )  # fmt: skip
    basket = BasketIn(
        total="7.80",
        lines=[BasketLineIn(sku="latte", unit_price="3.80"),
               BasketLineIn(sku="pain-au-chocolat", unit_price="1.80"),
               BasketLineIn(sku="cookie", unit_price="2.10")],
    )  # fmt: skip

    seed = rng.getrandbits(64)  # who activates: the same draws if the unit runs again

    async def work(session: AsyncSession) -> tuple[int, int, int]:
        draw = random.Random(seed)  # noqa: S311 - demo data
        await segments_service.create_segment(
            session, program, code=SEGMENT, name="Canal shop, email accepted",
            condition='member.attributes.store == "Canal" && member.consents.email',
        )  # fmt: skip
        created = await offers.create(session, program, offer)
        targets = await segments_service.targetable_members(session, program, SEGMENT)
        public_ids = await segments_service.member_public_ids(session, targets)
        clipping = [p for p in public_ids if draw.random() < 0.4] or public_ids[:1]
        for n, public_id in enumerate(clipping):
            member = await members_service.resolve(session, program, member_id=public_id)
            await offers.clip(session, program, member, OFFER)
            if n % 3 == 0:
                await offers.use(session, program, member, OFFER, basket)
        return created.members or 0, len(clipping), len(clipping[::3])

    loaded.offer_targets, loaded.offer_clipped, loaded.offer_used = await db.write(work)


# --- a campaign measured against a hold-out -----------------------------------------------


async def _campaign(db: Database, program: ProgramInfo, end: datetime, loaded: RoomsLoaded) -> None:
    """A newsletter campaign started eight weeks before the end of the imported year, with a
    fifth of the members held out; it runs two more weeks, so its report reads those eight
    weeks of purchases for every member (the report counts members enrolled before its end)."""
    starts = (end - timedelta(days=56)).replace(hour=0, minute=0, second=0)

    async def work(session: AsyncSession) -> campaigns_service.CampaignInfo:
        return await campaigns_service.create_campaign(
            session, program, code=CAMPAIGN, kind="newsletter", holdout_share=0.2,
            starts_at=starts, ends_at=starts + timedelta(days=70),
        )  # fmt: skip

    created = await db.write(work)
    loaded.campaign_treatment = created.treatment
    loaded.campaign_holdout = created.holdout
