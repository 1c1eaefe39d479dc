"""/openapi.json tells the truth: problem+json errors everywhere, instants with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

PROBLEM = "application/problem+json"


async def _schema(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


async def test_every_error_is_documented_as_problem_json(client: httpx.AsyncClient) -> None:
    schema = await _schema(client)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["schemas"]["Problem"]["required"]) == {
        "type", "title", "status", "detail"
    }  # fmt: skip
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) >= 91
    for path, method, op in operations:
        codes = op["responses"]
        for status in ("401", "403", "404", "422", "429", "503"):
            assert status in codes, (method, path, status)
        if "requestBody" in op:
            assert {"400", "413"} <= set(codes), (method, path)
        for status, response in codes.items():
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM], (method, path, status)
        assert op["security"] == [{"bearer": []}]


async def test_documented_success_statuses_match(client: httpx.AsyncClient) -> None:
    paths = (await _schema(client))["paths"]
    assert "201" in paths["/v1/programs"]["post"]["responses"]
    assert "200" not in paths["/v1/programs"]["post"]["responses"]
    batch = paths["/v1/programs/{program}/coupons/batches"]["post"]["responses"]["201"]
    assert list(batch["content"]) == ["text/csv"]
    report = paths["/v1/programs/{program}/reports/monthly"]["get"]["responses"]["200"]
    assert set(report["content"]) == {
        "application/json", "text/csv", "application/vnd.apache.parquet"
    }  # fmt: skip


async def test_a_validation_error_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/programs", json={"code": 1})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM


async def test_instants_carry_an_offset(client: httpx.AsyncClient, program: str) -> None:
    r = await client.get(f"/v1/programs/{program}")
    assert r.status_code == 200
    created = datetime.fromisoformat(r.json()["created_at"])
    assert created.utcoffset() is not None, r.json()["created_at"]
    member = (await client.post(f"/v1/programs/{program}/members", json={})).json()
    assert datetime.fromisoformat(member["enrolled_at"]).utcoffset() is not None
