"""Webhooks: a signed `POST` to the endpoint's URL (the worker signs; see `signing`).

Sent through `rawhttp.Pool`, keep-alive connections (at most `LIMIT_PER_HOST` to one
receiver): a webhook call costs a fifth of the CPU it costs through aiohttp and far less than
through httpx, whose pool stalled at a few hundred concurrent sends (bench/outbox,
docs/benchmarks.md).
"""

from __future__ import annotations

from habitue.messaging.channels import DeliveryError, Outgoing
from habitue.messaging.channels.rawhttp import HttpError, Pool

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
        self.pool = Pool(limit_per_host=LIMIT_PER_HOST, timeout=timeout)

    async def send(self, message: Outgoing) -> int | None:
        headers = {"Content-Type": "application/json", **message.headers}
        try:
            code = await self.pool.post(message.to, message.text.encode(), headers)
        except TimeoutError as exc:
            raise DeliveryError("timed out", retry=True) from exc
        except (HttpError, OSError) as exc:
            raise DeliveryError(f"network error: {type(exc).__name__}: {exc}", retry=True) from exc
        return classify(code)

    async def close(self) -> None:
        await self.pool.close()
