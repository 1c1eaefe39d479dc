"""Fixtures of the rewards tests."""

from __future__ import annotations

from typing import Any

import httpx


async def give(client: httpx.AsyncClient, program: str, member: str, points: int) -> None:
    r = await client.post(
        f"/v1/programs/{program}/members/{member}/adjustments",
        json={"points": points, "reason": "test"},
    )
    assert r.status_code == 201, r.text


async def balance(client: httpx.AsyncClient, program: str, member: str) -> int:
    r = await client.get(f"/v1/programs/{program}/members/{member}/balance")
    assert r.status_code == 200, r.text
    return int(r.json()["available"])


async def reward(client: httpx.AsyncClient, program: str, **fields: Any) -> dict[str, Any]:
    body = {"code": "mug", "kind": "product", "cost_points": 100,
            "texts": {"en": {"name": "Mug"}}, **fields}  # fmt: skip
    r = await client.post(f"/v1/programs/{program}/rewards", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def problem(r: httpx.Response, status: int, type_: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == f"https://habitue.dev/errors/{type_}"
