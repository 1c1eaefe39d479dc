"""Backtest: the replay through `decide` matches the real ledger, and rules are totalled."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest

from habitue.analytics import backtest
from habitue.analytics.errors import InvalidAnalyticsInput
from habitue.db import Database, make_sync_engine
from habitue.programs import service as programs_service
from habitue.rules.types import EventInput, ProgramSnapshot
from habitue.tiers import periods
from habitue.tiers.qualify import (
    NO_TIER,
    Qualifier,
    QualifyingLadder,
    QualifyingTier,
    UnsupportedLadder,
)
from tests.conftest import create_program, enrol, purchase

PROGRAM = ProgramSnapshot(
    id=1,
    code="p",
    currency="EUR",
    currency_exponent=2,
    timezone="Europe/Paris",
    earn_rate=Decimal("1.75"),
    rounding="down",
    pending_days=0,
)


async def test_backtest_of_base_rate_equals_the_real_ledger(
    client: httpx.AsyncClient, db: Database, db_url: str
) -> None:
    code = await create_program(client, earn_rate="1.75")
    rng = random.Random(6)
    members = [(await enrol(client, code))["id"] for _ in range(5)]
    start = datetime.now(UTC) - timedelta(days=90)
    bought: list[tuple[str, str, int]] = []
    for i in range(40):
        member = rng.choice(members)
        cents = rng.randint(1, 9_999)
        r = await purchase(
            client,
            code,
            member,
            f"{cents // 100}.{cents % 100:02d}",
            external_id=f"buy-{i}",
            occurred_at=(start + timedelta(days=i * 2, hours=rng.randint(0, 23))).isoformat(),
        )
        assert r.status_code == 201, r.text
        bought.append((member, f"buy-{i}", cents))
    for member, external_id, cents in bought[:5]:  # partial refunds take back their share
        r = await client.post(
            f"/v1/programs/{code}/events",
            json={
                "type": "refund",
                "external_id": f"re-{external_id}",
                "refers_to": external_id,
                "total": f"{cents // 300}.{cents // 3 % 100:02d}",
                "member": {"id": member},
            },
        )
        assert r.status_code == 201, r.text
    months = (await client.get(f"/v1/programs/{code}/reports/monthly")).json()["months"]
    ledger_net = sum(m["points_issued"] for m in months)
    async with db.read() as session:
        info = await programs_service.get_info(session, code)
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            result = backtest.run_backtest(
                list(backtest.read_store(conn, info.id)), program=info.snapshot()
            )
    finally:
        engine.dispose()
    assert result.transactions == 45
    assert result.members == 5
    assert result.points_taken_back > 0
    assert result.net_points == ledger_net
    assert result.by_rule == {"base": result.points_issued}
    assert result.tier_mix is None


def _csv(path: Path) -> Path:
    rows = [
        "member_external_id,external_id,occurred_at,total,sku,category,quantity,unit_price",
        # A Wednesday evening in Paris (ritual), two lines.
        "ana,t1,2026-01-07T20:30:00Z,12.00,latte,coffee,2,4.50",
        "ana,t1,2026-01-07T20:30:00Z,12.00,cookie,food,1,3.00",
        "ana,t2,2026-01-08T09:00:00Z,4.50,latte,coffee,1,4.50",
        "ana,t3,2026-02-01T09:00:00Z,4.50,latte,coffee,1,4.50",
        "bo,t4,2026-02-03T09:00:00Z,3.00,cookie,food,1,3.00",
    ]
    target = path / "purchases.csv"
    target.write_text("\n".join(rows) + "\n")
    return target


def test_backtest_from_csv_per_rule_per_month_with_caps(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        orjson.dumps(
            [
                {
                    "code": "coffee-bonus",
                    "event_type": "purchase",
                    "line_condition": 'line.category == "coffee"',
                    "effect": {"kind": "per_line", "points": 10},
                    "caps": [{"period": "month", "count": 1}],
                },
                {
                    "code": "double",
                    "event_type": "purchase",
                    "condition": "event.total_minor >= 1000",
                    "effect": {"kind": "multiplier", "factor": "2"},
                },
            ]
        ).decode()
    )
    rule_set = backtest.load_rules(rules)
    result = backtest.run_backtest(
        backtest.read_csv(_csv(tmp_path), currency_exponent=2),
        program=PROGRAM,
        rules=rule_set,
        redemption_rate=0.5,
        point_value_minor=Decimal("0.5"),
    )
    # base: 12.00×1.75=21, 4.50×1.75=7 (twice), 3.00×1.75=5 → 40
    assert result.by_rule["base"] == 40
    # one coffee grant per member per month: January t1 (not t2), February t3
    assert result.by_rule["coffee-bonus"] == 20
    assert result.by_rule["double"] == 21  # the multiplier adds the base again on t1 only
    assert result.by_month == {
        "2026-01": {"base": 28, "coffee-bonus": 10, "double": 21},
        "2026-02": {"base": 12, "coffee-bonus": 10},
    }
    assert result.points_issued == 81
    assert result.expected_redemptions == 40  # round(81 × 0.5), half to even
    assert result.expected_cost_minor == 20
    summary = result.as_dict()
    assert summary["tier_mix"] is None


def test_backtest_rejects_bad_settings_and_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidAnalyticsInput):
        backtest.run_backtest([], program=PROGRAM, redemption_rate=1.5)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "member_external_id,external_id,occurred_at,total\n"
        "ana,t1,yesterday,1.00\nana,t2,2026-01-05T10:00:00Z,2.00\n"
        "bo,t3,2026-01-06T10:00:00Z,3.00\nbo,t2,2026-01-07T10:00:00Z,4.00\n"
    )
    # what the import rejects is not replayed, and is counted with the import's reason
    read = backtest.read_csv(bad, currency_exponent=2)
    result = backtest.run_backtest(read, program=PROGRAM)
    assert (result.transactions, result.rejected, result.points_issued) == (2, 2, 8)
    assert [e for e, _ in result.rejects] == ["t1", "t2"]
    assert result.rejects[0][1].startswith("occurred_at:")
    assert result.rejects[1][1] == "duplicate external_id in the file"
    no_total = tmp_path / "no_total.csv"
    no_total.write_text("member_external_id,external_id,occurred_at\nana,t1,2026-01-05\n")
    with pytest.raises(InvalidAnalyticsInput, match="total"):
        list(backtest.read_csv(no_total, currency_exponent=2))
    with pytest.raises(InvalidAnalyticsInput):
        list(backtest.read_csv(tmp_path / "missing.csv", currency_exponent=2))
    empty = backtest.run_backtest([], program=PROGRAM)
    assert empty.points_issued == 0
    assert empty.rate == 0.0


LADDER = {
    "metric": "qualifying_spend",
    "window": {"kind": "calendar_year"},
    "tiers": [
        {"code": "member", "name": "Member", "threshold": "0.00"},
        {"code": "silver", "name": "Silver", "threshold": "100.00"},
        {"code": "gold", "name": "Gold", "threshold": "300.00"},
    ],
}


def _buy(member: str, key: str, at: str, cents: int) -> backtest.Transaction:
    event = EventInput(
        type="purchase", external_id=key, occurred_at=datetime.fromisoformat(at), total_minor=cents
    )
    return backtest.Transaction(member, event)


def test_backtest_tier_mix_over_a_year_boundary(tmp_path: Path) -> None:
    path = tmp_path / "ladder.json"
    path.write_bytes(orjson.dumps(LADDER))
    ladder = backtest.load_ladder(path, currency_exponent=2)
    history = [
        _buy("a", "t1", "2025-03-10T10:00:00+00:00", 15_000),  # a: silver
        _buy("a", "t2", "2025-06-15T10:00:00+00:00", 20_000),  # a: 350 in 2025, gold
        # 23:30 on 31 December in Paris: counts in 2025, b is silver
        _buy("b", "t3", "2025-12-31T22:30:00+00:00", 10_000),
        # 00:30 on 1 January in Paris: counts in 2026 (250 alone, not gold), after the close
        _buy("b", "t4", "2025-12-31T23:30:00+00:00", 25_000),
        _buy("a", "t5", "2026-02-01T10:00:00+00:00", 5_000),  # a spends only 50 in 2026
        _buy("c", "t6", "2026-03-01T10:00:00+00:00", 3_000),  # c: member
        _buy("a", "t7", "2027-01-10T10:00:00+00:00", 1_000),  # after the 2027 close
    ]
    result = backtest.run_backtest(history, program=PROGRAM, ladder=ladder)
    assert result.tier_mix == {
        "2025-03": {"member": 0, "silver": 1, "gold": 0},
        "2025-06": {"member": 0, "silver": 0, "gold": 1},
        "2025-12": {"member": 0, "silver": 1, "gold": 1},
        # the 2026 close keeps a gold (350 in 2025) and b silver (100 in 2025)
        "2026-01": {"member": 0, "silver": 1, "gold": 1},
        "2026-02": {"member": 0, "silver": 1, "gold": 1},
        "2026-03": {"member": 1, "silver": 1, "gold": 1},
        # the 2027 close: a did not requalify (50) and drops one step to silver; b keeps
        # silver (250 in 2026); c stays member
        "2027-01": {"member": 1, "silver": 2, "gold": 0},
    }
    assert list(result.as_dict()["tier_mix"]) == sorted(result.tier_mix)
    # the tier reaches `decide`: same points as without a ladder (multipliers of 1)
    assert result.points_issued == backtest.run_backtest(history, program=PROGRAM).points_issued


def test_qualifier_rolling_window_and_no_base_tier() -> None:
    ladder = QualifyingLadder(
        "visits",
        periods.Window(periods.ROLLING, 2),
        (QualifyingTier("regular", 2), QualifyingTier("habitue", 4)),
    )
    q = Qualifier(ladder, "UTC")
    day = datetime(2026, 1, 5, tzinfo=UTC)
    assert q.add("m", day, 1) == -1
    assert q.mix() == {NO_TIER: 1, "regular": 0, "habitue": 0}
    assert q.add("m", day + timedelta(days=1), 1) == 0  # two visits: regular
    assert q.add("m", datetime(2026, 2, 3, tzinfo=UTC), 2) == 1  # Jan + Feb = 4: habitue
    # 1 April closes February–March (2 visits: regular, kept); 1 May closes March–April (0):
    # one step down only from regular to no tier
    q.advance(datetime(2026, 4, 1, tzinfo=UTC).date())
    assert q.rank("m") == 0
    q.advance(datetime(2026, 5, 1, tzinfo=UTC).date())
    assert q.rank("m") == -1
    with pytest.raises(UnsupportedLadder):
        QualifyingLadder("visits", periods.Window(periods.ANNIVERSARY), ladder.tiers)


def test_backtest_rejects_bad_ladders(tmp_path: Path) -> None:
    bad = {**LADDER, "tiers": [{"code": "x", "name": "X", "threshold": 5}]}
    with pytest.raises(InvalidAnalyticsInput):
        backtest.ladder_from_dict(bad, currency_exponent=2)
    anniversary = {**LADDER, "window": {"kind": "anniversary_year"}}
    with pytest.raises(InvalidAnalyticsInput, match="anniversary"):
        backtest.ladder_from_dict(anniversary, currency_exponent=2)
    with pytest.raises(InvalidAnalyticsInput):
        backtest.load_ladder(tmp_path / "missing.json", currency_exponent=2)


@pytest.mark.parametrize(
    "timezone",
    ["Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe", "UTC"],
)
def test_the_replays_period_keys_are_the_rules_period_keys(timezone: str) -> None:
    """The simulated ledger memoises period keys per local day (per quarter hour on the days
    the zone's offset changes): the same keys as `rules.usage.period_keys`, DST days included."""
    from habitue.rules.compile import compile_rules
    from habitue.rules.usage import period_keys

    ledger = backtest.SimulatedLedger(compile_rules(()), timezone)
    rng = random.Random(3)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    times = [
        epoch
        + timedelta(seconds=rng.randint(0, 60 * 365 * 86_400), microseconds=rng.randint(0, 999_999))
        for _ in range(3_000)
    ]
    changes = (datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 10, 24, tzinfo=UTC))
    times += [
        start + timedelta(minutes=m, seconds=13) for start in changes for m in range(0, 4_320, 7)
    ]
    for at in times:
        assert ledger.period_keys(at) == period_keys(at, timezone), at
    # In time order (the replay's order: the last span's keys are kept), with times of other
    # zones, and around the spans' bounds.
    fixed = dt_timezone(timedelta(hours=-5, minutes=-30))
    ordered = sorted(times)
    days = (*changes, datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 7, 6, tzinfo=UTC))
    ordered += [day + timedelta(minutes=m) for day in days for m in range(0, 4_320, 15)]
    ordered += [at.astimezone(fixed) for at in ordered[::5]]
    for at in sorted(ordered):
        for near in (at, at - timedelta(microseconds=1), at + timedelta(seconds=1)):
            assert ledger.period_keys(near) == period_keys(near, timezone), near
