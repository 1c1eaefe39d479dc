"""Helpers of the web tests: CSRF tokens from pages, members signed up through the portal."""

from __future__ import annotations

import re
import secrets

import httpx

from habitue.db import Database
from habitue.web import service as web_service

PASSWORD = "correct-horse-battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def signup(
    client: httpx.AsyncClient, program: str, *, email: str | None = None, **fields: str
) -> httpx.Response:
    """Sign a new member up through the portal form; the client keeps the session cookie."""
    page = await client.get(f"/app/{program}/signup")
    assert page.status_code == 200, page.text
    form = {
        "csrf_token": csrf_of(page.text),
        "email": email or f"m{secrets.token_hex(4)}@example.com",
        "password": PASSWORD,
        "first_name": "Ana",
        "last_name": "Martin",
        "locale": "en",
        "consent_email": "on",
        **fields,
    }
    return await client.post(f"/app/{program}/signup", data=form)


async def make_staff(db: Database, role: str, program_id: int | None = None) -> str:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    await db.write(
        lambda s: web_service.create_staff(
            s, email=email, role=role, password=PASSWORD, program_id=program_id
        )
    )
    return email


async def staff_signin(client: httpx.AsyncClient, email: str) -> httpx.Response:
    page = await client.get("/admin/signin")
    return await client.post(
        "/admin/signin",
        data={"csrf_token": csrf_of(page.text), "email": email, "password": PASSWORD},
    )
