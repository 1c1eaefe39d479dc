"""The console's setup wizard (issue 19, item 7): a new program step by step from an empty
console, each step checked on the page, nothing written before the last step, then the program,
its look, its ladder and its welcome email through the services the API uses; on both databases.
"""

from __future__ import annotations

import base64
import html
import re
import struct
import zlib

import httpx

from habitue.db import Database
from tests.conftest import create_program, enrol, new_code, purchase
from tests.web.conftest import csrf_of, make_staff, staff_signin


def tiny_png() -> bytes:
    """A valid 1×1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80\x40\x20")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def hidden_of(page: str) -> dict[str, str]:
    """The hidden fields of the wizard's form: what the browser sends back."""
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    }


def errors_of(page: str) -> set[str]:
    return set(re.findall(r'<p class="error" id="e-([a-z0-9_]+)">', page))


def step_of(page: str) -> str:
    found = re.search(r'<input type="hidden" name="step" value="([a-z]+)">', page)
    assert found, page
    return found.group(1)


def visible_of(page: str) -> dict[str, str]:
    """The current step's own fields as the page fills them (text inputs, selects, textareas)."""
    out: dict[str, str] = {}
    for name, value in re.findall(
        r'<input id="f-[^"]+" name="([^"]+)" type="(?:text|color)"\s*value="([^"]*)"', page
    ):
        out[name] = html.unescape(value)
    for name, body in re.findall(
        r'<select id="f-[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', page, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        if chosen:
            out[name] = chosen.group(1)
    for name, value in re.findall(
        r'<textarea id="f-[^"]+" name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S
    ):
        out[name] = html.unescape(value)
    return out


async def post_step(
    client: httpx.AsyncClient,
    page: str,
    go: str = "next",
    files: dict[str, tuple[str, bytes, str]] | None = None,
    **fields: str,
) -> httpx.Response:
    """Send the wizard's form as a browser would: hidden fields, the step's fields as shown,
    changed by `fields`."""
    data = {**hidden_of(page), **visible_of(page), **fields, "go": go}
    return await client.post("/admin/new", data=data, files=files or {"logo_file": ("", b"", "")})


async def test_wizard_step_by_step_creates_the_program(
    client: httpx.AsyncClient, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    programs = await client.get("/admin/", follow_redirects=True)
    assert programs.status_code == 200
    assert 'href="/admin/new"' in programs.text

    page = await client.get("/admin/new")
    assert page.status_code == 200
    assert step_of(page.text) == "program"
    assert 'aria-current="step"' in page.text
    code = new_code("wiz")

    # Step 1: what is wrong is shown on the page; nothing is written.
    r = await post_step(
        client, page.text, name="", code="Bad Code!", currency="ZZZ", timezone="Mars/Base"
    )
    assert r.status_code == 422
    assert step_of(r.text) == "program"
    assert {"name", "code", "currency", "timezone"} <= errors_of(r.text)
    assert 'class="error-summary" role="alert"' in r.text
    r = await post_step(
        client,
        r.text,
        name="Café du Nord",
        code=code,
        currency="DKK",
        timezone="Europe/Copenhagen",
        points_name="beans",
    )
    assert r.status_code == 200, errors_of(r.text)
    assert step_of(r.text) == "earning"
    assert (await client.get(f"/v1/programs/{code}")).status_code == 404

    # Step 2: the earn rate, and whether points are earned on amounts with or without tax.
    assert 'id="f-earn_on"' in r.text and 'value="tax_included" selected' in r.text
    bad = await post_step(client, r.text, earn_rate="lots", earn_on="net")
    assert bad.status_code == 422 and errors_of(bad.text) == {"earn_rate", "earn_on"}
    r = await post_step(client, bad.text, earn_rate="2", earn_on="tax_excluded")
    assert step_of(r.text) == "look"

    # Step 3: a colour too light for white text and a file that is not an image are refused.
    bad = await post_step(client, r.text, primary_color="#ffff66")
    assert bad.status_code == 422 and errors_of(bad.text) == {"primary_color"}
    bad = await post_step(
        client,
        bad.text,
        primary_color="#7a1f3d",
        files={"logo_file": ("x.png", b"GIF89a", "image/png")},
    )
    assert bad.status_code == 422 and errors_of(bad.text) == {"logo"}
    png = tiny_png()
    r = await post_step(
        client,
        bad.text,
        primary_color="#7a1f3d",
        files={"logo_file": ("logo.png", png, "image/png")},
    )
    assert step_of(r.text) == "tiers", errors_of(r.text)
    assert hidden_of(r.text)["logo"] == "data:image/png;base64," + base64.b64encode(png).decode()

    # Back keeps what was typed; the step before shows it again.
    back = await post_step(client, r.text, go="back")
    assert step_of(back.text) == "look"
    assert 'value="#7a1f3d"' in back.text and 'class="logo-preview"' in back.text
    r = await post_step(client, back.text)
    assert step_of(r.text) == "tiers"

    # Step 4: thresholds must rise.
    bad = await post_step(
        client,
        r.text,
        tier1_name="Bronze",
        tier1_threshold="0",
        tier2_name="Gold",
        tier2_threshold="0",
        tier2_multiplier="1,5",
    )
    assert bad.status_code == 422 and errors_of(bad.text) == {"tier2_threshold"}
    r = await post_step(client, bad.text, tier2_threshold="1500", tier2_multiplier="1,5")
    assert step_of(r.text) == "welcome", errors_of(r.text)

    # Step 5: a placeholder the mail cannot fill is refused.
    bad = await post_step(
        client,
        r.text,
        welcome_locale="da",
        welcome_subject="Velkommen",
        welcome_body="Hej {{ nom }}",
    )
    assert bad.status_code == 422 and errors_of(bad.text) == {"welcome_body"}
    r = await post_step(
        client,
        bad.text,
        welcome_subject="Velkommen til {{ program_name }}",
        welcome_body="Hej {{ first_name }},\n\nTak & velkommen!",
    )
    assert step_of(r.text) == "review"
    assert "Café du Nord" in r.text and "Gold" in r.text
    assert (await client.get(f"/v1/programs/{code}")).status_code == 404

    done = await post_step(client, r.text, go="create")
    assert done.status_code == 303, errors_of(done.text)
    assert done.headers["location"] == f"/admin/{code}?created=1"
    dashboard = await client.get(done.headers["location"])
    assert 'id="created"' in dashboard.text and f"/app/{code}/signup" in dashboard.text

    # What was written, read through the API.
    program = (await client.get(f"/v1/programs/{code}")).json()
    assert (program["name"], program["currency"], program["timezone"]) == (
        "Café du Nord",
        "DKK",
        "Europe/Copenhagen",
    )
    assert (program["points_name"], program["earn_rate"]) == ("beans", "2")
    assert program["earn_on"] == "tax_excluded"
    ladder = (await client.get(f"/v1/programs/{code}/tiers")).json()
    assert [(t["name"], t["threshold"], t["multiplier"]) for t in ladder["tiers"]] == [
        ("Bronze", "0.00", "1"),
        ("Gold", "1500.00", "1.5"),
    ]
    assert ladder["metric"] == "qualifying_spend"
    branding = (await client.get(f"/v1/programs/{code}/branding")).json()
    assert branding["primary_color"] == "#7a1f3d"
    welcome = await client.get(f"/v1/programs/{code}/message-templates/welcome/email/da")
    assert welcome.status_code == 200, welcome.text
    assert welcome.json()["subject"] == "Velkommen til {{ program_name }}"
    assert welcome.json()["body"] == "<p>Hej {{ first_name }},</p>\n<p>Tak &amp; velkommen!</p>"

    # The portal and the pass use the look; purchases earn at the rate.
    logo = await client.get(f"/app/{code}/logo")
    assert logo.status_code == 200 and logo.content == png
    assert logo.headers["content-type"] == "image/png"
    signup = await client.get(f"/app/{code}/signup")
    assert "--brand: #7a1f3d" in signup.text and f'src="/app/{code}/logo"' in signup.text
    manifest = (await client.get(f"/app/{code}/manifest.webmanifest")).json()
    assert manifest["theme_color"] == "#7a1f3d"
    member = await enrol(client, code, external_id="m1")
    earned = await purchase(client, code, member["id"], "10.00")
    assert earned.json()["points"] == 20


async def test_a_code_taken_meanwhile_writes_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    await staff_signin(client, await make_staff(db, "owner"))
    page = await client.get("/admin/new")
    code = new_code("wiz")
    r = await post_step(client, page.text, name="Le Comptoir", code=code)
    for _ in range(4):
        r = await post_step(client, r.text)
    assert step_of(r.text) == "review"
    await create_program(client, code=code, name="Someone else")
    done = await post_step(client, r.text, go="create")
    assert done.status_code == 422
    assert step_of(done.text) == "program" and errors_of(done.text) == {"code"}
    assert (await client.get(f"/v1/programs/{code}")).json()["name"] == "Someone else"
    assert (await client.get(f"/v1/programs/{code}/tiers")).status_code == 404
    assert (await client.get(f"/v1/programs/{code}/branding")).json()["primary_color"] == "#1d4e89"


async def test_only_an_owner_of_every_program_sets_one_up(
    client: httpx.AsyncClient, db: Database, program: str
) -> None:
    await staff_signin(client, await make_staff(db, "marketer"))
    assert (await client.get("/admin/new")).status_code == 403
    assert 'href="/admin/new"' not in (await client.get("/admin/", follow_redirects=True)).text
    async with db.read() as session:
        from habitue.programs import service as programs_service

        info = await programs_service.get_info(session, program)
    await staff_signin(client, await make_staff(db, "owner", program_id=info.id))
    r = await client.get("/admin/new")
    assert r.status_code == 403
    form = {"csrf_token": csrf_of(r.text), "step": "review", "go": "create", "name": "X"}
    assert (await client.post("/admin/new", data=form)).status_code == 403


async def test_branding_through_the_api(client: httpx.AsyncClient, program: str) -> None:
    r = await client.put(f"/v1/programs/{program}/branding", json={"primary_color": "#eeeeee"})
    assert r.status_code == 422
    r = await client.put(
        f"/v1/programs/{program}/branding",
        json={"logo": "data:image/png;base64," + base64.b64encode(b"GIF89a").decode()},
    )
    assert r.status_code == 422
    look = {"primary_color": "#224466", "background_color": "#fafafa"}
    r = await client.put(f"/v1/programs/{program}/branding", json=look)
    assert r.status_code == 200 and r.json() == {**look, "logo": None}
    assert (await client.get(f"/app/{program}/logo")).status_code == 404
