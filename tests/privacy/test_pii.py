"""Members' email and phone are encrypted at rest and found through the keyed hash (their
rotation to a new key: test_pii_rotation.py)."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from habitue.db import Database
from habitue.privacy import pii
from tests.conftest import enrol, new_code


async def _raw(db: Database, public_id: str) -> tuple[str, str]:
    async with db.read() as s:
        row = (
            await s.execute(
                text("SELECT email, phone FROM members WHERE public_id = :id"), {"id": public_id}
            )
        ).one()
    return str(row.email), str(row.phone)


def test_a_value_is_sealed_and_opened() -> None:
    sealed = pii.seal("ada@example.com")
    assert sealed.startswith(pii.PREFIX) and "ada" not in sealed
    assert sealed != pii.seal("ada@example.com")  # random per write
    assert pii.unseal(sealed) == "ada@example.com"
    assert pii.unseal("written-before@example.com") == "written-before@example.com"


async def test_email_and_phone_are_stored_encrypted_and_read_in_clear(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    email = f"{new_code('ada')}@example.com"
    member = await enrol(client, program, email=email, phone="+4520304050")
    stored_email, stored_phone = await _raw(db, member["id"])
    assert stored_email.startswith(pii.PREFIX) and email not in stored_email
    assert stored_phone.startswith(pii.PREFIX) and "20304050" not in stored_phone
    r = await client.get(f"/v1/programs/{program}/members/{member['id']}")
    assert (r.json()["email"], r.json()["phone"]) == (email, "+4520304050")
    found = await client.get(f"/v1/programs/{program}/members", params={"email": email.upper()})
    assert [m["id"] for m in found.json()["items"]] == [member["id"]]
