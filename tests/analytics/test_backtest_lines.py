"""One file of baskets as tills sell them (a line's `amount` winning over quantity × unit price,
prices per gram, the cent tolerance on the sum of the lines) imported, quoted and backtested:
the three take and refuse the same purchases and give the same points (issue 22, item 1)."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.conftest import create_program

HEADER = ["member_external_id", "external_id", "occurred_at", "total",
          "sku", "category", "quantity", "unit_price", "amount"]  # fmt: skip

ROWS = [
    # 6 units sold together for 313.00 (52.1666… each) and a loaf: 315.50
    ["ana", "p1", "2026-03-02T09:00:00Z", "315.50", "beer-6", "drinks", "6", "52.1667", "313.00"],
    ["ana", "p1", "2026-03-02T09:00:00Z", "315.50", "bread", "bakery", "1", "2.50", ""],
    # 3 for 5.00 (3 × 1.99 = 5.97 without the line amount: 6.77 ≠ 5.80) and a water
    ["bo", "p2", "2026-03-20T18:00:00+01:00", "5.80", "soda", "drinks", "3", "1.99", "5.00"],
    ["bo", "p2", "2026-03-20T18:00:00+01:00", "5.80", "water", "drinks", "1", "0.80", ""],
    # prices per gram: 4.1625 → 4.16 and 4.4955 → 4.50; the total is one cent over (8.67)
    ["cy", "p3", "2026-04-01T08:00:00Z", "8.67", "beans", "coffee", "333", "0.0125", ""],
    ["cy", "p3", "2026-04-01T08:00:00Z", "8.67", "tea", "drinks", "333", "0.0135", ""],
    # a half-kilo of cheese at 21.999 a kilo, charged 11.00
    ["ana", "p4", "2026-04-15T12:00:00Z", "11.00", "cheese", "deli", "0.5", "21.999", "11.00"],
    # refused by all three: the lines add up to 10.00, the total is 12.00
    ["bo", "p5", "2026-04-16T12:00:00Z", "12.00", "a", "deli", "2", "5.00", ""],
    # refused: an amount finer than the cent
    ["cy", "p6", "2026-04-17T12:00:00Z", "1.00", "a", "deli", "1", "1.00", "1.001"],
    # refused: more than 4 decimals beyond the cent in a unit price
    ["cy", "p7", "2026-04-18T12:00:00Z", "1.00", "a", "deli", "1", "1.0000001", ""],
    # 12 eggs at 0.2917 charged as a box of 3.50
    ["bo", "p8", "2026-05-05T07:30:00Z", "3.50", "eggs", "fresh", "12", "0.2917", "3.50"],
]
REFUSED = {"p5": "lines", "p6": "lines[0].amount", "p7": "lines[0].unit_price"}

RULES = [
    # line-scoped points per euro: they follow the lines' amounts
    {"code": "drinks-x2", "event_type": "purchase", "line_condition": 'line.category == "drinks"',
     "effect": {"kind": "per_currency_unit", "rate": "2"}},
    # per unit: they follow the quantities
    {"code": "per-unit", "event_type": "purchase", "line_condition": "line.quantity >= 3.0",
     "effect": {"kind": "per_unit", "points": 1}},
]  # fmt: skip


def _write(path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(ROWS)


def _bodies() -> dict[str, dict[str, Any]]:
    """The file's purchases as `POST /events` bodies."""
    bodies: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        r = dict(zip(HEADER, row, strict=True))
        body = bodies.setdefault(r["external_id"], {
            "type": "purchase", "member": {"external_id": r["member_external_id"]},
            "external_id": r["external_id"], "occurred_at": r["occurred_at"],
            "total": r["total"], "lines": [],
        })  # fmt: skip
        line = {"sku": r["sku"], "category": r["category"], "quantity": r["quantity"],
                "unit_price": r["unit_price"]}  # fmt: skip
        if r["amount"]:
            line["amount"] = r["amount"]
        body["lines"].append(line)
    return bodies


async def _cli(db_url: str, *args: str) -> Result:
    from habitue.cli import app
    from habitue.settings import get_settings

    env = {"HABITUE_DATABASE_URL": db_url, "HABITUE_HMAC_KEY": "test-hmac-key"}
    get_settings.cache_clear()
    try:
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("earn_rate", ["1.5", "1"])
async def test_a_file_of_line_amounts_imports_quotes_and_backtests_to_the_point(
    client: httpx.AsyncClient, db_url: str, tmp_path: Path, earn_rate: str
) -> None:
    code = await create_program(client, earn_rate=earn_rate)
    for rule in RULES:
        r = await client.post(f"/v1/programs/{code}/rules", json=rule)
        assert r.status_code == 201, r.text
    rules_file = tmp_path / "rules.json"
    rules_file.write_bytes(orjson.dumps(RULES))
    path = tmp_path / "baskets.csv"
    _write(path)

    # the backtest first (it writes nothing): it skips what the import refuses, and says so
    done = await _cli(db_url, "backtest", "--program", code, "--from", str(path),
                      "--rules", str(rules_file), "--json")  # fmt: skip
    assert done.exit_code == 1, done.output
    replay = orjson.loads(done.stdout)
    assert replay["transactions"] == 5
    assert replay["rejected"] == 3
    assert {r["external_id"] for r in replay["rejects"]} == set(REFUSED)
    assert "3 purchases not replayed" in done.stderr

    rejects = tmp_path / "rejects.csv"
    done = await _cli(db_url, "import", "purchases", str(path), "--program", code,
                      "--enrol-missing", "--rejects", str(rejects))  # fmt: skip
    assert done.exit_code == 1, done.output
    with rejects.open(newline="") as fh:
        refused_rows = list(csv.DictReader(fh))
    assert {r["external_id"] for r in refused_rows} == set(REFUSED)
    reasons = {r["external_id"]: r["reason"] for r in refused_rows}
    by_backtest = {r["external_id"]: r["reason"] for r in replay["rejects"]}
    assert reasons == by_backtest  # the same reasons, from the same reader

    # quotes of every purchase: the accepted ones earn what was imported and replayed, the
    # refused ones are refused by the API on the same field
    quoted: dict[str, int] = defaultdict(int)
    by_rule: Counter[str] = Counter()
    for external_id, body in _bodies().items():
        q = await client.post(f"/v1/programs/{code}/events/quote", json=body)
        if external_id in REFUSED:
            assert q.status_code == 422, q.text
            fields = {e["field"] for e in q.json()["errors"]}
            assert REFUSED[external_id] in fields, q.text
            continue
        assert q.status_code == 200, q.text
        quoted[body["member"]["external_id"]] += q.json()["points"]
        for effect in q.json()["effects"]:
            by_rule[effect["rule"]] += effect["points"]
    assert by_rule["drinks-x2"] > 0
    assert by_rule["per-unit"] > 0
    assert replay["by_rule"] == dict(by_rule)
    assert replay["points_issued"] == sum(quoted.values())

    # and the ledger holds exactly that, member by member
    for member, points in quoted.items():
        found = await client.get(f"/v1/programs/{code}/members?external_id={member}")
        (item,) = found.json()["items"]
        balance = (await client.get(f"/v1/programs/{code}/members/{item['id']}/balance")).json()
        assert balance["available"] == points, member
    months = (await client.get(f"/v1/programs/{code}/reports/monthly")).json()["months"]
    assert {m["month"]: m["points_issued"] for m in months if m["points_issued"]} == {
        month: sum(rules.values()) for month, rules in replay["by_month"].items()
    }


async def test_a_file_the_import_cannot_read_is_refused_with_a_message(
    client: httpx.AsyncClient, db_url: str, tmp_path: Path
) -> None:
    code = await create_program(client)
    path = tmp_path / "no_total.csv"
    path.write_text("member_external_id,external_id,occurred_at\nana,p1,2026-03-02T09:00:00Z\n")
    done = await _cli(db_url, "backtest", "--program", code, "--from", str(path))
    assert done.exit_code == 2, done.output
    assert "lacks columns ['total']" in done.stderr
    assert "Traceback" not in done.output
    done = await _cli(db_url, "backtest", "--program", code, "--from", str(tmp_path / "none.csv"))
    assert done.exit_code == 2, done.output
    assert "cannot read purchases" in done.stderr
