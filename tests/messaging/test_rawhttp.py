"""The webhook channel's HTTP/1.1 client against real local servers: keep-alive reuse,
chunked and read-to-end answers, a kept connection closed by the server, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from habitue.messaging.channels.rawhttp import HttpError, Pool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook?x=1"


async def _request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


@pytest.fixture
def connections() -> list[int]:
    return []


async def test_keep_alive_chunked_and_read_to_end(connections: list[int]) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head, body = await _request(reader)
                seen.append((head, body))
                n = len(seen)
                if n == 1:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif n == 2:
                    writer.write(
                        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n0\r\n\r\n"
                    )
                else:
                    writer.write(b"HTTP/1.0 307 Moved\r\nLocation: /x\r\n\r\nbye")
                    await writer.drain()
                    writer.close()
                    return
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server, url = await _serve(handler)
    pool = Pool(limit_per_host=4, timeout=2)
    try:
        assert await pool.post(url, b'{"a":1}', {"webhook-id": "evt_1"}) == 200
        assert await pool.post(url, b"{}", {}) == 503
        assert await pool.post(url, b"{}", {}) == 307
        assert len(connections) == 1  # one connection, kept for three requests
        head, body = seen[0]
        assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
        assert b"webhook-id: evt_1\r\n" in head and body == b'{"a":1}'
        assert await pool.post(url, b"{}", {}) == 307  # on a new connection
        assert len(connections) == 2
    finally:
        await pool.close()
        server.close()


async def test_a_kept_connection_the_server_closed_is_replaced(connections: list[int]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await _request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()  # closes the keep-alive connection without saying so

    server, url = await _serve(handler)
    pool = Pool(limit_per_host=1, timeout=2)
    try:
        assert await pool.post(url, b"{}", {}) == 204
        await asyncio.sleep(0.05)
        assert await pool.post(url, b"{}", {}) == 204
        assert len(connections) == 2
    finally:
        await pool.close()
        server.close()


async def test_timeouts_and_garbage() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await asyncio.sleep(5)
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await _serve(silent)
    pool = Pool(limit_per_host=2, timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await pool.post(url, b"{}", {})
    finally:
        server.close()
    server, url = await _serve(garbage)
    try:
        with pytest.raises(HttpError):
            await pool.post(url, b"{}", {})
    finally:
        await pool.close()
        server.close()
    with pytest.raises((HttpError, OSError)):
        await Pool(timeout=0.5).post("http://127.0.0.1:9/none", b"{}", {})
