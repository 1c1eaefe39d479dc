"""Webhooks: a signed `POST` to the endpoint's URL (the worker signs; see `signing`).

Sent with aiohttp over a pool of keep-alive connections (at most `LIMIT_PER_HOST` to one
receiver): measured against httpx, whose pool spends quadratic time assigning hundreds of
queued requests to connections (bench/outbox, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio

import aiohttp

from habitue.messaging.channels import DeliveryError, Outgoing

LIMIT = 512
LIMIT_PER_HOST = 64


def classify(code: int) -> int:
    """2xx is delivered; 5xx and 429 may succeed later; 3xx (not followed) and other 4xx not."""
    if 200 <= code < 300:
        return code
    if 300 <= code < 400:
        raise DeliveryError(
            f"HTTP {code}: redirects are not followed", retry=False, status_code=code
        )
    raise DeliveryError(f"HTTP {code}", retry=code >= 500 or code == 429, status_code=code)


class WebhookChannel:
    """`to` is the URL, `text` the JSON body, `headers` the Standard Webhooks headers.

    A receiver has `timeout` seconds (10 by default) to answer; redirects are not followed.
    """

    name = "webhook"

    def __init__(self, *, timeout: float) -> None:
        # The receiver's time runs from the moment its connection is ours (waiting for a
        # free pooled connection is not its fault): connect, then every read, within it.
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # made on first use: aiohttp binds a session to the running event loop
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=LIMIT, limit_per_host=LIMIT_PER_HOST)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=False
            )
        return self._session

    async def send(self, message: Outgoing) -> int | None:
        headers = {"content-type": "application/json", **message.headers}
        try:
            async with self._client().post(
                message.to, data=message.text.encode(), headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                code = response.status
        except TimeoutError as exc:
            raise DeliveryError("timed out", retry=True) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"network error: {type(exc).__name__}: {exc}", retry=True) from exc
        return classify(code)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)
