"""Random sequences of enrol / purchase / refund / spend / adjust / expire / time passing.

After every step every ledger invariant holds (the same checks as `habitue ledger verify`),
and every member's available and pending points, and their next lots to expire, equal what a
model of the ledger predicts (`Model`): lots credited with their expiry, spent closest to
expiry first, a refund's take-back from its purchase's lot first, debts repaid by the next
credit, and a lot past its expiry never counted nor spent whether the expiry job ran or not.
Hypothesis shrinks a failing sequence to a short one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field
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
EXPIRY_DAYS = 6


@dataclass
class ModelLot:
    """A lot as the model sees it: its points left, when it expires (model day and order of
    credit, since real time runs on between steps) and the purchase it came from."""

    remaining: int
    expires: tuple[int, int]
    event: str | None


@dataclass
class PendingLot:
    remaining: int
    due_day: int
    seq: int
    event: str


@dataclass
class ModelMember:
    lots: list[ModelLot] = field(default_factory=list)
    pending: list[PendingLot] = field(default_factory=list)
    debt: int = 0


@dataclass
class ModelPurchase:
    member: str
    cents: int
    points: int
    refunded: int = 0
    taken_back: int = 0


class Model:
    """What the ledger should hold, in plain Python: the reference the machine checks."""

    def __init__(self, pending_days: int, negative: bool) -> None:
        self.pending_days = pending_days
        self.negative = negative
        self.day = 0
        self.seq = 0
        self.members: dict[str, ModelMember] = {}
        self.purchases: dict[str, ModelPurchase] = {}

    def live(self, m: ModelMember) -> list[ModelLot]:
        return sorted(
            (lot for lot in m.lots if lot.remaining > 0 and lot.expires[0] > self.day),
            key=lambda lot: lot.expires,
        )

    def available(self, member: str) -> int:
        m = self.members[member]
        return sum(lot.remaining for lot in self.live(m)) - m.debt

    def pending_points(self, member: str) -> int:
        return sum(p.remaining for p in self.members[member].pending)

    def expiring(self, member: str) -> list[int]:
        return [lot.remaining for lot in self.live(self.members[member])][:3]

    def _credit(
        self, m: ModelMember, points: int, expires: tuple[int, int], event: str | None
    ) -> None:
        repaid = min(points, m.debt)
        m.debt -= repaid
        if points > repaid:
            m.lots.append(ModelLot(points - repaid, expires, event))

    def credit(self, member: str, points: int, event: str | None = None) -> None:
        self.seq += 1
        m = self.members[member]
        if self.pending_days and event is not None:
            m.pending.append(PendingLot(points, self.day + self.pending_days, self.seq, event))
        else:
            self._credit(m, points, (self.day + EXPIRY_DAYS, self.seq), event)

    def _consume(self, m: ModelMember, amount: int, prefer: str | None) -> None:
        lots = sorted(self.live(m), key=lambda lot: (lot.event != prefer) if prefer else False)
        for lot in lots:
            take = min(amount, lot.remaining)
            lot.remaining -= take
            amount -= take
        assert amount == 0

    def spend(self, member: str, points: int) -> bool:
        if points > self.available(member):
            return False
        self._consume(self.members[member], points, None)
        return True

    def refund(self, ext: str, cents: int) -> None:
        p = self.purchases[ext]
        m = self.members[p.member]
        p.refunded += cents
        target = p.points * p.refunded // p.cents if p.cents else p.points
        to_take = target - p.taken_back
        p.taken_back += max(to_take, 0)
        if to_take <= 0:
            return
        taken = 0
        for lot in m.pending:
            if lot.event == ext:
                taken = min(lot.remaining, to_take)
                lot.remaining -= taken
        m.pending = [lot for lot in m.pending if lot.remaining > 0]
        rest = to_take - taken
        if not rest:
            return
        # The expired lots are written down first: the take-back works from the true balance.
        before = self.available(p.member)
        took = rest if self.negative else min(rest, max(before, 0))
        from_lots = min(took, max(before, 0))
        self._consume(m, from_lots, ext)
        m.debt += took - from_lots

    def release(self) -> None:
        for m in self.members.values():
            due = sorted((p for p in m.pending if p.due_day <= self.day), key=lambda p: p.seq)
            for p in due:
                self._credit(m, p.remaining, (p.due_day + EXPIRY_DAYS, p.seq), p.event)
            m.pending = [p for p in m.pending if p.due_day > self.day]


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
        self.model = Model(0, False)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        url = f"/v1/programs/{self.code}{path}"
        response: httpx.Response = self.run(self.client.post(url, json=body))
        return response

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
                    "expiry": {"policy": "days", "days": EXPIRY_DAYS},
                    "allow_negative": negative,
                },
            )
        )
        assert r.status_code == 201, r.text
        self.model = Model(pending, negative)

    @rule(target=members)
    def enrol(self) -> str:
        r = self.post("/members", {})
        assert r.status_code == 201
        member: str = r.json()["id"]
        self.model.members[member] = ModelMember()
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
        points = (cents * 3) // 200
        assert r.json()["points"] == points
        self.model.purchases[ext] = ModelPurchase(member, cents, points)
        if points:
            self.model.credit(member, points, ext)
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
            self.model.refund(ext, amount)

    @rule(member=members, points=st.integers(1, 400))
    def spend(self, member: str, points: int) -> None:
        before = self.balance(member)
        r = self.post(f"/members/{member}/spends", {"points": points})
        if self.model.spend(member, points):
            assert r.status_code == 201, r.text
            assert self.balance(member) == before - points
        else:
            assert r.status_code == 409, r.text
            assert self.balance(member) == before

    @rule(member=members, points=st.integers(-300, 300).filter(bool))
    def adjust(self, member: str, points: int) -> None:
        r = self.post(f"/members/{member}/adjustments", {"points": points, "reason": "support"})
        if points > 0:
            self.model.credit(member, points)
            assert r.status_code == 201, r.text
        elif self.model.spend(member, -points):
            assert r.status_code == 201, r.text
        else:
            assert r.status_code == 409, r.text

    @rule(days=st.integers(1, 8))
    def time_passes(self, days: int) -> None:
        clock.advance(timedelta(days=days))
        self.model.day += days

    @rule()
    def run_jobs(self) -> None:
        self.run(jobs.run_release(self.db, self.code))
        self.model.release()
        self.run(jobs.run_expiry(self.db, self.code))
        self.run(jobs.run_expiry(self.db, self.code))

    def balance(self, member: str) -> int:
        r = self.run(self.client.get(f"/v1/programs/{self.code}/members/{member}/balance"))
        value: int = r.json()["available"]
        return value

    @invariant()
    def balances_match_the_model(self) -> None:
        for member in self.model.members:
            r = self.run(self.client.get(f"/v1/programs/{self.code}/members/{member}/balance"))
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["available"] == self.model.available(member), (member, got)
            assert got["pending"] == self.model.pending_points(member), (member, got)
            assert [e["points"] for e in got["expiring"]] == self.model.expiring(member), got

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
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class TestLedgerMachine(LedgerMachine.TestCase):  # type: ignore[valid-type,misc]
    pass
