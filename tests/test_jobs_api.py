"""Every scheduled job has an admin trigger (`POST …/jobs/…`) and a CLI command; each is
idempotent. See README ("CLI") and `habitue.jobs_api`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from habitue import clock
from habitue.cli import app
from tests.conftest import create_program, enrol, purchase

JOBS = ("expiry", "tiers", "clubs", "referrals")


async def balance(client: httpx.AsyncClient, program: str, member: str) -> int:
    r = await client.get(f"/v1/programs/{program}/members/{member}/balance")
    assert r.status_code == 200, r.text
    value: int = r.json()["available"]
    return value


async def test_the_referral_payout_trigger_pays_once(client: httpx.AsyncClient) -> None:
    program = await create_program(client, pending_days=14)
    base = f"/v1/programs/{program}"
    r = await client.put(base + "/referrals/settings",
                         json={"referrer_points": 500, "referee_points": 200})  # fmt: skip
    assert r.status_code == 200, r.text
    referrer, referee = [(await enrol(client, program))["id"] for _ in range(2)]
    code = (await client.get(f"{base}/members/{referrer}/referral-code")).json()["code"]
    r = await client.post(base + "/referrals", json={"referee": referee, "code": code})
    assert r.status_code == 201, r.text
    assert (await purchase(client, program, referee, "20.00")).status_code == 201
    # Within the window nothing is due.
    r = await client.post(base + "/jobs/referrals")
    assert r.status_code == 200, r.text
    assert r.json() == {"program": program, "paid": 0}
    clock.advance(timedelta(days=15))
    assert (await client.post(base + "/jobs/referrals")).json()["paid"] == 1
    assert (await client.post(base + "/jobs/referrals")).json()["paid"] == 0
    assert await balance(client, program, referrer) == 500
    statuses = [
        i["status"] for i in (await client.get(f"{base}/members/{referrer}/referrals")).json()
    ]
    assert statuses == ["rewarded"]


async def test_the_expiry_trigger_writes_down_what_is_already_so(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client, expiry={"policy": "days", "days": 10})
    member = (await enrol(client, program))["id"]
    assert (await purchase(client, program, member, "30.00")).status_code == 201
    clock.advance(timedelta(days=11))
    assert await balance(client, program, member) == 0  # already so, before the job
    r = await client.post(f"/v1/programs/{program}/jobs/expiry")
    assert r.status_code == 200, r.text
    assert r.json() == {"program": program, "released": 0, "members": 1, "expired": 30}
    again = (await client.post(f"/v1/programs/{program}/jobs/expiry")).json()
    assert again["members"] == again["expired"] == 0
    assert await balance(client, program, member) == 0


async def test_every_job_trigger_answers_and_needs_its_scope(client: httpx.AsyncClient) -> None:
    program = await create_program(client)
    for job in JOBS:
        r = await client.post(f"/v1/programs/{program}/jobs/{job}")
        assert r.status_code == 200, (job, r.text)
        if job != "clubs":  # the clubs' answer (`RenewalRun`) names no program
            assert r.json()["program"] == program
    r = await client.post(
        f"/v1/programs/{program}/api-keys", json={"name": "reader", "scopes": ["members:read"]}
    )
    assert r.status_code == 201, r.text
    reader = {"Authorization": f"Bearer {r.json()['key']}"}
    for job in JOBS:
        r = await client.post(f"/v1/programs/{program}/jobs/{job}", headers=reader)
        assert r.status_code == 403, (job, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/v1/programs/nope-nope/jobs/expiry")
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["expire"], "expired"),
        (["tiers", "evaluate"], "closed"),
        (["clubs", "renew"], "renewed"),
        (["referrals", "pay"], "paid 0 referrals"),
    ],
)
async def test_every_job_has_a_cli_command(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, db_url: str, args: list[str],
    says: str,
) -> None:  # fmt: skip
    program = await create_program(client)
    monkeypatch.setenv("HABITUE_DATABASE_URL", db_url)
    monkeypatch.setenv("HABITUE_HMAC_KEY", "test-hmac-key")
    from habitue.settings import get_settings

    get_settings.cache_clear()
    try:
        result = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--program", program])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"{program}:" in result.output
    assert says in result.output


def test_the_readme_names_every_job_trigger_and_command() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for job in JOBS:
        assert f"POST …/jobs/{job}" in readme
    for command in ("habitue expire", "habitue tiers evaluate", "habitue clubs renew",
                    "habitue referrals pay"):  # fmt: skip
        assert f"`{command}" in readme
