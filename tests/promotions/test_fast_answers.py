"""The till's fast paths against their references.

`basket.quote_event` (the purchase a priced basket would record, computed from the net
amounts) against `prepare(purchase_body(...))`, on random baskets; the answers of
`POST /baskets/price` and `/baskets/confirm` through it against those made through the event
body (`quote_event` patched to decline), on seeded random baskets with rules that earn,
promotions, codes, taxes and points, and what the confirms recorded (both databases).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from habitue.db import Database, table_of
from habitue.events.models import Event, EventLine
from habitue.events.prepare import prepare
from habitue.events.schemas import EffectRead
from habitue.members.refs import MemberAccounts, MemberRef
from habitue.programs.service import ProgramInfo
from habitue.promotions import till
from habitue.promotions.basket import (
    Priced,
    answer_json,
    purchase_body,
    quote_event,
    read_answer,
)
from habitue.promotions.pricing import (
    BasketLine,
    CodeInput,
    Deal,
    EffectType,
    PointsTerms,
    Source,
    price,
)
from habitue.rules.types import MemberSnapshot
from tests.conftest import create_program, enrol
from tests.promotions.helpers import confirm, food_rule_and_ten_code, promo
from tests.rewards.conftest import give

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SNAPSHOT = MemberSnapshot("m1", "active", NOW - timedelta(days=400), tier="gold")
REF = MemberRef(7, "m1", "active", "gold", NOW, {}, MemberAccounts(7, 1, 2))


def _program(exponent: int, rate: str, step: int) -> ProgramInfo:
    return ProgramInfo(
        1, "p", "p", "EUR", exponent, "UTC", "pts", Decimal(1), "down", 0, "never", None,
        False, Decimal(rate), step, "", {},
    )  # fmt: skip


_QTY = st.one_of(
    st.integers(1, 7).map(Decimal),
    st.sampled_from(["0.375", "1.5", "2.25", "0.001"]).map(Decimal),
)
_LINE = st.tuples(
    st.sampled_from(["A", "B", ""]),
    st.sampled_from(["food", "home", ""]),
    _QTY,
    st.integers(0, 50_000),
    st.sampled_from(["0", "0.055", "0.2", "0.15"]).map(Decimal),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_LINE, min_size=1, max_size=6),
    percent=st.sampled_from([None, "3", "10", "33.3", "100"]),
    amount=st.sampled_from([None, 1, 137, 10_000]),
    points=st.integers(0, 3000),
    exponent=st.sampled_from([0, 2, 3]),
    rate=st.sampled_from(["0.01", "0.05", "1", "0.003"]),
    step=st.sampled_from([1, 10]),
)
def test_quote_event_is_what_prepare_makes_of_the_purchase_body(
    lines: list[tuple[str, str, Decimal, int, Decimal]],
    percent: str | None,
    amount: int | None,
    points: int,
    exponent: int,
    rate: str,
    step: int,
) -> None:
    program = _program(exponent, rate, step)
    basket = [
        BasketLine(sku, cat, q, unit, int((q * unit).to_integral_value()), tax)
        for sku, cat, q, unit, tax in lines
    ]
    deals = []
    if percent is not None:
        deals.append(
            Deal(Source.PROMOTION, "pc", EffectType.LINES_PERCENT, percent=Decimal(percent))
        )
    codes = []
    if amount is not None:
        off = Deal(Source.PROMOTION, "am", EffectType.ORDER_AMOUNT, amount_minor=amount)
        codes.append(CodeInput("AM", off))
    pricing = price(
        basket,
        member=SNAPSHOT,
        promotions=deals,
        codes=codes,
        points=points,
        points_terms=PointsTerms(10**6, Decimal(rate), step, exponent),
        now=NOW,
        timezone="UTC",
        exponent=exponent,
    )
    priced = Priced(pricing, REF, NOW)
    external_id = "price" if points % 2 else f"basket-{points}"
    fast = quote_event(program, priced, external_id)
    try:
        body = purchase_body(program, priced, external_id, "default")
        reference = prepare(program, body, now=NOW)
    except Exception:
        assert fast is None  # the reference refuses it: the route quotes through it and fails
        return
    if fast is None:  # the fast path declined (a bound of the body): nothing to compare
        return
    assert fast == reference.event
    assert fast.discount_minor == reference.discount_minor


_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
_EFFECT = st.builds(
    EffectRead,
    kind=st.sampled_from(["earn", "benefit", "coupon"]),
    rule=st.one_of(st.none(), _TEXT),
    points=st.integers(-(10**9), 10**9),
    detail=st.dictionaries(_TEXT, st.one_of(st.integers(), _TEXT), max_size=2),
    benefit=st.one_of(st.none(), _TEXT),
    until=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
    coupon=st.one_of(st.none(), _TEXT),
)


@settings(max_examples=200, deadline=None)
@given(
    skus=st.lists(_TEXT, min_size=1, max_size=5),
    units=st.lists(st.integers(0, 10**9), min_size=5, max_size=5),
    percent=st.sampled_from([None, "10", "100"]),
    typed=st.lists(st.sampled_from(["AM", "NOPE", "AM"]), max_size=3),
    points=st.integers(-5, 3000),
    member=st.booleans(),
    effects=st.lists(_EFFECT, max_size=3),
    earned=st.integers(0, 10**9),
    exponent=st.sampled_from([0, 2, 3]),
    shuffle=st.randoms(),
)
def test_answer_json_is_the_answer_model_dumped(
    skus: list[str],
    units: list[int],
    percent: str | None,
    typed: list[str],
    points: int,
    member: bool,
    effects: list[EffectRead],
    earned: int,
    exponent: int,
    shuffle: random.Random,
) -> None:
    basket = [
        BasketLine(sku, sku[:3], Decimal(1), u, u) for sku, u in zip(skus, units, strict=False)
    ]
    deals = []
    if percent is not None:
        deals.append(
            Deal(Source.PROMOTION, "p%", EffectType.LINES_PERCENT, percent=Decimal(percent))
        )
    off = Deal(Source.PROMOTION, "am", EffectType.ORDER_AMOUNT, amount_minor=150)
    codes = [CodeInput(c, off if c == "AM" else None, refusal="unknown") for c in typed]
    pricing = price(
        basket,
        member=SNAPSHOT if member else None,
        promotions=deals,
        codes=codes,
        points=points,
        points_terms=PointsTerms(2000, Decimal("0.01"), 1, exponent) if member else None,
        now=NOW,
        timezone="UTC",
        exponent=exponent,
    )
    pricing = replace(pricing, errors=tuple(skus[:2]))
    priced = Priced(pricing, REF if member else None, NOW)
    program = _program(exponent, "0.01", 1)
    index = {i: i + shuffle.randint(0, 3) for i in range(len(basket))}
    args: dict[str, Any] = {"index": index, "earned": earned, "effects": effects}
    fast = answer_json(program, priced, **args)
    assert fast == read_answer(program, priced, **args).model_dump_json().encode()


def test_quote_event_declines_what_prepare_refuses() -> None:
    program = _program(2, "0.01", 10)
    basket = [BasketLine("A", "", Decimal(1), 1000, 1000)]
    base = price(
        basket, member=SNAPSHOT, promotions=[], codes=[], points=0, points_terms=None,
        now=NOW, timezone="UTC", exponent=2,
    )  # fmt: skip
    # Points that are not a multiple of the program's step, or worth more than the basket:
    # `prepare` refuses them; the fast path declines, and the route goes through `prepare`.
    for points in (15, 200_000):
        priced = Priced(replace(base, points=points), REF, NOW)
        assert quote_event(program, priced) is None
        with pytest.raises(Exception, match="spend_points"):
            prepare(program, purchase_body(program, priced, "price", "default"), now=NOW)


def _basket(rng: random.Random, member: str | None, points: int) -> dict[str, Any]:
    lines = []
    for _ in range(rng.randint(1, 5)):
        line: dict[str, Any] = {
            "sku": rng.choice(["BREAD", "MUG", "SOAP", "TEA"]),
            "category": rng.choice(["food", "home", "food"]),
            "quantity": rng.choice([1, 2, 3, 4, "0.375", "1.25"]),
            "unit_price": f"{rng.randint(0, 9000) / 100:.2f}",
        }
        tax = rng.choice([None, "0.055", "0.2"])
        if tax is not None:
            line["tax_rate"] = tax
            line["tax_included"] = rng.random() < 0.7
        lines.append(line)
    body: dict[str, Any] = {
        "lines": lines,
        "codes": rng.sample(["TEN", "SAVE2"], rng.randint(0, 2)),
    }
    if member is not None:
        body["member"] = {"id": member}
    if points:
        body["points"] = points
    return body


async def _setup(client: httpx.AsyncClient, earn_on: str) -> tuple[str, list[str]]:
    program = await create_program(client, earn_on=earn_on, redeem_step=10)
    await food_rule_and_ten_code(client, program)
    r = await client.post(
        f"/v1/programs/{program}/rules",
        json={"code": "big", "event_type": "purchase",
              "effect": {"kind": "fixed", "points": 25}, "condition": "event.total >= 50.0"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    await promo(
        client, program, code="mugs", effect={"type": "lines_percent", "percent": "15"},
        line_condition="line.sku == 'MUG'",
    )  # fmt: skip
    await promo(
        client, program, code="save2", trigger="code", promo_code="SAVE2",
        effect={"type": "order_amount", "amount": "2.00"},
    )  # fmt: skip
    members = [(await enrol(client, program))["id"] for _ in range(3)]
    await give(client, program, members[0], 50_000)
    return program, members


def _reference_json(*args: Any, **kw: Any) -> bytes:
    return read_answer(*args, **kw).model_dump_json().encode()


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Counts the baskets `quote_event` took (not None)."""
    quoted: list[bool] = []

    def counted(*args: Any) -> Any:
        event = quote_event(*args)
        quoted.append(event is not None)
        return event

    monkeypatch.setattr(till, "quote_event", counted)
    return quoted


@pytest.mark.parametrize("earn_on", ["tax_included", "tax_excluded"])
async def test_price_answers_through_the_fast_quote_are_the_references(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, earn_on: str
) -> None:
    program, members = await _setup(client, earn_on)
    quoted = _counting(monkeypatch)
    rng = random.Random(21)
    url = f"/v1/programs/{program}/baskets/price"
    earned = 0
    for n in range(40):
        member = rng.choice([*members, None])
        points = rng.choice([0, 0, 10, 100, 15]) if member == members[0] else 0
        body = _basket(rng, member, points)
        fast = await client.post(url, json=body)
        with monkeypatch.context() as m:
            m.setattr(till, "quote_event", lambda *_: None)
            m.setattr(till, "answer_json", _reference_json)
            reference = await client.post(url, json=body)
        assert (fast.status_code, fast.content) == (reference.status_code, reference.content), n
        assert fast.headers["content-type"] == reference.headers["content-type"]
        if fast.status_code == 200:
            earned += fast.json()["points_earned"]
    assert earned > 0  # the rules earned on some of them
    assert sum(quoted) >= 15  # most member baskets were quoted by the fast path


_events = table_of(Event)
_lines = table_of(EventLine)


async def _recorded(db: Database, event_id: str) -> tuple[Any, list[Any]]:
    async with db.read() as session:
        e, ln = _events.c, _lines.c
        event = (
            await session.execute(
                select(e.type, e.source, e.occurred_at, e.total_minor, e.points, e.points_spent,
                       e.attributes).where(e.id == event_id)
            )
        ).one()  # fmt: skip
        lines = (
            await session.execute(
                select(ln.line_no, ln.sku, ln.category, ln.quantity, ln.unit_price_minor,
                       ln.amount_minor, ln.tax_minor)
                .where(ln.event_id == event_id)
                .order_by(ln.line_no)
            )
        ).all()  # fmt: skip
    return tuple(event), [tuple(row) for row in lines]


@pytest.mark.parametrize("earn_on", ["tax_included", "tax_excluded"])
async def test_confirmed_baskets_through_the_fast_path_are_the_references(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch, earn_on: str
) -> None:
    program, members = await _setup(client, earn_on)
    quoted = _counting(monkeypatch)
    rng = random.Random(7)
    at = "2026-12-07T09:30:00+00:00"
    for n in range(12):
        member = rng.choice(members)
        points = rng.choice([0, 10, 100]) if member == members[0] else 0
        body = {**_basket(rng, member, points), "occurred_at": at}
        fast = await confirm(client, program, external_id=f"f{n}", **body)
        with monkeypatch.context() as m:
            m.setattr(till, "quote_event", lambda *_: None)
            reference = await confirm(client, program, external_id=f"r{n}", **body)
        assert fast.status_code == reference.status_code, (fast.text, reference.text)
        if fast.status_code != 200:
            assert fast.json() == reference.json()
            continue
        a, b = fast.json(), reference.json()
        assert (a.pop("external_id"), b.pop("external_id")) == (f"f{n}", f"r{n}")
        ids = a.pop("event_id"), b.pop("event_id")
        assert a == b, n
        assert await _recorded(db, ids[0]) == await _recorded(db, ids[1]), n
    assert sum(quoted) >= 8  # most were recorded through the fast path
