"""Webhooks: a signed `POST` to the endpoint's URL (the worker signs; see `signing`)."""

from __future__ import annotations

import httpx

from habitue.messaging.channels import Outgoing
from habitue.messaging.channels.http import post_json


class WebhookChannel:
    """`to` is the URL, `text` the JSON body, `headers` the Standard Webhooks headers.

    A receiver has `timeout` seconds (10 by default) to answer; redirects are not followed.
    """

    name = "webhook"

    def __init__(self, *, timeout: float) -> None:
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def send(self, message: Outgoing) -> int | None:
        headers = {"content-type": "application/json", **message.headers}
        return await post_json(
            self.client, message.to, content=message.text.encode(), headers=headers
        )

    async def close(self) -> None:
        await self.client.aclose()
