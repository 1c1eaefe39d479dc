"""Helpers of the tiers tests: a clock set to exact instants, ladders, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from habitue import clock
from tests.conftest import new_code


def set_now(at: datetime) -> None:
    """Move the test clock so that `clock.now()` is `at` (give or take the test's runtime)."""
    clock.reset()
    clock.advance(at - clock.now())


async def ladder(
    client: httpx.AsyncClient,
    program: str,
    *,
    metric: str = "qualifying_spend",
    window: dict[str, Any] | None = None,
    grace_days: int = 0,
    tiers: list[dict[str, Any]] | None = None,
) -> httpx.Response:
    body = {
        "metric": metric,
        "window": window or {"kind": "calendar_year"},
        "grace_days": grace_days,
        "tiers": tiers
        if tiers is not None
        else [
            {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00", "multiplier": "1.5",
             "privileges": ["free_delivery"]},
            {"code": "gold", "name": "Gold", "threshold": "500.00", "multiplier": "2",
             "privileges": ["free_delivery", "lounge", "presale"]},
        ],
    }  # fmt: skip
    return await client.post(f"/v1/programs/{program}/tiers", json=body)


async def event(
    client: httpx.AsyncClient,
    program: str,
    member_id: str,
    type_: str,
    *,
    at: datetime | None = None,
    total: str | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_,
        "member": {"id": member_id},
        "external_id": external_id or new_code("e"),
    }
    if total is not None:
        body["total"] = total
    if at is not None:
        body["occurred_at"] = at.isoformat()
    r = await client.post(f"/v1/programs/{program}/events", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def tier(client: httpx.AsyncClient, program: str, member_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/programs/{program}/members/{member_id}/tier")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def evaluate(client: httpx.AsyncClient, program: str) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{program}/tiers/evaluate")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data
