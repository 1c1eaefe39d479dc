# ruff: noqa: S608 - the tables are read by constant SQL, the values bound
"""The import applies what `POST /events` applies, and `quote` writes none of it.

For each effect kind (`earn`, `multiplier`, `tier_credits`, `benefit`, `coupon`), as a random
reward (probability ½, drawn from the event's seed), the same purchases are posted to one
program and imported into another: the ledger, the lots, the balances, the benefits, the
coupons, the tier credits and the recorded answers are the same. A re-import grants nothing
again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, text

from habitue import clock
from habitue.clock import as_utc
from habitue.db import make_sync_engine
from habitue.events.importer import import_purchases
from tests.conftest import create_program, enrol
from tests.events.test_effects_applied import add_reward, add_rule
from tests.tiers.helpers import ladder

HALF = "0.5"
RULES: dict[str, dict[str, Any]] = {
    "earn": {"kind": "fixed", "points": 5, "probability": HALF},
    "multiplier": {"kind": "multiplier", "factor": "2", "probability": HALF},
    "tier_credits": {"kind": "tier_credits", "points": 3, "probability": HALF},
    "benefit": {"kind": "benefit", "benefit": "fast_lane", "days": 30, "probability": HALF},
    "coupon": {"kind": "coupon", "reward_code": "pastry", "probability": HALF},
}
MEMBERS = ("C1", "C2")


@pytest.fixture
def frozen() -> Iterator[datetime]:
    """`clock.now()` held at one instant: what a grant's `until` or a coupon's expiry is
    counted from is then the same on both paths."""
    at = clock.now().replace(microsecond=0)
    real = clock.now
    clock.now = lambda: at
    try:
        yield at
    finally:
        clock.now = real


def purchases(now: datetime) -> list[dict[str, Any]]:
    """Twelve purchases of two members over the last day, two lines each, as `POST /events`
    bodies."""
    return [
        {"type": "purchase", "member": {"external_id": MEMBERS[i % 2]},
         "external_id": f"R{i:03d}", "occurred_at": (now - timedelta(hours=24 - i)).isoformat(),
         "total": f"{10 + 3 * i}.50",
         "lines": [{"sku": "coffee", "quantity": "2", "unit_price": "1.25"},
                   {"sku": "cake", "quantity": "1", "unit_price": f"{8 + 3 * i}.00"}]}
        for i in range(12)
    ]  # fmt: skip


async def setup(client: httpx.AsyncClient, kind: str) -> str:
    program = await create_program(client)
    await add_reward(client, program)
    if kind == "tier_credits":
        tiers = [{"code": "bronze", "name": "Bronze", "threshold": 0},
                 {"code": "silver", "name": "Silver", "threshold": 6}]  # fmt: skip
        r = await ladder(client, program, metric="tier_credits", tiers=tiers)
        assert r.status_code in (200, 201), r.text
    await add_rule(client, program, {"code": f"r-{kind}", "event_type": "purchase",
                                     "effect": RULES[kind]})  # fmt: skip
    for ext in MEMBERS:
        await enrol(client, program, external_id=ext)
    return program


def _t(value: Any) -> str | None:
    return as_utc(value).isoformat() if isinstance(value, datetime) else value


def _rows(conn: Connection, sql: str, program_id: int) -> list[tuple[Any, ...]]:
    found = conn.execute(text(sql), {"p": program_id}).all()
    return sorted(tuple(_t(v) for v in row) for row in found)


M = "JOIN members m ON m.id = x.member_id "
E = "LEFT JOIN events e ON e.id = x.event_id "
QUERIES = {
    "balances": "SELECT m.external_id, x.kind, x.balance FROM accounts x " + M,
    "lifetime": "SELECT x.external_id, x.lifetime_earned FROM members x ",
    "postings": "SELECT m.external_id, t.kind, e.external_id, a.kind, x.amount, x.rule_code "
    "FROM postings x JOIN ledger_transactions t ON t.id = x.transaction_id "
    "JOIN accounts a ON a.id = x.account_id LEFT JOIN members m ON m.id = t.member_id "
    "LEFT JOIN events e ON e.id = t.event_id ",
    "lots": "SELECT m.external_id, e.external_id, a.kind, x.amount, x.remaining, x.earned_at, "
    "x.expires_at, x.pending_until FROM lots x JOIN accounts a ON a.id = x.account_id " + M + E,
    "benefits": "SELECT m.external_id, x.code, x.until, x.rule_code, e.external_id "
    "FROM member_benefits x " + M + E,
    "coupons": "SELECT m.external_id, r.code, x.state, x.expires_at, e.external_id "
    "FROM coupons x JOIN rewards r ON r.id = x.reward_id " + M + E,
    "tier_credits": "SELECT m.external_id, e.external_id, x.amount "
    "FROM tier_contributions x " + M + E,
    "tiers": "SELECT m.external_id, x.rank FROM tier_status x " + M,
    "lines": "SELECT e.external_id, x.line_no, x.sku, x.quantity, x.unit_price_minor, "
    "x.amount_minor FROM event_lines x " + E,
}
"""What each table holds of a program (`x` is the table, `m` its member, `e` its event)."""


def written(db_url: str, program: str) -> dict[str, Any]:
    """What the program's events wrote, by member and purchase external ids (no ids, no
    coupon codes: both are drawn at random)."""
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            p = conn.execute(
                text("SELECT id FROM programs WHERE code = :c"), {"c": program}
            ).scalar_one()
            found: dict[str, Any] = {
                name: _rows(conn, sql + ("WHERE m.program_id = :p" if name == "tiers"
                                         else "WHERE x.program_id = :p"), p)
                for name, sql in QUERIES.items()
            }  # fmt: skip
            found["answers"] = {
                ext: _answer(response)
                for ext, response in conn.execute(
                    text("SELECT external_id, response FROM events WHERE program_id = :p"),
                    {"p": p},
                ).all()
            }
            return found
    finally:
        engine.dispose()


def _answer(response: Any) -> Any:
    """A recorded answer without its ids (nor its tier upgrade's), a coupon's code only as
    given or not."""
    if isinstance(response, str):
        response = json.loads(response)
    effects = [
        {**e, "coupon": e.get("coupon") is not None,
         "detail": {k: v for k, v in e["detail"].items() if k not in ("member_id", "event_id")}}
        for e in response["effects"]
    ]  # fmt: skip
    return {**response, "id": None, "member_id": None, "effects": effects}


def write_csv(path: Path, bodies: list[dict[str, Any]]) -> Path:
    """The purchases as an import file, one row per line."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["member_external_id", "external_id", "occurred_at", "total", "sku",
                    "quantity", "unit_price"])  # fmt: skip
        for b in bodies:
            for ln in b["lines"]:
                w.writerow([b["member"]["external_id"], b["external_id"], b["occurred_at"],
                            b["total"], ln["sku"], ln["quantity"], ln["unit_price"]])  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("kind", "workers"), [(kind, 0) for kind in RULES] + [("coupon", 2), ("benefit", 1)]
)
async def test_each_effect_kind_the_same_through_the_api_the_import_and_a_quote(
    client: httpx.AsyncClient,
    db_url: str,
    tmp_path: Path,
    frozen: datetime,
    kind: str,
    workers: int,
) -> None:
    """`workers`: 0 imports in the calling process, 1 with a writer process, 2 with two
    worker processes (as files from 2 MiB on)."""
    bodies = purchases(frozen)
    posted, imported = await setup(client, kind), await setup(client, kind)

    # A quote decides the same and writes nothing.
    quoted = []
    for body in bodies:
        r = await client.post(f"/v1/programs/{posted}/events/quote", json=body)
        assert r.status_code == 200, r.text
        quoted.append(r.json())
    nothing = written(db_url, posted)
    assert nothing["answers"] == {} and nothing["postings"] == [] and nothing["lots"] == []
    assert nothing["benefits"] == [] and nothing["coupons"] == []
    assert nothing["tier_credits"] == []

    answers = []
    for body in bodies:
        r = await client.post(f"/v1/programs/{posted}/events", json=body)
        assert r.status_code == 201, r.text
        answers.append(r.json())
    # The random reward fired on some purchases and not on others (the same on every path).
    fired = [any(e["rule"] == f"r-{kind}" for e in a["effects"]) for a in answers]
    assert any(fired) and not all(fired), fired
    for q, a in zip(quoted, answers, strict=True):
        assert [(e["kind"], e["rule"], e["points"]) for e in q["effects"]] == [
            (e["kind"], e["rule"], e["points"]) for e in a["effects"] if e["kind"] != "tier_upgrade"
        ]

    path = write_csv(tmp_path / "purchases.csv", bodies)
    engine = make_sync_engine(db_url)
    try:
        processes: dict[str, Any] = {"writer_process": True, "workers": workers} if workers else {}
        report = import_purchases(engine, imported, path, **processes)
        assert (report.imported, report.rejected, report.already) == (12, 0, 0), report.rejects
        # Points alone go the bulk way; any other effect the API's own way.
        assert report.delivered == (0 if kind in ("earn", "multiplier") else sum(fired))

        through_api, through_import = written(db_url, posted), written(db_url, imported)
        assert through_import == through_api
        if kind == "benefit":
            assert through_import["benefits"], "no benefit was granted"
        if kind == "coupon":
            assert len(through_import["coupons"]) == sum(fired)
        if kind == "tier_credits":
            assert through_import["tier_credits"]

        again = import_purchases(engine, imported, path, **processes)
        assert (again.imported, again.already, again.delivered) == (0, 12, 0)
        assert written(db_url, imported) == through_import
    finally:
        engine.dispose()


LIMITED: dict[str, dict[str, Any]] = {
    "capped_coupon": {"effect": {"kind": "coupon", "reward_code": "pastry"},
                      "caps": [{"period": "month", "count": 2}]},
    "points_cap": {"effect": {"kind": "fixed", "points": 5},
                   "caps": [{"period": "month", "points": 12}]},
    "budget": {"effect": {"kind": "fixed", "points": 5}, "budget": 22},
}  # fmt: skip
"""Rules whose caps or budget run out part-way through the twelve purchases."""


@pytest.mark.parametrize(("name", "workers"), [(n, 0) for n in LIMITED] + [("capped_coupon", 2)])
async def test_a_rule_with_caps_or_a_budget_stops_at_the_same_purchase_on_import(
    client: httpx.AsyncClient,
    db_url: str,
    tmp_path: Path,
    frozen: datetime,
    name: str,
    workers: int,
) -> None:
    """A capped `coupon` rule (2 a month per member) issues its coupons to the first
    purchases and then none, on import as on the API: the same coupons, ledger and answers;
    so do a points cap and a budget shared by all members (clipped, then nothing)."""
    bodies = purchases(frozen)
    programs = []
    for _ in range(2):
        program = await create_program(client)
        await add_reward(client, program)
        await add_rule(client, program, {"code": "r-limited", "event_type": "purchase",
                                         **LIMITED[name]})  # fmt: skip
        for ext in MEMBERS:
            await enrol(client, program, external_id=ext)
        programs.append(program)
    posted, imported = programs

    answers = []
    for body in bodies:
        r = await client.post(f"/v1/programs/{posted}/events", json=body)
        assert r.status_code == 201, r.text
        answers.append(r.json())
    gave = [any(e["rule"] == "r-limited" for e in a["effects"]) for a in answers]
    # The limit ran out mid-file: the first purchases got something, the last ones nothing.
    assert gave[0] and gave[1] and not gave[-1], gave

    path = write_csv(tmp_path / "purchases.csv", bodies)
    engine = make_sync_engine(db_url)
    try:
        processes: dict[str, Any] = {"writer_process": True, "workers": workers} if workers else {}
        report = import_purchases(engine, imported, path, **processes)
        assert (report.imported, report.rejected, report.already) == (12, 0, 0), report.rejects
        # Every purchase the limited rule would give to (usage unknown to the bulk path) went
        # the API's way: here, all of them.
        assert report.delivered == 12

        through_api, through_import = written(db_url, posted), written(db_url, imported)
        assert through_import == through_api
        if name == "capped_coupon":
            coupons = through_import["coupons"]
            assert 4 <= len(coupons) <= 8 and len(coupons) == sum(gave), coupons
        else:
            assert any(p[5] == "r-limited" for p in through_import["postings"])

        again = import_purchases(engine, imported, path, **processes)
        assert (again.imported, again.already, again.delivered) == (0, 12, 0)
        assert written(db_url, imported) == through_import
    finally:
        engine.dispose()
