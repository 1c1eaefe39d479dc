"""Password and sign-in-link guessing on the pages: 429 with `Retry-After` past the limits."""

from __future__ import annotations

import httpx
import pytest

from habitue.db import Database
from habitue.settings import Settings
from tests.clients import serve
from tests.conftest import create_program
from tests.web.conftest import PASSWORD, csrf_of, make_staff, signup


async def portal_signin(
    c: httpx.AsyncClient, program: str, email: str, password: str
) -> httpx.Response:
    page = await c.get(f"/app/{program}/signin")
    data = {"csrf_token": csrf_of(page.text), "email": email, "password": password}
    return await c.post(f"/app/{program}/signin", data=data)


async def console_signin(c: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    page = await c.get("/admin/signin")
    data = {"csrf_token": csrf_of(page.text), "email": email, "password": password}
    return await c.post("/admin/signin", data=data)


async def ask_link(c: httpx.AsyncClient, program: str, email: str) -> httpx.Response:
    page = await c.get(f"/app/{program}/signin")
    data = {"csrf_token": csrf_of(page.text), "link_email": email}
    return await c.post(f"/app/{program}/signin/link", data=data)


def refused(r: httpx.Response, retry_after: int, message: str) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["retry-after"] == str(retry_after)
    assert message in r.text


WRONG = "Too many wrong attempts"


async def test_wrong_portal_passwords_are_limited_per_account_and_address(
    settings: Settings, db: Database
) -> None:
    async with serve(settings, db) as served:
        async with served.at("10.1.0.1") as admin:
            program = await create_program(admin)
        for who in ("ana", "bo"):
            async with served.at("10.1.0.9", key=None) as c:
                assert (await signup(c, program, email=f"{who}@example.com")).status_code == 303
        async with served.at("10.1.0.2", key=None) as attacker:
            for i in range(10):  # the documented default: 10 wrong passwords per 15 minutes
                r = await portal_signin(attacker, program, "ana@example.com", f"guess-{i:04}")
                assert r.status_code == 422, r.text
            refused(await portal_signin(attacker, program, "ana@example.com", "guess-x"), 90, WRONG)
            # the right password waits too: nothing is checked while a bucket is empty
            refused(await portal_signin(attacker, program, "ana@example.com", PASSWORD), 90, WRONG)
            refused(await portal_signin(attacker, program, "bo@example.com", PASSWORD), 90, WRONG)
        async with served.at("10.1.0.3", key=None) as ana:  # her account's bucket is empty
            refused(await portal_signin(ana, program, "ana@example.com", PASSWORD), 90, WRONG)
        async with served.at("10.1.0.3", key=None) as bo:  # another account, another address
            r = await portal_signin(bo, program, "bo@example.com", PASSWORD)
            assert r.status_code == 303
            assert r.headers["location"].endswith("/card")
        served.clock.advance(90)
        async with served.at("10.1.0.3", key=None) as ana:
            assert (
                await portal_signin(ana, program, "ana@example.com", PASSWORD)
            ).status_code == 303


async def test_right_passwords_cost_nothing(settings: Settings, db: Database) -> None:
    async with serve(settings, db) as served:
        async with served.at("10.1.1.1") as admin:
            program = await create_program(admin)
        async with served.at("10.1.1.2", key=None) as c:
            assert (await signup(c, program, email="cy@example.com")).status_code == 303
        for _ in range(12):
            async with served.at("10.1.1.2", key=None) as c:
                r = await portal_signin(c, program, "cy@example.com", PASSWORD)
                assert r.status_code == 303


async def test_wrong_console_passwords_are_limited(settings: Settings, db: Database) -> None:
    async with serve(settings, db) as served:
        owner = await make_staff(db, "owner")
        other = await make_staff(db, "owner")
        async with served.at("10.1.2.1", key=None) as attacker:
            for i in range(10):
                assert (await console_signin(attacker, owner, f"guess-{i:04}")).status_code == 422
            refused(await console_signin(attacker, owner, PASSWORD), 90, WRONG)
            refused(await console_signin(attacker, other, PASSWORD), 90, WRONG)
        async with served.at("10.1.2.2", key=None) as c:
            refused(await console_signin(c, owner, PASSWORD), 90, WRONG)
            r = await console_signin(c, other, PASSWORD)
            assert r.status_code == 303
            assert (await c.get("/admin")).status_code == 200


@pytest.mark.email
async def test_sign_in_links_are_limited_per_email_and_address(
    settings: Settings, db: Database
) -> None:
    links = "Too many sign-in links"
    async with serve(settings, db) as served:
        async with served.at("10.1.3.1") as admin:
            program = await create_program(admin)
        async with served.at("10.1.3.2", key=None) as c:
            for _ in range(5):  # the documented default: 5 an hour per email
                r = await ask_link(c, program, "dee@example.com")
                assert r.status_code == 200, r.text
                assert "we have sent a sign-in link" in r.text
            refused(await ask_link(c, program, "DEE@example.com"), 720, links)
            assert (await ask_link(c, program, "eve@example.com")).status_code == 200
        async with served.at("10.1.3.3", key=None) as elsewhere:
            refused(await ask_link(elsewhere, program, "dee@example.com"), 720, links)
            assert (await ask_link(elsewhere, program, "fay@example.com")).status_code == 200
        # 20 an hour from one address, whatever the emails
        async with served.at("10.1.3.4", key=None) as c:
            for i in range(20):
                assert (await ask_link(c, program, f"n{i}@example.com")).status_code == 200
            refused(await ask_link(c, program, "n20@example.com"), 180, links)
        served.clock.advance(720)
        async with served.at("10.1.3.2", key=None) as c:
            assert (await ask_link(c, program, "dee@example.com")).status_code == 200
