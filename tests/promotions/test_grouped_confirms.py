"""Confirms grouped in one batch of the group committer (both databases): the batch reads
their members and stored answers once, and on PostgreSQL writes their purchases, promotion
uses and confirmations at its end; each confirm answers and writes as it would alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from habitue.db import Database
from habitue.events.models import Event
from habitue.programs import service as programs_service
from habitue.promotions import till
from habitue.promotions.errors import CouponTaken
from habitue.promotions.models import BasketConfirmation, PromotionUse
from habitue.promotions.schemas import BasketConfirm, BasketRead
from habitue.rewards import codes as coupon_codes
from habitue.rewards.models import Coupon
from habitue.rooms import build_pipeline
from habitue.settings import Settings
from tests.conftest import create_program, enrol, new_code
from tests.promotions.helpers import coupon_of, promo
from tests.rewards.conftest import balance, give, reward
from tests.statements import count_statements

PIPELINE = build_pipeline()
_RUN = new_code("grouped")  # the external ids of this module's baskets start with it


async def _grouped(
    settings: Settings,
    program: str,
    bodies: list[dict[str, Any]],
    warm_up: list[dict[str, Any]] | None = None,
) -> tuple[list[BasketRead | BaseException], list[str]]:
    """The bodies confirmed at once on a one-lane database: queued before its committer runs,
    they are one batch. Each one's answer (or error), and the statements the batch sent
    (after a batch of `warm_up` bodies, which fills the settings' caches)."""
    one_lane = Database(settings.database_url, lanes=1)
    try:
        async with one_lane.read() as session:
            info = await programs_service.get_info(session, program)

        async def batch(of: list[dict[str, Any]]) -> list[BasketRead | BaseException]:
            return await asyncio.gather(
                *[
                    till.confirm_basket(one_lane, PIPELINE, info, BasketConfirm.model_validate(b))
                    for b in of
                ],
                return_exceptions=True,
            )

        if warm_up:
            await batch(warm_up)
        seen, stop = count_statements(one_lane)
        try:
            answers = await batch(bodies)
        finally:
            stop()
    finally:
        await one_lane.dispose()
    return list(answers), seen


async def _rows(db: Database, model: Any, external_id: str) -> int:
    async with db.read() as session:
        found = await session.execute(select(model).where(model.external_id == external_id))
        return len(found.all())


def _basket(member: str, name: str, **more: Any) -> dict[str, Any]:
    return {
        "member": {"id": member},
        "external_id": f"{_RUN}-{name}",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "10.00"}],
        **more,
    }


async def test_grouped_confirms_answer_as_alone_in_fewer_statements(
    client: httpx.AsyncClient, db: Database, settings: Settings, db_kind: str
) -> None:
    program = await create_program(client)
    await promo(client, program, code="two", effect={"type": "order_amount", "amount": "2.00"})
    members = [(await enrol(client, program))["id"] for _ in range(4)]
    bodies = [_basket(m, f"g{n}") for n, m in enumerate(members)]
    warm_up = [_basket(m, f"w{n}") for n, m in enumerate(members)]
    answers, seen = await _grouped(settings, program, bodies, warm_up)
    # The same baskets confirmed one by one (other external ids) answer the same.
    for body, answer in zip(bodies, answers, strict=True):
        assert isinstance(answer, BasketRead), answer
        alone_body = {**body, "external_id": "a" + body["external_id"]}
        r = await client.post(f"/v1/programs/{program}/baskets/confirm", json=alone_body)
        assert r.status_code == 200, r.text
        alone = r.json()
        got = answer.model_dump(mode="json")
        for key in ("event_id", "external_id"):
            got.pop(key), alone.pop(key)
        assert got == alone
        assert answer.points_earned == 18 and answer.discount == "2.00"
        assert await _rows(db, Event, body["external_id"]) == 1
        assert await _rows(db, PromotionUse, body["external_id"]) == 1
        assert await _rows(db, BasketConfirmation, body["external_id"]) == 1
    if db_kind == "postgres":
        # One read of the previous answers, one of the members, and one statement for the
        # purchases, the uses and the confirmations: 3 for 4 confirms (12 one by one), those
        # sent to asyncpg straight counted too.
        assert [s for s in seen if s == "WITH"] == ["WITH"], seen
        assert len(seen) <= 3 and set(seen) <= {"SELECT", "WITH"}, seen
    for member in members:
        assert await balance(client, program, member) == 3 * 18


async def test_a_grouped_confirm_whose_coupon_was_burnt_meanwhile_writes_nothing(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    program = await create_program(client)
    await reward(client, program, code="five", kind="discount", value="5.00", cost_points=500)
    members = [(await enrol(client, program))["id"] for _ in range(3)]
    for m in members:
        await give(client, program, m, 1000)
    (five,) = await coupon_of(client, program, members[1], "five")
    real = till.price_in

    async def racing(session: Any, pipeline: Any, info: Any, body: Any, *, now: Any) -> Any:
        priced = await real(session, pipeline, info, body, now=now)
        if body.codes:  # another till burns the coupon between the pricing and the burn
            await session.execute(
                update(Coupon)
                .where(Coupon.code == coupon_codes.normalise(five))
                .values(state="redeemed")
            )
        return priced

    bodies = [
        _basket(members[0], "c0"),
        _basket(members[1], "c1", codes=[five]),
        _basket(members[2], "c2"),
    ]
    till.price_in = racing  # type: ignore[assignment]
    try:
        answers, _ = await _grouped(settings, program, bodies)
    finally:
        till.price_in = real  # type: ignore[assignment]
    assert isinstance(answers[1], CouponTaken), answers[1]
    assert [isinstance(a, BasketRead) for a in answers] == [True, False, True]
    # Nothing of the refused one; the others committed.
    for body, count in zip(bodies, (1, 0, 1), strict=True):
        assert await _rows(db, Event, body["external_id"]) == count
        assert await _rows(db, BasketConfirmation, body["external_id"]) == count
    assert await balance(client, program, members[1]) == 500
    assert await balance(client, program, members[0]) == 1000 + 20
    assert await balance(client, program, members[2]) == 1000 + 20


Confirmer = Callable[[list[dict[str, Any]]], Awaitable[list[BasketRead | BaseException]]]


@pytest.mark.parametrize("with_points", [False, True])
async def test_a_members_confirms_in_one_batch_count_each_others_uses(
    client: httpx.AsyncClient, settings: Settings, with_points: bool
) -> None:
    """A promotion limited to 2 uses per member: of three confirms of one member in one
    batch, the first two get it and the third does not, whether the earlier ones' uses wait
    for the batch's end or (a basket paying with points) were written before it."""
    program = await create_program(client)
    await promo(
        client, program, code="twice", effect={"type": "order_amount", "amount": "2.00"},
        per_member_limit=2,
    )  # fmt: skip
    m = (await enrol(client, program))["id"]
    await give(client, program, m, 1000)
    middle = {"points": 100} if with_points else {}
    bodies = [_basket(m, "u0"), _basket(m, "u1", **middle), _basket(m, "u2")]
    answers, _ = await _grouped(settings, program, bodies)
    assert all(isinstance(a, BasketRead) for a in answers), answers
    got = [a.discount for a in answers if isinstance(a, BasketRead)]
    assert got == ["2.00", "2.00", "0.00"]


async def test_the_same_external_id_twice_in_one_batch_is_confirmed_once(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    program = await create_program(client)
    a, b = (await enrol(client, program))["id"], (await enrol(client, program))["id"]
    bodies = [_basket(a, "same"), _basket(b, "same")]
    answers, _ = await _grouped(settings, program, bodies)
    assert all(isinstance(x, BasketRead) for x in answers), answers
    assert answers[0] == answers[1]
    assert await _rows(db, Event, bodies[0]["external_id"]) == 1
    assert await _rows(db, BasketConfirmation, bodies[0]["external_id"]) == 1
    assert await balance(client, program, a) + await balance(client, program, b) == 20


async def test_a_retry_in_a_batch_answers_from_what_the_batch_read(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """A batch's previous answers and purchases, read for all its confirms at once: a retry
    of a confirmed basket answers the first answer and writes nothing; a basket under the
    `external_id` of a purchase posted to `/events` answers as that purchase."""
    program = await create_program(client)
    await promo(client, program, code="two", effect={"type": "order_amount", "amount": "2.00"})
    a, b, c = [(await enrol(client, program))["id"] for _ in range(3)]
    first = _basket(a, "first")
    r = await client.post(f"/v1/programs/{program}/baskets/confirm", json=first)
    assert r.status_code == 200, r.text
    first_answer = r.json()
    posted = _basket(c, "posted")
    r = await client.post(
        f"/v1/programs/{program}/events",
        json={"type": "purchase", "member": {"id": c}, "external_id": posted["external_id"],
              "total": "7.00"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    answers, _ = await _grouped(settings, program, [first, _basket(b, "new"), posted])
    assert all(isinstance(x, BasketRead) for x in answers), answers
    retried, new, as_posted = answers
    assert isinstance(retried, BasketRead) and retried.model_dump(mode="json") == first_answer
    assert isinstance(new, BasketRead) and new.discount == "2.00"
    assert isinstance(as_posted, BasketRead) and as_posted.points_earned == 7
    assert await _rows(db, Event, first["external_id"]) == 1
    assert await _rows(db, BasketConfirmation, first["external_id"]) == 1
    assert await _rows(db, PromotionUse, first["external_id"]) == 1
    assert await _rows(db, Event, posted["external_id"]) == 1
    assert await balance(client, program, a) == 18
    assert await balance(client, program, c) == 7
