"""The member portal through HTTP: sign-up, sessions, CSRF, card, profile, export, closing."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from habitue import clock
from habitue.db import Database, table_of
from habitue.messaging.models import OutboxEvent
from habitue.programs.models import Program
from habitue.settings import Settings
from tests.conftest import create_program, purchase
from tests.web.conftest import PASSWORD, csrf_of, emailed_link, signup

_outbox = table_of(OutboxEvent)


async def _member_id(client: httpx.AsyncClient, program: str) -> str:
    export = await client.get(f"/app/{program}/export")
    assert export.status_code == 200
    return str(export.json()["member"]["id"])


async def test_signup_opens_a_session_and_shows_the_card(
    client: httpx.AsyncClient, program: str
) -> None:
    r = await signup(client, program)
    assert r.status_code == 303
    assert r.headers["location"] == f"/app/{program}/card"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("habitue_member="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/app" in cookie
    assert "Secure" not in cookie  # not in production
    card = await client.get(f"/app/{program}/card")
    assert card.status_code == 200
    member = (await client.get(f"/app/{program}/export")).json()["member"]
    assert member["card_number"] in card.text.replace(" ", "")
    assert 'class="segno"' in card.text  # the QR code, inline SVG
    assert card.text.count("<svg ") == 2  # the QR code and the Code 128 barcode, inline
    assert member["consents"]["email"]["granted"] is True
    assert member["consents"]["sms"]["granted"] is False
    assert card.headers["content-security-policy"].startswith("default-src 'self'")


async def test_errors_stay_next_to_the_field_in_the_members_language(
    client: httpx.AsyncClient, program: str
) -> None:
    r = await signup(
        client,
        program,
        email="not-an-email",
        password="short",
        first_name="Chloé",
        phone="call me",
        locale="fr",
    )
    assert r.status_code == 422
    assert 'lang="fr"' in r.text
    assert 'value="Chloé"' in r.text  # what was typed is kept
    assert 'value="not-an-email"' in r.text
    assert "Saisissez une adresse e-mail valide." in r.text
    assert "Utilisez au moins 10 caractères." in r.text
    assert 'id="e-phone"' in r.text
    assert 'aria-invalid="true"' in r.text
    assert "short" not in r.text.split('id="f-password"')[1][:80]  # never echo a password


@pytest.mark.email
async def test_sign_up_does_not_tell_whether_an_email_is_registered(
    client: httpx.AsyncClient, program: str, settings: Settings, db: Database
) -> None:
    await signup(client, program, email="dup@example.com", first_name="Ana")
    from habitue.api import create_app

    answers = []
    for email in ("dup@example.com", "fresh@example.com"):
        app = create_app(settings, db=db)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as other:
            page = await other.get(f"/app/{program}/signup")
            r = await other.post(
                f"/app/{program}/signup",
                data={
                    "csrf_token": csrf_of(page.text),
                    "email": email.upper(),
                    "password": "attacker-password-1",
                    "first_name": "Mallory",
                    "locale": "en",
                },
            )
            answers.append(r)
            assert not any(
                c.startswith("habitue_member=") for c in r.headers.get_list("set-cookie")
            )
            assert (await other.get(f"/app/{program}/card")).status_code == 303
    known, new = answers
    assert known.status_code == new.status_code == 200
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", known.text) == strip.sub("", new.text)
    assert "Check your email" in known.text
    assert "already registered" not in known.text
    # The known email's member is unchanged: name, and password (the visitor's is not set).
    assert (await client.get(f"/app/{program}/export")).json()["member"]["first_name"] == "Ana"
    for password, status in (("attacker-password-1", 422), (PASSWORD, 303)):
        client.cookies.clear()
        form = await client.get(f"/app/{program}/signin")
        r = await client.post(
            f"/app/{program}/signin",
            data={
                "csrf_token": csrf_of(form.text),
                "email": "dup@example.com",
                "password": password,
            },
        )
        assert r.status_code == status
    client.cookies.clear()
    form = await client.get(f"/app/{program}/signin")
    # Until its emailed link is used, the new sign-up's password does not sign in either.
    r = await client.post(
        f"/app/{program}/signin",
        data={
            "csrf_token": csrf_of(form.text),
            "email": "fresh@example.com",
            "password": "attacker-password-1",
        },
    )
    assert r.status_code == 422
    # The owner of the known email is sent a sign-in link; following it signs them in.
    path = await emailed_link(client, program, "dup@example.com")
    client.cookies.clear()
    assert (await client.get(path)).status_code == 303
    assert (await client.get(f"/app/{program}/export")).json()["member"]["first_name"] == "Ana"
    # The new member's link gives them the password chosen when joining.
    path = await emailed_link(client, program, "fresh@example.com")
    client.cookies.clear()
    assert (await client.get(path)).status_code == 303
    assert (await client.get(f"/app/{program}/card")).status_code == 200
    client.cookies.clear()
    form = await client.get(f"/app/{program}/signin")
    r = await client.post(
        f"/app/{program}/signin",
        data={
            "csrf_token": csrf_of(form.text),
            "email": "fresh@example.com",
            "password": "attacker-password-1",
        },
    )
    assert r.status_code == 303


async def test_forms_without_the_csrf_token_are_refused(
    client: httpx.AsyncClient, program: str
) -> None:
    await client.get(f"/app/{program}/signup")
    r = await client.post(
        f"/app/{program}/signup",
        data={
            "email": "x@example.com",
            "password": PASSWORD,
            "csrf_token": "forged-token-xxxxxxxx",
        },
    )
    assert r.status_code == 403
    await signup(client, program)
    r = await client.post(f"/app/{program}/profile", data={"email": "evil@example.com"})
    assert r.status_code == 403


async def test_password_sign_in_and_sign_out(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program, email="pw@example.com")
    page = await client.get(f"/app/{program}/card")
    out = await client.post(f"/app/{program}/signout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    assert (await client.get(f"/app/{program}/card")).status_code == 303
    form = await client.get(f"/app/{program}/signin")
    token = csrf_of(form.text)
    bad = await client.post(
        f"/app/{program}/signin",
        data={"csrf_token": token, "email": "pw@example.com", "password": "wrong-password"},
    )
    assert bad.status_code == 422
    assert "The email or the password is not right." in bad.text
    assert 'value="pw@example.com"' in bad.text
    good = await client.post(
        f"/app/{program}/signin",
        data={
            "csrf_token": token,
            "email": "PW@example.com",
            "password": PASSWORD,
            "next": f"/app/{program}/points",
        },
    )
    assert good.status_code == 303
    assert good.headers["location"] == f"/app/{program}/points"
    assert (await client.get(f"/app/{program}/points")).status_code == 200


@pytest.mark.email
async def test_sign_in_by_emailed_link_works_once(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await signup(client, program, email="link@example.com")
    client.cookies.delete("habitue_member", path="/app")
    client.cookies.clear()
    form = await client.get(f"/app/{program}/signin")
    r = await client.post(
        f"/app/{program}/signin/link",
        data={"csrf_token": csrf_of(form.text), "link_email": "link@example.com"},
    )
    assert r.status_code == 200
    assert "we have sent a sign-in link" in r.text
    assert "for 15 minutes" in r.text
    path = await emailed_link(client, program, "link@example.com")
    assert path.startswith(f"/app/{program}/signin/link/")
    used = await client.get(path)
    assert used.status_code == 303
    assert (await client.get(f"/app/{program}/card")).status_code == 200
    again = await client.get(path)
    assert again.status_code == 400
    assert "expired or was already used" in again.text
    # An unknown email gets the same answer and no message.
    r = await client.post(
        f"/app/{program}/signin/link",
        data={"csrf_token": csrf_of(form.text), "link_email": "nobody@example.com"},
    )
    assert r.status_code in (200, 403)


async def test_an_expired_session_goes_to_sign_in(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program)
    assert (await client.get(f"/app/{program}/card")).status_code == 200
    clock.advance(timedelta(days=31))
    r = await client.get(f"/app/{program}/card")
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"/app/{program}/signin?next=")


async def test_a_session_of_another_program_goes_to_sign_in(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    other = await create_program(client)
    r = await client.get(f"/app/{other}/card")
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"/app/{other}/signin")
    assert (await client.get(f"/app/{other}/export")).status_code == 303


async def test_points_page_shows_balance_and_history(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    member_id = await _member_id(client, program)
    assert (await purchase(client, program, member_id, "1234.00")).status_code == 201
    page = await client.get(f"/app/{program}/points")
    assert page.status_code == 200
    assert "1,234" in page.text
    assert "Points earned" in page.text


async def test_locale_switch_translates_and_formats(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    member_id = await _member_id(client, program)
    await purchase(client, program, member_id, "1234.00")
    page = await client.get(f"/app/{program}/points")
    r = await client.post(
        f"/app/{program}/locale",
        data={"csrf_token": csrf_of(page.text), "locale": "da", "next": f"/app/{program}/points"},
    )
    assert r.status_code == 303
    da = await client.get(f"/app/{program}/points")
    assert 'lang="da"' in da.text
    assert "Mine point" in da.text
    assert "1.234" in da.text  # Danish grouping
    assert (await client.get(f"/app/{program}/export")).json()["member"]["locale"] == "da"
    await client.post(
        f"/app/{program}/locale",
        data={"csrf_token": csrf_of(da.text), "locale": "fr", "next": f"/app/{program}/points"},
    )
    fr = await client.get(f"/app/{program}/points")
    assert "Mes points" in fr.text
    assert "1\u202f234" in fr.text or "1\u00a0234" in fr.text  # French grouping


async def test_profile_changes_keep_consent_history(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    page = await client.get(f"/app/{program}/profile")
    values = {
        "csrf_token": csrf_of(page.text),
        "first_name": "Ana",
        "last_name": "Jensen",
        "email": re.search(
            r'id="f-email" name="email" type="email"\s+value="([^"]+)"', page.text
        ).group(1),  # type: ignore[union-attr]
        "phone": "+45 12 34 56 78",
        "birth_date": "1990-05-17",
        "locale": "en",
        "consent_sms": "on",
    }
    r = await client.post(f"/app/{program}/profile", data=values)
    assert r.status_code == 303
    member = (await client.get(f"/app/{program}/export")).json()["member"]
    assert member["last_name"] == "Jensen"
    assert member["birth_date"] == "1990-05-17"
    assert member["consents"]["sms"]["granted"] is True
    assert member["consents"]["email"]["granted"] is False
    assert member["consents"]["email"]["history"][0]["granted"] is True
    bad = await client.post(
        f"/app/{program}/profile", data={**values, "birth_date": "2999-01-01", "phone": "x"}
    )
    assert bad.status_code == 422
    assert 'value="2999-01-01"' in bad.text
    assert "Enter a real date of birth." in bad.text


async def test_export_is_a_json_download(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program)
    r = await client.get(f"/app/{program}/export")
    assert r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    body = json.loads(r.text)
    assert set(body) >= {"member", "movements", "generated_at", "program"}


async def test_closing_the_account(client: httpx.AsyncClient, program: str) -> None:
    await signup(client, program, email="bye@example.com")
    page = await client.get(f"/app/{program}/profile")
    token = csrf_of(page.text)
    unconfirmed = await client.post(f"/app/{program}/close", data={"csrf_token": token})
    assert unconfirmed.status_code == 422
    assert "Tick the box" in unconfirmed.text
    r = await client.post(f"/app/{program}/close", data={"csrf_token": token, "confirm": "on"})
    assert r.status_code == 200
    assert "Account closed" in r.text
    assert (await client.get(f"/app/{program}/card")).status_code == 303
    form = await client.get(f"/app/{program}/signin")
    again = await client.post(
        f"/app/{program}/signin",
        data={"csrf_token": csrf_of(form.text), "email": "bye@example.com", "password": PASSWORD},
    )
    assert again.status_code == 422


async def test_secure_cookies_in_production(settings: Settings, db: Database) -> None:
    from habitue.api import create_app

    app = create_app(settings.model_copy(update={"env": "production"}), db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="https://test",
            headers={"Authorization": "Bearer test-admin-key"},
        ) as c,
    ):
        program = await create_program(c)
        r = await c.get(f"/app/{program}/signup")
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("habitue_csrf="))
    assert "Secure" in cookie
    assert "HttpOnly" in cookie


async def test_installable_app_files(client: httpx.AsyncClient, program: str) -> None:
    manifest = (await client.get(f"/app/{program}/manifest.webmanifest")).json()
    assert manifest["start_url"] == f"/app/{program}/card"
    assert manifest["display"] == "standalone"
    sw = await client.get(f"/app/{program}/sw.js")
    assert f'"/app/{program}/card"' not in sw.text  # built from the base
    assert f'const BASE = "/app/{program}"' in sw.text
    for icon in manifest["icons"]:
        assert (await client.get(icon["src"])).status_code == 200
    assert (await client.get("/static/../settings.py")).status_code == 404
    assert (await client.get("/static/vendor/htmx-2.0.11.min.js")).status_code == 200


async def test_bad_input_never_answers_500(client: httpx.AsyncClient, program: str) -> None:
    paths = [
        "/app/unknown-program/card",
        "/app/" + "x" * 500 + "/signin",
        f"/app/{program}/signin/link/not-a-token",
        f"/app/{program}/signin?next=//evil.example.com",
        f"/app/{program}/card",
        f"/app/{program}/nothing-here",
    ]
    for path in paths:
        r = await client.get(path)
        assert r.status_code < 500, (path, r.status_code)
    client.cookies.set("habitue_member", "x" * 5000, path="/app")
    assert (await client.get(f"/app/{program}/card")).status_code == 303
    for path in ("signup", "signin", "signin/link", "locale", "profile", "close", "signout"):
        r = await client.post(f"/app/{program}/{path}", content=b"\xff\xfe garbage")
        assert r.status_code < 500, (path, r.status_code)
    r = await signup(client, program, birth_date="31/02/1990", locale="xx")
    assert r.status_code == 422
    assert "Enter a real date of birth." in r.text


async def test_points_page_shows_tier_progress_when_the_program_has_a_ladder(
    client: httpx.AsyncClient, program: str
) -> None:
    await signup(client, program)
    assert 'id="tier"' not in (await client.get(f"/app/{program}/points")).text
    ladder = {
        "metric": "qualifying_spend",
        "window": {"kind": "calendar_year"},
        "grace_days": 0,
        "tiers": [
            {"code": "bronze", "name": "Bronze", "threshold": "0.00"},
            {"code": "silver", "name": "Silver", "threshold": "100.00"},
        ],
    }
    r = await client.post(f"/v1/programs/{program}/tiers", json=ladder)
    if r.status_code == 404:
        pytest.skip("the tiers room is not mounted")
    assert r.status_code in (200, 201), r.text
    member_id = await _member_id(client, program)
    await purchase(client, program, member_id, "40.00")
    page = await client.get(f"/app/{program}/points")
    assert page.status_code == 200
    assert 'id="tier"' in page.text
    assert "Bronze" in page.text
    assert "€60.00 more to reach the next tier" in page.text


async def test_without_email_sign_up_signs_in_at_once_and_says_when_the_address_is_taken(
    client: httpx.AsyncClient, program: str, settings: Settings, db: Database
) -> None:
    assert settings.smtp_url is None  # no email channel: no link could reach anyone
    r = await signup(client, program, email="now@example.com")
    assert r.status_code == 303 and r.headers["location"] == f"/app/{program}/card"
    assert "we have sent" not in r.text.lower()
    assert (await client.get(f"/app/{program}/card")).status_code == 200
    client.cookies.clear()
    again = await signup(client, program, email="NOW@example.com")
    assert again.status_code == 422
    assert "An account already uses this address. Sign in instead." in again.text
    assert "Check your email" not in again.text
    assert (await client.get(f"/app/{program}/card")).status_code == 303

    # The sign-in page offers no emailed link, and asking for one sends none.
    form = await client.get(f"/app/{program}/signin")
    assert 'id="no-email-links"' in form.text
    assert 'action="/app/' + program + '/signin/link"' not in form.text
    r = await client.post(
        f"/app/{program}/signin/link",
        data={"csrf_token": csrf_of(form.text), "link_email": "now@example.com"},
    )
    assert r.status_code == 422
    assert "cannot be sent by email here" in r.text
    assert "we have sent" not in r.text
    outbox = table_of(OutboxEvent)
    programs = table_of(Program)
    async with db.read() as session:
        links = (
            await session.execute(
                select(func.count()).where(
                    outbox.c.type == "member.sign_in_link",
                    outbox.c.program_id
                    == select(programs.c.id).where(programs.c.code == program).scalar_subquery(),
                )
            )
        ).scalar_one()
    assert links == 0


@pytest.mark.email
async def test_with_email_sign_up_answers_check_your_email(
    client: httpx.AsyncClient, program: str
) -> None:
    page = await client.get(f"/app/{program}/signup")
    r = await client.post(
        f"/app/{program}/signup",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "later@example.com",
            "password": PASSWORD,
            "locale": "en",
        },
    )
    assert r.status_code == 200 and 'id="signup-sent"' in r.text
    assert (await client.get(f"/app/{program}/card")).status_code == 303
    form = await client.get(f"/app/{program}/signin")
    assert 'id="no-email-links"' not in form.text
