"""Earning on amounts with or without tax (issue 21, item 5), on both databases.

A program's `earn_on` is `tax_included` (the default: what it always did) or `tax_excluded`.
The same basket earns the same through `baskets/price`, `baskets/confirm`, `events/quote`,
`POST /events`, the import and the backtest: they all run the one `decide`.

The basket of every test (EUR, `earn_rate` 1 rounded down, and a rule of 1 point per euro on
`food` lines):

| line | sent as | charged | tax in it |
|---|---|---|---|
| BREAD, food, 2 × 10.60 at 6 % | tax included | 21.20 | 1.20 (20.00 without) |
| WINE, drinks, 100.00 at 20 % | `tax_included: false` | 120.00 | 20.00 |
| SOAP, home, 58.80 at 20 % | tax included | 58.80 | 9.80 (49.00 without) |

Total 200.00. Code `TEN` takes 10 % off the order: 20.00, shared pro rata: 2.12, 12.00 and
5.88; the lines net 19.08, 108.00 and 52.92 (180.00). Without tax, each net line:
19.08 / 1.06 = 18.00, 108.00 / 1.2 = 90.00, 52.92 / 1.2 = 44.10: 152.10. So a `tax_excluded`
program earns 152 (base) + 18 (food) = **170**; a `tax_included` one 180 + 19 = **199**.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from habitue.analytics import backtest
from habitue.db import Database, make_sync_engine
from habitue.events.importer import import_purchases
from habitue.programs import service as programs_service
from habitue.rules.compile import compile_rules
from habitue.rules.service import live_rule_versions_sync
from tests.conftest import create_program, enrol
from tests.promotions.helpers import confirmed, food_rule_and_ten_code, offs, price
from tests.rewards.conftest import balance, give

P = "/v1/programs"
BASKET: list[dict[str, Any]] = [
    {"sku": "BREAD", "category": "food", "quantity": 2, "unit_price": "10.60", "tax_rate": "0.06"},
    {"sku": "WINE", "category": "drinks", "quantity": 1, "unit_price": "100.00",
     "tax_rate": "0.2", "tax_included": False},
    {"sku": "SOAP", "category": "home", "quantity": 1, "unit_price": "58.80", "tax_rate": "0.2"},
]  # fmt: skip


async def _program(client: httpx.AsyncClient, earn_on: str | None) -> str:
    extra = {} if earn_on is None else {"earn_on": earn_on}
    program = await create_program(client, earn_rate="1", **extra)
    await food_rule_and_ten_code(client, program)
    return program


def _earned(answer: dict[str, Any]) -> dict[str, int]:
    return {e["rule"]: e["points"] for e in answer["effects"] if e["kind"] == "earn"}


async def test_earn_on_is_a_program_setting(client: httpx.AsyncClient) -> None:
    default = await create_program(client)
    assert (await client.get(f"{P}/{default}")).json()["earn_on"] == "tax_included"
    excl = await create_program(client, earn_on="tax_excluded")
    assert (await client.get(f"{P}/{excl}")).json()["earn_on"] == "tax_excluded"
    r = await client.post(f"{P}", json={"code": "bad-earn-on", "name": "x", "earn_on": "net"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "earn_on"


async def test_price_confirm_quote_and_events_earn_without_tax(client: httpx.AsyncClient) -> None:
    program = await _program(client, "tax_excluded")
    m = await enrol(client, program, external_id="m1")
    body = {"member": {"id": m["id"]}, "codes": ["TEN"], "lines": BASKET}
    priced = await price(client, program, **body)
    assert (priced["total"], offs(priced), priced["to_pay"]) == (
        "200.00", {"promotion:ten": "20.00"}, "180.00",
    )  # fmt: skip
    assert [ln["discount"] for ln in priced["lines"]] == ["2.12", "12.00", "5.88"]
    assert [ln["net"] for ln in priced["lines"]] == ["19.08", "108.00", "52.92"]
    assert (priced["points_earned"], _earned(priced)) == (170, {"base": 152, "food": 18})
    done = await confirmed(client, program, **body)
    assert (done["points_earned"], _earned(done)) == (170, {"base": 152, "food": 18})
    assert await balance(client, program, m["id"]) == 170
    event = (await client.get(f"{P}/{program}/events/{done['event_id']}")).json()
    assert (event["total"], event["points"]) == ("180.00", 170)

    # The purchase the confirm recorded, quoted and recorded through the events API: its net
    # lines with their tax rates (the bread's 19.08 as 2 × 9.54).
    net = [
        {"sku": "BREAD", "category": "food", "quantity": 2, "unit_price": "9.54",
         "tax_rate": "0.06"},
        {"sku": "WINE", "category": "drinks", "unit_price": "108.00", "tax_rate": "0.2"},
        {"sku": "SOAP", "category": "home", "unit_price": "52.92", "tax_rate": "0.2"},
    ]  # fmt: skip
    purchase = {"type": "purchase", "member": {"id": m["id"]}, "total": "180.00", "lines": net}
    r = await client.post(f"{P}/{program}/events/quote", json={**purchase, "external_id": "q"})
    assert r.status_code == 200, r.text
    assert (r.json()["points_earned"], _earned(r.json())) == (170, {"base": 152, "food": 18})
    r = await client.post(f"{P}/{program}/events", json={**purchase, "external_id": "e1"})
    assert r.status_code == 201, r.text
    assert r.json()["points_earned"] == 170

    # The gross basket as a purchase event, tax-included and tax-excluded lines as sent to
    # the till: 20.00 + 100.00 + 49.00 = 169.00 without tax, 20 on food: 189.
    gross = {"type": "purchase", "member": {"id": m["id"]}, "total": "200.00", "lines": BASKET}
    r = await client.post(f"{P}/{program}/events", json={**gross, "external_id": "e2"})
    assert r.status_code == 201, r.text
    assert (r.json()["points_earned"], _earned(r.json())) == (189, {"base": 169, "food": 20})
    assert await balance(client, program, m["id"]) == 170 + 170 + 189


async def test_points_paid_are_shared_pro_rata_before_the_tax_comes_off(
    client: httpx.AsyncClient,
) -> None:
    # The same basket, 1,000 points paying 10.00: the purchase is 180.00 of which 170.00 in
    # money. Without tax 152.10 × 170 / 180 = 143.65 (143); food 18.00 × 170 / 180 = 17.00.
    program = await _program(client, "tax_excluded")
    m = await enrol(client, program, external_id="m1")
    await give(client, program, m["id"], 1000)
    body = {"member": {"id": m["id"]}, "codes": ["TEN"], "lines": BASKET, "points": 1000}
    priced = await price(client, program, **body)
    assert (priced["to_pay"], priced["points_value"]) == ("170.00", "10.00")
    assert (priced["points_earned"], _earned(priced)) == (160, {"base": 143, "food": 17})
    done = await confirmed(client, program, **body)
    assert done["points_earned"] == 160
    assert await balance(client, program, m["id"]) == 160


async def test_the_default_earns_on_amounts_with_tax(client: httpx.AsyncClient) -> None:
    program = await _program(client, None)
    m = await enrol(client, program, external_id="m1")
    done = await confirmed(client, program, member={"id": m["id"]}, codes=["TEN"], lines=BASKET)
    assert (done["to_pay"], done["points_earned"], _earned(done)) == (
        "180.00", 199, {"base": 180, "food": 19},
    )  # fmt: skip


def _csv(path: Path, member: str) -> Path:
    target = path / "taxed.csv"
    with target.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total", "sku",
                    "category", "quantity", "unit_price", "tax_rate", "tax_included"])  # fmt: skip
        at = "2026-03-04T09:30:00+01:00"
        w.writerow([member, "t1", at, "200.00", "BREAD", "food", "2", "10.60", "0.06", ""])
        w.writerow([member, "t1", at, "200.00", "WINE", "drinks", "1", "100.00", "0.2", "false"])
        w.writerow([member, "t1", at, "200.00", "SOAP", "home", "1", "58.80", "0.2", "true"])
        w.writerow([member, "t2", at, "10.00", "", "", "", "", "", ""])  # no lines: no tax known
    return target


async def test_import_and_backtest_earn_as_the_api(
    client: httpx.AsyncClient, db: Database, db_url: str, tmp_path: Path
) -> None:
    program = await _program(client, "tax_excluded")
    m = await enrol(client, program, external_id="m1")
    path = _csv(tmp_path, "m1")
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, program, path)
        async with db.read() as session:
            info = await programs_service.get_info(session, program)
        with engine.connect() as conn:
            rules = compile_rules(live_rule_versions_sync(conn, info.id))
            stored = backtest.run_backtest(
                list(backtest.read_store(conn, info.id)), program=info.snapshot(), rules=rules
            )
    finally:
        engine.dispose()
    # t1: 189 as through `POST /events` (169 + 20); t2: 10.00 without lines, no tax known: 10.
    assert (report.imported, report.rejected, report.points) == (2, 0, 199)
    assert await balance(client, program, m["id"]) == 199
    assert (stored.points_issued, stored.by_rule) == (199, {"base": 179, "food": 20})
    from_file = backtest.run_backtest(
        backtest.read_csv(path, currency_exponent=2), program=info.snapshot(), rules=rules
    )
    assert (from_file.points_issued, from_file.by_rule) == (199, {"base": 179, "food": 20})
    # The same file for a program earning on amounts with tax: 200 + 21 (food 21.20), 10.
    with_tax = backtest.run_backtest(
        backtest.read_csv(path, currency_exponent=2),
        program=replace(info.snapshot(), earn_on="tax_included"),
        rules=rules,
    )
    assert (with_tax.points_issued, with_tax.by_rule) == (231, {"base": 210, "food": 21})


async def test_a_line_tax_rate_out_of_range_is_refused(client: httpx.AsyncClient) -> None:
    program = await _program(client, "tax_excluded")
    m = await enrol(client, program, external_id="m1")
    bad = {**BASKET[0], "tax_rate": "1.5"}
    body = {"type": "purchase", "member": {"id": m["id"]}, "external_id": "x",
            "total": "21.20", "lines": [bad]}  # fmt: skip
    r = await client.post(f"{P}/{program}/events", json=body)
    assert r.status_code == 422, r.text
    assert "tax_rate" in r.text
    assert await balance(client, program, m["id"]) == 0


async def test_an_import_through_the_api_path_keeps_the_tax(
    client: httpx.AsyncClient, db_url: str, tmp_path: Path
) -> None:
    # A capped rule sends the import's purchases through the API's path (`delivering`): the
    # lines keep their tax rates there too. Same file, same 199 points.
    program = await _program(client, "tax_excluded")
    r = await client.post(
        f"{P}/{program}/rules",
        json={"code": "visit", "event_type": "purchase", "effect": {"kind": "fixed", "points": 1},
              "caps": [{"period": "day", "count": 5}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    m = await enrol(client, program, external_id="m1")
    engine = make_sync_engine(db_url)
    try:
        report = import_purchases(engine, program, _csv(tmp_path, "m1"))
    finally:
        engine.dispose()
    assert (report.imported, report.rejected, report.points) == (2, 0, 199 + 2)
    assert await balance(client, program, m["id"]) == 201
