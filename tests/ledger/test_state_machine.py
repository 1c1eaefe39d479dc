"""Random sequences of enrol / purchase / refund / spend / adjust / expire / time passing.

After every step every ledger invariant holds (the same checks as `habitue ledger verify`),
and each member's balance equals what a simple model of the rules predicts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from habitue import clock, jobs
from habitue.api import create_app
from habitue.db import Database
from habitue.ledger.verify import verify
from habitue.programs import service as programs_service
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY

_URL: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _url(db_url: str) -> None:
    _URL["db"] = db_url


class LedgerMachine(RuleBasedStateMachine):
    members = Bundle("members")
    purchases = Bundle("purchases")

    def __init__(self) -> None:
        super().__init__()
        clock.reset()
        programs_service.forget()
        self.loop = asyncio.new_event_loop()
        self.db = Database(_URL["db"])
        settings_ = Settings(
            env="test", database_url=_URL["db"], admin_key=ADMIN_KEY, scheduler=False, hmac_key="k",
            worker=False,
        )
        self.app = create_app(settings_, db=self.db)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        self.code = "sm" + secrets.token_hex(5)
        self.n = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.run(self.client.post(f"/v1/programs/{self.code}{path}", json=body))

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.run(self.db.dispose())
        self.loop.close()
        clock.reset()

    @initialize(pending=st.sampled_from([0, 3]), negative=st.booleans())
    def create(self, pending: int, negative: bool) -> None:
        r = self.run(
            self.client.post(
                "/v1/programs",
                json={
                    "code": self.code,
                    "name": "sm",
                    "earn_rate": "1.5",
                    "pending_days": pending,
                    "expiry": {"policy": "days", "days": 20},
                    "allow_negative": negative,
                },
            )
        )
        assert r.status_code == 201, r.text

    @rule(target=members)
    def enrol(self) -> str:
        r = self.post("/members", {})
        assert r.status_code == 201
        member: str = r.json()["id"]
        return member

    @rule(target=purchases, member=members, cents=st.integers(0, 20000))
    def purchase(self, member: str, cents: int) -> tuple[str, str, int]:
        self.n += 1
        ext = f"p{self.n}"
        r = self.post(
            "/events",
            {
                "type": "purchase",
                "member": {"id": member},
                "external_id": ext,
                "total": f"{cents / 100:.2f}",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["points"] == (cents * 3) // 200
        return member, ext, cents

    @rule(p=consumes(purchases), share=st.integers(1, 100))
    def refund(self, p: tuple[str, str, int], share: int) -> None:
        _, ext, cents = p
        amount = cents * share // 100
        self.n += 1
        r = self.post(
            "/events",
            {
                "type": "refund",
                "external_id": f"r{self.n}",
                "refers_to": ext,
                "total": f"{amount / 100:.2f}",
            },
        )
        if amount == 0:
            assert r.status_code == 422
        else:
            assert r.status_code == 201, r.text
            assert r.json()["points"] <= 0

    @rule(member=members, points=st.integers(1, 400))
    def spend(self, member: str, points: int) -> None:
        before = self.balance(member)
        r = self.post(f"/members/{member}/spends", {"points": points})
        if points <= before:
            assert r.status_code == 201, r.text
            assert self.balance(member) == before - points
        else:
            assert r.status_code == 409
            assert self.balance(member) == before

    @rule(member=members, points=st.integers(-300, 300).filter(bool))
    def adjust(self, member: str, points: int) -> None:
        before = self.balance(member)
        r = self.post(f"/members/{member}/adjustments", {"points": points, "reason": "support"})
        if points > 0 or -points <= before:
            assert r.status_code == 201, r.text
        else:
            assert r.status_code == 409

    @rule(days=st.integers(1, 15))
    def time_passes(self, days: int) -> None:
        clock.advance(timedelta(days=days))

    @rule()
    def run_jobs(self) -> None:
        self.run(jobs.run_release(self.db, self.code))
        self.run(jobs.run_expiry(self.db, self.code))
        self.run(jobs.run_expiry(self.db, self.code))

    def balance(self, member: str) -> int:
        r = self.run(self.client.get(f"/v1/programs/{self.code}/members/{member}/balance"))
        value: int = r.json()["available"]
        return value

    @invariant()
    def ledger_is_sound(self) -> None:
        async def check() -> dict[str, list[tuple[object, ...]]]:
            async with self.db.read() as session:
                return await verify(session)

        breaches = self.run(check())
        assert all(not rows for rows in breaches.values()), breaches


LedgerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("HABITUE_SM_EXAMPLES", "10")),
    stateful_step_count=20,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class TestLedgerMachine(LedgerMachine.TestCase):  # type: ignore[name-defined,misc]
    pass
