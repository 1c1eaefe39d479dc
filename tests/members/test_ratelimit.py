"""Card-number guessing: unknown cards are counted per API key and per client address."""

from __future__ import annotations

import secrets

from habitue.db import Database
from habitue.members.cards import luhn_check_digit
from habitue.settings import Settings
from tests.clients import limited, new_key, serve
from tests.conftest import create_program, enrol


def guess() -> str:
    """A Luhn-valid card number that no member holds."""
    body = "9" + "".join(secrets.choice("0123456789") for _ in range(14))
    return body + luhn_check_digit(body)


async def test_guessing_card_numbers_is_limited_per_key_and_address(
    settings: Settings, db: Database
) -> None:
    async with serve(settings, db) as served:
        async with served.at("10.0.0.1") as admin:
            program = await create_program(admin)
            card = (await enrol(admin, program))["card_number"]
            till1 = await new_key(admin, program, "till-1", "members:read")
            till2 = await new_key(admin, program, "till-2", "members:read")
        cards = f"/v1/programs/{program}/cards"
        async with served.at("10.0.0.2", till1) as guesser:
            # the documented default: 30 failed lookups a minute, then one every 2 s
            for _ in range(30):
                assert (await guesser.get(f"{cards}/{guess()}")).status_code == 404
            limited(await guesser.get(f"{cards}/{guess()}"), 2)
            limited(await guesser.get(f"{cards}/12345678"), 2)  # answered before any check
            # the key's and the address's buckets are empty: even a real card waits
            limited(await guesser.get(f"{cards}/{card}"), 2)
            limited(await guesser.get(f"/v1/programs/{program}/members?card_number={card}"), 2)
        async with served.at("10.0.0.3", till1) as same_key:
            limited(await same_key.get(f"{cards}/{card}"), 2)
        async with served.at("10.0.0.2", till2) as same_address:
            limited(await same_address.get(f"{cards}/{card}"), 2)
        async with served.at("10.0.0.3", till2) as other:
            assert (await other.get(f"{cards}/{card}")).status_code == 200
            assert (await other.get(f"{cards}/{guess()}")).status_code == 404
            # a wrong check digit is a failed lookup too
            assert (await other.get(f"{cards}/{card[:-1]}x")).status_code == 422
            for _ in range(28):
                assert (await other.get(f"{cards}/{guess()}")).status_code == 404
            limited(await other.get(f"{cards}/{card}"), 2)
        served.clock.advance(2)
        async with served.at("10.0.0.2", till1) as guesser:
            assert (await guesser.get(f"{cards}/{card}")).status_code == 200
            assert (await guesser.get(f"{cards}/{guess()}")).status_code == 404
            limited(await guesser.get(f"{cards}/{guess()}"), 2)


async def test_searching_by_card_number_counts_misses_only(
    settings: Settings, db: Database
) -> None:
    settings = settings.model_copy(update={"rate_card_misses": "5/1m"})
    async with serve(settings, db) as served, served.at("10.0.0.4") as c:
        program = await create_program(c)
        card = (await enrol(c, program))["card_number"]
        search = f"/v1/programs/{program}/members?card_number="
        for _ in range(20):  # finding a member costs nothing
            assert len((await c.get(search + card)).json()["items"]) == 1
            assert (await c.get(f"/v1/programs/{program}/cards/{card}")).status_code == 200
        for _ in range(5):
            r = await c.get(search + guess())
            assert r.status_code == 200
            assert r.json()["items"] == []
        limited(await c.get(search + guess()), 12)
        limited(await c.get(f"/v1/programs/{program}/cards/{card}"), 12)
        # a search without a card number is not counted
        assert (
            await c.get(f"/v1/programs/{program}/members?email=a@example.com")
        ).status_code == 200
