"""Coupon guessing per key, member and address on the shared limiter; batches capped."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import func, select

from habitue.db import Database, table_of
from habitue.programs import service as programs_service
from habitue.rewards.models import Coupon, CouponAttempt
from habitue.rewards.schemas import MAX_COUPONS_PER_BATCH
from habitue.settings import Settings
from tests.clients import limited, new_key, serve
from tests.conftest import create_program, enrol
from tests.rewards.conftest import give, problem, reward

HABITUE = Path(sys.executable).parent / "habitue"
_coupons = table_of(Coupon)
_attempts = table_of(CouponAttempt)


async def test_coupon_guessing_is_limited_per_key_member_and_address(
    settings: Settings, db: Database
) -> None:
    async with serve(settings, db) as served:
        async with served.at("10.3.0.1") as admin:
            program = await create_program(admin)
            await reward(admin, program, code="v5", kind="voucher", value="5.00")
            m = (await enrol(admin, program))["id"]
            other_member = (await enrol(admin, program))["id"]
            await give(admin, program, m, 500)
            red = await admin.post(
                f"/v1/programs/{program}/members/{m}/redemptions", json={"reward": "v5"}
            )
            code = red.json()["coupon"]["code"]
            till1 = await new_key(admin, program, "till-1", "coupons:redeem")
            till2 = await new_key(admin, program, "till-2", "coupons:redeem")
            till3 = await new_key(admin, program, "till-3", "coupons:redeem")
        coupons = f"/v1/programs/{program}/coupons"
        async with served.at("10.3.0.2", till1) as guesser:
            for i in range(10):
                r = await guesser.get(f"{coupons}/AAAA-AAAA-AAAA-A{i}")
                assert r.status_code in (404, 422), r.text
            limited(await guesser.get(f"{coupons}/{code}"), 6)
        async with served.at("10.3.0.3", till1) as same_key:
            limited(await same_key.get(f"{coupons}/{code}"), 6)
        async with served.at("10.3.0.2", till2) as same_address:
            limited(await same_address.get(f"{coupons}/{code}"), 6)
        async with served.at("10.3.0.3", till2) as other:
            assert (await other.get(f"{coupons}/{code}")).status_code == 200
            # a member's bucket: ten failures naming `other_member` from this till...
            for i in range(10):
                r = await other.post(
                    f"{coupons}/BBBB-BBBB-BBBB-B{i}/validate",
                    json={"total": "10.00", "member": other_member},
                )
                assert r.status_code in (404, 422), r.text
        async with served.at("10.3.0.4", till3) as elsewhere:
            # ...empty it for every till
            body = {"total": "10.00", "member": other_member}
            limited(await elsewhere.post(f"{coupons}/{code}/validate", json=body), 6)
            r = await elsewhere.post(f"{coupons}/{code}/validate", json={"total": "10.00"})
            assert r.status_code == 200
            assert r.json()["applicable"] is True
    async with db.read() as session:
        outcomes = (
            await session.execute(select(_attempts.c.outcome, func.count()).group_by("outcome"))
        ).all()
    counted = dict(outcomes)  # every failed or refused lookup is logged
    assert counted["rate-limited"] >= 4
    assert counted.get("coupon-not-found", 0) + counted.get("invalid-coupon-code", 0) >= 20


async def test_a_coupon_batch_is_capped(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    await reward(client, program, code="v1", kind="voucher", value="1.00")
    batches = f"/v1/programs/{program}/coupons/batches"
    body = {"reward": "v1", "campaign": "spring"}
    r = await client.post(batches, json={**body, "count": MAX_COUPONS_PER_BATCH + 1})
    problem(r, 422, "validation")
    assert [e["field"] for e in r.json()["errors"]] == ["count"]
    r = await client.post(batches, json={**body, "count": 1_000_000})
    problem(r, 422, "validation")
    async with db.read() as session:
        info = await programs_service.get_info(session, program)
        written = (
            await session.execute(
                select(func.count()).select_from(_coupons).where(_coupons.c.program_id == info.id)
            )
        ).scalar_one()
    assert written == 0
    r = await client.post(batches, json={**body, "count": MAX_COUPONS_PER_BATCH})
    assert r.status_code == 201, r.text
    assert len(r.text.strip().splitlines()) == MAX_COUPONS_PER_BATCH + 1


async def test_the_cli_generates_more_than_a_batch(
    client: httpx.AsyncClient, program: str, db_url: str, tmp_path: Path
) -> None:
    await reward(client, program, code="v2", kind="voucher", value="2.00")
    out = tmp_path / "codes.csv"
    env = {**os.environ, "HABITUE_DATABASE_URL": db_url, "HABITUE_ENV": "test"}
    count = 2 * MAX_COUPONS_PER_BATCH + 123
    done = subprocess.run(  # noqa: S603
        [str(HABITUE), "coupons", "generate", "--program", program, "--reward", "v2",
         "--count", str(count), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == count
    assert len({r["code"] for r in rows}) == count
    r = await client.get(f"/v1/programs/{program}/coupons/{rows[-1]['code']}")
    assert r.status_code == 200, r.text
