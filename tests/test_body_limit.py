"""The body limit: a body over `max_body_bytes` is 413 problem+json, declared or chunked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from tests.conftest import new_code

LIMIT = 1_000_000  # Settings.max_body_bytes by default


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b'{"code": "' + b"x" * (size - 10)
    sent = size
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


def _too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "https://habitue.dev/errors/payload-too-large"
    assert problem["status"] == 413


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/programs", content=_chunks(2 * LIMIT), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    _too_large(r)


async def test_a_declared_length_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/programs", content=b"{" + b" " * (2 * LIMIT) + b"}")
    _too_large(r)


async def test_a_chunked_body_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    code = new_code()
    body = (
        b'{"code": "%s", "name": "Chunked", "currency": "EUR", "timezone": "Europe/Paris"}'
        % code.encode()
    )

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    r = await client.post(
        "/v1/programs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v1/programs/{code}")).json()["name"] == "Chunked"
