"""SMS and push through an HTTP provider: one JSON `POST` per message (httpx)."""

from __future__ import annotations

from typing import Any

import httpx

from habitue.messaging.channels import DeliveryError, Outgoing


async def post_json(
    client: httpx.AsyncClient, url: str, *, content: bytes, headers: dict[str, str]
) -> int:
    """POST without following redirects; 2xx is delivered, 5xx/429/timeouts/network errors
    may succeed later, any other answer (3xx, 4xx) will not."""
    try:
        response = await client.post(url, content=content, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError("timed out", retry=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"network error: {type(exc).__name__}: {exc}", retry=True) from exc
    code = response.status_code
    if 200 <= code < 300:
        return code
    if 300 <= code < 400:
        raise DeliveryError(
            f"HTTP {code}: redirects are not followed", retry=False, status_code=code
        )
    raise DeliveryError(f"HTTP {code}", retry=code >= 500 or code == 429, status_code=code)


class _Provider:
    name = ""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def body(self, message: Outgoing) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, message: Outgoing) -> int | None:
        import orjson

        return await post_json(
            self.client,
            self.url,
            content=orjson.dumps(self.body(message)),
            headers={"content-type": "application/json"},
        )

    async def close(self) -> None:
        await self.client.aclose()


class SmsChannel(_Provider):
    """`{"to": phone, "text": text}`."""

    name = "sms"

    def body(self, message: Outgoing) -> dict[str, Any]:
        return {"to": message.to, "text": message.text}


class PushChannel(_Provider):
    """`{"to": member id, "title", "body", "data"}`."""

    name = "push"

    def body(self, message: Outgoing) -> dict[str, Any]:
        return {
            "to": message.to,
            "title": message.subject or "",
            "body": message.text,
            "data": dict(message.data),
        }
