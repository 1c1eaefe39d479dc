"""Analytics through the HTTP API: scores, segments, recommendations, campaigns, reports."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from habitue import clock
from habitue.analytics import recommend_eval
from tests.conftest import create_program, enrol, purchase

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data"


def _set_now(moment: datetime) -> None:
    clock.reset()
    clock.advance(moment - datetime.now(UTC))


def _no_nan(value: Any) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for v in value.values():
            _no_nan(v)
    elif isinstance(value, list):
        for v in value:
            _no_nan(v)


async def _buy(
    client: httpx.AsyncClient,
    program: str,
    member: str,
    total: str,
    days_ago: float,
    lines: list[dict[str, Any]] | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    extra: dict[str, Any] = {"occurred_at": (NOW - timedelta(days=days_ago)).isoformat()}
    if lines is not None:
        extra["lines"] = lines
    if external_id is not None:
        extra["external_id"] = external_id
    r = await purchase(client, program, member, total, **extra)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _store(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    """A program with members of every shape: regulars, one purchase, one day, a refund, none."""
    _set_now(NOW)
    code = await create_program(client)
    members = [
        await enrol(
            client, code, consents={"email": i % 2 == 0, "profiling": True, "analytics": True}
        )
        for i in range(7)
    ]
    coffee = {"sku": "coffee", "category": "drinks", "quantity": "1", "unit_price": "3.00"}
    cake = {"sku": "cake", "category": "food", "quantity": "1", "unit_price": "5.00"}
    tea = {"sku": "tea", "category": "drinks", "quantity": "1", "unit_price": "3.00"}
    # Three regulars of different intensity, over months.
    for i, (every, total) in enumerate(((7, "8.00"), (20, "3.00"), (45, "5.00"))):
        for k in range(0, 300, every):
            basket = [coffee, cake] if total == "8.00" else [coffee if i == 1 else cake]
            await _buy(client, code, members[i]["id"], total, k + i, basket)
    await _buy(client, code, members[3]["id"], "3.00", 100, [tea])  # one purchase
    for _ in range(3):  # all purchases on one day
        await _buy(client, code, members[4]["id"], "3.00", 2, [coffee])
    # A purchase outside the RFM window whose refund falls inside it.
    await _buy(client, code, members[5]["id"], "10.00", 400, external_id="old-buy")
    r = await client.post(
        f"/v1/programs/{code}/events",
        json={
            "type": "refund",
            "external_id": "old-refund",
            "refers_to": "old-buy",
            "total": "10.00",
            "member": {"id": members[5]["id"]},
            "occurred_at": (NOW - timedelta(days=10)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    return code, members


async def test_empty_program_scores_segments_and_report(client: httpx.AsyncClient) -> None:
    _set_now(NOW)
    code = await create_program(client)
    member = await enrol(client, code)
    r = await client.post(f"/v1/programs/{code}/analytics/scores")
    assert r.status_code == 200, r.text
    assert r.json()["members_scored"] == 0
    assert r.json()["clv_fitted"] is False
    r = await client.get(f"/v1/programs/{code}/members/{member['id']}/scores")
    assert r.status_code == 200, r.text
    assert r.json()["segment"] is None
    assert r.json()["computed_at"] is None
    r = await client.get(f"/v1/programs/{code}/analytics/segments")
    assert r.status_code == 200
    assert r.json()["items"] == []
    r = await client.get(f"/v1/programs/{code}/reports/monthly")
    assert r.status_code == 200
    assert r.json() == {"months": [], "top_rewards": []}
    r = await client.get(f"/v1/programs/{code}/members/{member['id']}/recommendations")
    assert r.status_code == 200
    assert r.json() == {
        "member_id": member["id"],
        "source": "popular",
        "items": [],
    }
    r = await client.get(f"/v1/programs/{code}/members/nobody/scores")
    assert r.status_code == 404


async def test_scores_segments_and_recommendations(client: httpx.AsyncClient) -> None:
    code, members = await _store(client)
    r = await client.post(f"/v1/programs/{code}/analytics/scores")
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["members_scored"] == 6  # the refunded member purchased, outside the window
    assert run["members_with_rfm"] == 5
    assert run["clv_fitted"] is True
    scores = []
    for m in members:
        r = await client.get(f"/v1/programs/{code}/members/{m['id']}/scores")
        assert r.status_code == 200, r.text
        _no_nan(r.json())
        scores.append(r.json())
    best = scores[0]
    assert best["frequency"] == 43
    assert best["r"] == 5
    assert best["segment"] == "Champions"
    assert float(best["clv"]) > float(scores[2]["clv"]) > 0
    assert 0 < best["p_alive"] <= 1
    one = scores[3]
    assert one["frequency"] == 1
    assert one["segment"] is not None
    assert one["p_alive"] == 1.0
    assert scores[4]["frequency"] == 3
    assert scores[4]["recency_days"] == 2
    assert scores[5]["r"] is None
    assert scores[5]["clv"] is not None
    assert scores[6]["segment"] is None  # never purchased

    sizes = (await client.get(f"/v1/programs/{code}/analytics/segments?months=3")).json()
    assert {i["as_of"][:7] for i in sizes["items"]} <= {"2026-04", "2026-05", "2026-06"}
    assert sum(i["members"] for i in sizes["items"] if i["as_of"].startswith("2026-06-15")) == 5

    r = await client.post(
        f"/v1/programs/{code}/segments",
        json={"code": "vip", "condition": 'member.segment == "Champions" && member.clv > 1.0'},
    )
    assert r.status_code == 201, r.text
    assert r.json()["members"] == 1
    r = await client.post(
        f"/v1/programs/{code}/segments",
        json={
            "code": "drinkers",
            "condition": '"drinks" in member.categories && member.consents.email',
        },
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/programs/{code}/segments/drinkers/members")
    # members 0 (coffee), 1 (coffee), 3 (tea), 4 (coffee); with email consent: 0 and 4
    assert sorted(r.json()["members"]) == sorted([members[0]["id"], members[4]["id"]])
    r = await client.post(
        f"/v1/programs/{code}/segments",
        json={"code": "attr", "condition": 'member.attributes.city == "Paris"'},
    )
    assert r.status_code == 201
    assert r.json()["members"] == 0
    listed = (await client.get(f"/v1/programs/{code}/segments")).json()
    assert [s["code"] for s in listed] == ["attr", "drinkers", "vip"]

    r = await client.get(f"/v1/programs/{code}/members/{members[1]['id']}/recommendations")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "item-item"
    assert body["items"][0] == "cake"
    r = await client.get(f"/v1/programs/{code}/members/{members[6]['id']}/recommendations?k=2")
    assert r.json() == {
        "member_id": members[6]["id"],
        "source": "popular",
        "items": ["coffee", "cake"],
    }
    r = await client.get(
        f"/v1/programs/{code}/members/{members[4]['id']}/recommendations?exclude_recent_days=7"
    )
    assert "coffee" not in r.json()["items"]
    # The blend of the recommendation protocol (issue 22): own items first.
    r = await client.get(
        f"/v1/programs/{code}/members/{members[1]['id']}/recommendations",
        params={"strategy": "blend", "k": 3},
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "blend"
    assert len(r.json()["items"]) == 3
    r = await client.get(
        f"/v1/programs/{code}/members/{members[6]['id']}/recommendations",
        params={"strategy": "blend", "k": 2},
    )
    assert r.json()["source"] == "popular"
    r = await client.get(
        f"/v1/programs/{code}/members/{members[1]['id']}/recommendations",
        params={"strategy": "magic"},
    )
    assert r.status_code == 422


async def test_the_blend_served_is_the_evaluated_model(client: httpx.AsyncClient) -> None:
    """`strategy=blend` serves each member the recommendation protocol's model's top k on the
    program's own lines (`recommend_eval.model_top_k`): next basket, and new to you when the
    recent purchases excluded are all the member bought. The first 36 members of the tests'
    small set (tests/analytics/data/baskets_small.csv), every line."""
    _set_now(NOW)
    code = await create_program(client)
    table = pacsv.read_csv(
        DATA / "baskets_small.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"occurred_at": pa.timestamp("us", "UTC")}
        ),
    )
    baskets: dict[tuple[str, datetime], list[str]] = {}
    first = set(list(dict.fromkeys(table.column("member_id").to_pylist()))[:36])
    for row in table.to_pylist():
        if row["member_id"] in first:
            baskets.setdefault((row["member_id"], row["occurred_at"]), []).append(row["item_id"])
    ids: dict[str, str] = {}
    for (member, at), items in baskets.items():
        if member not in ids:
            consents = {"profiling": True, "analytics": True}
            ids[member] = (await enrol(client, code, consents=consents))["id"]
        lines = [{"sku": i, "quantity": "1", "unit_price": "1.00"} for i in items]
        r = await purchase(
            client, code, ids[member], f"{len(items)}.00", lines=lines, occurred_at=at.isoformat()
        )
        assert r.status_code == 201, r.text
    posted = pa.table(
        {
            "member_id": [ids[m] for (m, _), items in baskets.items() for _ in items],
            "item_id": [i for items in baskets.values() for i in items],
            "occurred_at": pa.array(
                [at for (_, at), items in baskets.items() for _ in items],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    end = max(at for _, at in baskets) + timedelta(microseconds=1)
    ranked = recommend_eval.model_top_k(
        recommend_eval.in_time_order(posted), split_at=end, k=10
    )
    assert len(ranked["next basket"]) == len(ids) == 36
    url = f"/v1/programs/{code}/members/{{}}/recommendations"
    differ = 0
    for member_id, items in ranked["next basket"].items():
        r = await client.get(url.format(member_id), params={"strategy": "blend"})
        assert r.status_code == 200, r.text
        assert r.json() == {"member_id": member_id, "source": "blend", "items": items}
        r = await client.get(
            url.format(member_id), params={"strategy": "blend", "exclude_recent_days": 365}
        )
        assert r.json()["items"] == ranked["new to you"][member_id]
        differ += ranked["new to you"][member_id] != items
    assert differ == 36
    # One more basket (a change of less than 10 %): the model is refitted on the new lines
    # with the blends chosen before (`BLENDS_REFRESH`), not chosen again.
    member_id = next(iter(ranked["next basket"]))
    at = end + timedelta(days=1)
    lines = [{"sku": "i8", "quantity": "1", "unit_price": "1.00"}]
    r = await purchase(client, code, member_id, "1.00", lines=lines, occurred_at=at.isoformat())
    assert r.status_code == 201, r.text
    more = pa.concat_tables(
        [posted, pa.table({"member_id": [member_id], "item_id": ["i8"],
                           "occurred_at": pa.array([at], pa.timestamp("us", "UTC"))})]
    )  # fmt: skip
    kept = recommend_eval.fit_served(
        more, validation=recommend_eval.fit_served(posted).validation
    )
    history = [i for m, i in zip(more.column("member_id").to_pylist(),
                                 more.column("item_id").to_pylist(), strict=True)
               if m == member_id]  # fmt: skip
    r = await client.get(url.format(member_id), params={"strategy": "blend"})
    assert r.json()["items"] == recommend_eval.recommend_top_k(kept, history, k=10)


async def test_segment_conditions_that_do_not_compile_are_422(client: httpx.AsyncClient) -> None:
    code = await create_program(client)
    for condition, reason in (
        ("member.r >=", "invalid CEL"),
        ("member.colour == 'red'", "unknown field 'member.colour'"),
        ("customer.r > 1", "unknown variable 'customer'"),
        ("member.r + 1", "boolean"),
    ):
        r = await client.post(
            f"/v1/programs/{code}/segments", json={"code": "bad", "condition": condition}
        )
        assert r.status_code == 422, (condition, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert reason in r.json()["detail"], r.json()
    r = await client.post(f"/v1/programs/{code}/segments", json={"code": "ok", "condition": "true"})
    assert r.status_code == 201
    r = await client.post(f"/v1/programs/{code}/segments", json={"code": "ok", "condition": "true"})
    assert r.status_code == 409
    assert (await client.get(f"/v1/programs/{code}/segments/none")).status_code == 404


async def test_campaign_assignment_report_and_bad_shares(client: httpx.AsyncClient) -> None:
    code, members = await _store(client)
    window = {
        "starts_at": (NOW - timedelta(days=60)).isoformat(),
        "ends_at": (NOW + timedelta(days=1)).isoformat(),
    }
    for share in (0, 1, 1.5, -0.1):
        r = await client.post(
            f"/v1/programs/{code}/campaigns",
            json={"code": "bad", "kind": "offer", "holdout_share": share, **window},
        )
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith("invalid-holdout-share")
    backwards = {"starts_at": window["ends_at"], "ends_at": window["starts_at"]}
    naive = {"starts_at": "2026-06-01T00:00:00", "ends_at": "2026-06-30T00:00:00"}
    for times in (backwards, naive):
        r = await client.post(
            f"/v1/programs/{code}/campaigns",
            json={"code": "bad", "kind": "offer", "holdout_share": 0.1, **times},
        )
        assert r.status_code == 422, r.text
    r = await client.post(
        f"/v1/programs/{code}/campaigns",
        json={"code": "spring", "kind": "newsletter", "holdout_share": 0.5, **window},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["treatment"] + created["holdout"] == len(members)
    r = await client.get(f"/v1/programs/{code}/campaigns/spring/report")
    assert r.status_code == 200, r.text
    report = r.json()
    _no_nan(report)
    assert report["treatment"]["members"] + report["holdout"]["members"] == len(members)
    assert report["verdict"].startswith(("Not significant", "Significant"))
    again = (await client.get(f"/v1/programs/{code}/campaigns/spring/report")).json()
    assert again == report  # deterministic
    assert (await client.get(f"/v1/programs/{code}/campaigns/nope/report")).status_code == 404


async def test_monthly_report_formats(client: httpx.AsyncClient) -> None:
    code, members = await _store(client)
    r = await client.post(
        f"/v1/programs/{code}/rewards",
        json={
            "code": "mug",
            "kind": "product",
            "cost_points": 20,
            "texts": {"en": {"name": "Mug"}},
        },
    )
    assert r.status_code == 201, r.text
    for _ in range(2):
        r = await client.post(
            f"/v1/programs/{code}/members/{members[0]['id']}/redemptions", json={"reward": "mug"}
        )
        assert r.status_code == 201, r.text
    r = await client.get(f"/v1/programs/{code}/reports/monthly")
    assert r.status_code == 200, r.text
    months = r.json()["months"]
    _no_nan(months)
    assert months[-1]["month"] == "2026-06"
    issued = sum(m["points_issued"] for m in months)
    # Points are booked when recorded (all today); issued is net of the refund's take-back.
    assert months[-1]["outstanding_liability"] == issued - 40 > 0
    refunded = next(m for m in months if m["refunds"] != "0.00")
    assert refunded["refunds"] == "10.00"
    assert months[-1]["points_redeemed"] == 40
    assert months[-1]["redemption_rate"] == round(40 / months[-1]["points_issued"], 6)
    assert r.json()["top_rewards"] == [
        {"month": "2026-06", "reward": "mug", "redemptions": 2, "points": 40, "members": 1}
    ]
    r = await client.get(f"/v1/programs/{code}/reports/monthly?format=csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0].startswith("month,active_members,purchases,revenue")
    assert len(r.text.splitlines()) == len(months) + 1
    r = await client.get(f"/v1/programs/{code}/reports/monthly?format=parquet")
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == len(months)
    assert (await client.get(f"/v1/programs/{code}/reports/monthly?format=xml")).status_code == 422
