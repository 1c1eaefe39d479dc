"""Bad input at the till (issue 21): each case is refused with its own reason in the answer of
`price` and as a problem+json by `confirm`, and the confirm writes nothing — no points, no
ledger entry, no burnt coupon, nothing stored under its `external_id`. Both databases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from habitue import clock
from habitue.rewards import codes as coupon_codes
from tests.conftest import create_program, enrol
from tests.promotions.helpers import (
    confirm,
    confirmed,
    coupon_of,
    coupon_state,
    ledger,
    offs,
    price,
    refusals,
)
from tests.rewards.conftest import balance, give, problem, reward


@dataclass
class Till:
    program: str
    member: str
    mine: str
    """A 5.00 coupon of the member (issued)."""
    foreign: str
    """A coupon of another program."""
    late: str
    """A coupon of the member whose one day of validity has passed."""


async def till(client: httpx.AsyncClient) -> Till:
    """A member with 90 points, one good coupon and one expired, and another program's coupon."""
    program, other = await create_program(client), await create_program(client)
    m = await enrol(client, program, external_id="m1")
    o = await enrol(client, other, external_id="o1")
    await give(client, program, m["id"], 110)
    await give(client, other, o["id"], 10)
    await reward(client, other, code="five", kind="discount", value="5.00", cost_points=10)
    (foreign,) = await coupon_of(client, other, o["id"], "five")
    await reward(client, program, code="five", kind="discount", value="5.00", cost_points=10)
    await reward(client, program, code="brief", kind="discount", value="1.00", cost_points=10,
                 coupon_days=1)  # fmt: skip
    (late,) = await coupon_of(client, program, m["id"], "brief")
    clock.advance(timedelta(days=2))  # `brief`'s coupon expired yesterday
    (mine,) = await coupon_of(client, program, m["id"], "five")
    assert await balance(client, program, m["id"]) == 90  # 110 − 10 − 10
    return Till(program, m["id"], mine, foreign, late)


def well_formed_unknown() -> str:
    """A code with a valid check character that no coupon has."""
    return coupon_codes.display(coupon_codes.new_code())


A = {"sku": "A", "unit_price": "10.00"}

# (case, body changes, (field, code, reason) refused); `{mine}`, `{foreign}`, `{late}` and
# `{unknown}` are filled in from the till.
CASES: list[tuple[str, dict[str, Any], tuple[str, str | None, str]]] = [
    ("malformed code", {"codes": ["NOSUCHCODE"]},
     ("codes", "NOSUCHCODE", "not a coupon code (check character mismatch)")),
    ("unknown code", {"codes": ["{unknown}"]},
     ("codes", "{unknown}", "no such coupon in this program")),
    ("expired code", {"codes": ["{late}"]}, ("codes", "{late}", "this code has expired")),
    ("code of another program", {"codes": ["{foreign}"]},
     ("codes", "{foreign}", "no such coupon in this program")),
    ("the same code twice", {"codes": ["{mine}", "{mine}"]},
     ("codes", "{mine}", "the same code twice")),
    ("lines that do not add up", {"total": "12.00"},
     ("lines", None, "the lines add up to 10.00, the total is 12.00")),
    ("negative quantity", {"lines": [A, {"sku": "B", "quantity": -1, "unit_price": "3.00"}]},
     ("lines[1].quantity", None, "must be positive")),
    ("zero quantity", {"lines": [{**A, "quantity": 0}]},
     ("lines[0].quantity", None, "must be positive")),
    ("a discount line", {"lines": [A, {"sku": "OFF", "unit_price": "-2.00"}]},
     ("lines[1].unit_price", None,
      "a discount line: send discounts as promotions or coupon codes, not as negative lines")),
    ("a discount line by its amount",
     {"lines": [A, {"sku": "OFF", "unit_price": "2.00", "amount": "-2.00"}]},
     ("lines[1].amount", None,
      "a discount line: send discounts as promotions or coupon codes, not as negative lines")),
    ("points above the balance", {"points": 91}, ("points", None, "above the balance (90)")),
    ("negative points", {"points": -5}, ("points", None, "must not be negative")),
]  # fmt: skip


def fill(value: Any, t: Till, unknown: str) -> Any:
    if isinstance(value, str):
        return value.format(mine=t.mine, foreign=t.foreign, late=t.late, unknown=unknown)
    if isinstance(value, list | tuple):
        return type(value)(fill(v, t, unknown) for v in value)
    if isinstance(value, dict):
        return {k: fill(v, t, unknown) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("case", "change", "refusal"), CASES, ids=[c[0] for c in CASES])
async def test_refused_with_its_reason_and_nothing_written(
    client: httpx.AsyncClient,
    case: str,
    change: dict[str, Any],
    refusal: tuple[str, str | None, str],
) -> None:
    t = await till(client)
    unknown = well_formed_unknown()
    body = {"member": {"id": t.member}, "lines": [A], **fill(change, t, unknown)}
    field, code, reason = fill(refusal, t, unknown)
    before = (await balance(client, t.program, t.member), await ledger(client, t.program, t.member))
    a = await price(client, t.program, **body)
    assert refusals(a) == {(field, code, reason)}, case
    # The answer still prices what is valid (the one good coupon once, for the same code twice).
    if case == "the same code twice":
        assert offs(a) == {f"coupon:{t.mine}": "5.00"}
    r = await confirm(client, t.program, external_id="till-1", **body)
    problem(r, 422, "basket-refused")
    assert r.json()["errors"] == [
        {"field": field, "message": reason, **({"code": code} if code else {})}
    ]
    assert r.json()["detail"] == f"{field}{f' {code}' if code else ''}: {reason}"
    assert (await balance(client, t.program, t.member), await ledger(client, t.program, t.member)) \
        == before  # fmt: skip
    assert (await coupon_state(client, t.program, t.mine))["state"] == "issued"
    # Nothing is stored under the refused external_id: a good basket confirms under it.
    good = await confirmed(client, t.program, external_id="till-1", member={"id": t.member},
                           lines=[A], codes=[t.mine])  # fmt: skip
    assert (good["to_pay"], good["points_earned"]) == ("5.00", 5)
    assert await balance(client, t.program, t.member) == 95


async def test_a_guest_cannot_pay_with_points_or_coupons(client: httpx.AsyncClient) -> None:
    t = await till(client)
    a = await price(client, t.program, lines=[A], codes=[t.mine], points=10)
    assert refusals(a) == {
        ("codes", t.mine, "a coupon or offer needs the member"),
        ("points", None, "a guest cannot pay with points"),
    }
    r = await confirm(client, t.program, lines=[A], codes=[t.mine], points=10)
    problem(r, 422, "basket-refused")
    assert {e["field"] for e in r.json()["errors"]} == {"codes", "points"}
    assert (await coupon_state(client, t.program, t.mine))["state"] == "issued"


async def test_a_discount_line_at_post_events_is_named_by_its_line(
    client: httpx.AsyncClient,
) -> None:
    """Issue 21, item 6: the error names the line, not `total`."""
    t = await till(client)
    events = f"/v1/programs/{t.program}/events"
    for i, (line, field) in enumerate(
        [
            ({"sku": "OFF", "unit_price": "-2.00"}, "lines[1].unit_price"),
            ({"sku": "OFF", "unit_price": "2.00", "amount": "-2.00"}, "lines[1].amount"),
        ]
    ):
        r = await client.post(
            events,
            json={"type": "purchase", "member": {"id": t.member}, "external_id": f"e{i}",
                  "total": "8.00", "lines": [A, line]},
        )  # fmt: skip
        problem(r, 422, "validation")
        assert [e["field"] for e in r.json()["errors"]] == [field]
    assert await balance(client, t.program, t.member) == 90
