"""A lean HTTP/1.1 client for webhook calls: `POST` over pooled keep-alive connections.

Why not a general client: the worker sends thousands of small `POST`s a second to a few
receivers, and the CPU a request costs is its ceiling. Measured on the bench receiver (one
request per keep-alive connection at a time, 64 connections): aiohttp about 330 µs of CPU per
request, httpx more (its pool also spends quadratic time assigning hundreds of queued requests
to connections), this client about a fifth of aiohttp. It does only what a webhook call needs:
http and https (certificates verified), a body with `Content-Length`, responses with
`Content-Length`, chunked or read to the end; no redirects followed (the caller sees the 3xx),
no cookies, no proxies, no HTTP/2.

Timeouts: connecting, then writing the request and reading the whole answer, each within
`timeout` seconds; a connection is never shared by two requests at once, and one that fails
in any way is closed.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024


class HttpError(Exception):
    """The request did not get a complete answer (network, protocol)."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Host:
    slots: asyncio.Semaphore
    idle: list[_Conn] = field(default_factory=list)


class Pool:
    """Keep-alive connections per (scheme, host, port), at most `limit_per_host` at once."""

    def __init__(self, *, limit_per_host: int = 64, timeout: float = 10.0) -> None:
        self.limit = limit_per_host
        self.timeout = timeout
        self._hosts: dict[tuple[str, str, int], _Host] = {}
        self._ssl: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _open(self, scheme: str, host: str, port: int) -> _Conn:
        tls = self._context() if scheme == "https" else None
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls else None, limit=_MAX_HEAD
            )
        return _Conn(reader, writer)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """`POST` `body` to `url`; the answer's status code. Raises HttpError or TimeoutError."""
        key, head = _target(url)
        lines = [head, *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}"]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        scheme, host, port = key
        slot = self._hosts.get(key)
        if slot is None:
            slot = self._hosts[key] = _Host(asyncio.Semaphore(self.limit))
        async with slot.slots:
            # a kept connection the receiver closed meanwhile fails before any answer: once,
            # try again on a fresh one
            for attempt in (0, 1):
                reused = bool(slot.idle) and attempt == 0
                conn = slot.idle.pop() if reused else await self._open(scheme, host, port)
                try:
                    status, keep = await self._exchange(conn, request)
                except _Stale:
                    conn.close()
                    if reused:
                        continue
                    raise HttpError("connection closed before an answer") from None
                except BaseException:
                    conn.close()
                    raise
                if keep:
                    slot.idle.append(conn)
                else:
                    conn.close()
                return status
        raise HttpError("unreachable")  # pragma: no cover

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bool]:
        async with asyncio.timeout(self.timeout):
            try:
                conn.writer.write(request)
                await conn.writer.drain()
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _Stale from exc
                raise HttpError("incomplete answer") from exc
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise _Stale from exc
            except asyncio.LimitOverrunError as exc:
                raise HttpError("answer headers too large") from exc
            except OSError as exc:
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            status, length, chunked, close = _parse_head(head)
            try:
                if status in (204, 304) or 100 <= status < 200:
                    pass
                elif chunked:
                    await _read_chunked(conn.reader)
                elif length is not None:
                    if length > _MAX_BODY:
                        await _discard(conn.reader, length)
                    else:
                        await conn.reader.readexactly(length)
                else:
                    await _read_to_end(conn.reader)
                    close = True
            except (asyncio.IncompleteReadError, OSError) as exc:
                raise HttpError(f"answer cut short: {type(exc).__name__}") from exc
        return status, not close

    async def close(self) -> None:
        for slot in self._hosts.values():
            while slot.idle:
                slot.idle.pop().close()
        self._hosts.clear()


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[tuple[str, str, int], str]:
    """((scheme, host, port), the request line and `Host` header) of a URL: parsed once per
    URL, not once per call (a webhook endpoint's URL repeats for every delivery)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
    return (scheme, host, port), f"POST {target} HTTP/1.1\r\nHost: {host_header}"


class _Stale(Exception):
    """The connection was closed by the other side before any byte of an answer."""


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content length, chunked, connection to close) of an answer's head."""
    try:
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        status = int(code)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError("not an HTTP answer") from exc
    if not version.startswith("HTTP/1."):
        raise HttpError("not an HTTP/1.x answer")
    length: int | None = None
    chunked = False
    close = version == "HTTP/1.0"
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            try:
                length = int(value)
            except ValueError as exc:
                raise HttpError("bad content-length") from exc
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            lowered = value.lower()
            close = "close" in lowered or (close and "keep-alive" not in lowered)
    return status, length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpError("bad chunk size") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return
        total += size
        if total > _MAX_BODY:
            raise HttpError("answer too large")
        await reader.readexactly(size + 2)


async def _discard(reader: asyncio.StreamReader, length: int) -> None:
    while length > 0:
        chunk = await reader.read(min(length, 65536))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(chunk)


async def _read_to_end(reader: asyncio.StreamReader) -> None:
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > _MAX_BODY:
            raise HttpError("answer too large")
