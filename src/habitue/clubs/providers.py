"""Payment providers: the interface renewals charge through, `manual` and `test`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from habitue.ids import new_id

ChargeStatus = Literal["succeeded", "failed", "pending"]


@dataclass(frozen=True, slots=True)
class Charge:
    """A request to collect one period's fee."""

    subscription_id: str
    amount_minor: int
    currency: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What the provider answered: collected, declined, or waiting for an outside payment."""

    status: ChargeStatus
    reference: str | None = None
    error: str | None = None


class PaymentProvider(Protocol):
    """Collects subscription fees; `pending` means the payment will be recorded later."""

    name: str

    async def charge(self, charge: Charge) -> ChargeResult: ...

    async def refund(self, reference: str | None, amount_minor: int) -> None: ...


class ManualProvider:
    """Payments recorded by staff or by a signed webhook from the shop: charges wait."""

    name = "manual"

    async def charge(self, charge: Charge) -> ChargeResult:
        del charge
        return ChargeResult("pending")

    async def refund(self, reference: str | None, amount_minor: int) -> None:
        del reference, amount_minor  # the money goes back outside Habitué


@dataclass
class TestProvider:
    """A provider for tests and demos that succeeds unless told to fail."""

    __test__ = False  # not a pytest test class
    name: str = "test"
    failing: bool = False
    fail_next: int = 0
    charges: list[Charge] = field(default_factory=list)

    def fail(self, on: bool = True) -> None:
        """Decline every charge from now on (or accept them again)."""
        self.failing = on

    async def charge(self, charge: Charge) -> ChargeResult:
        self.charges.append(charge)
        if self.failing or self.fail_next > 0:
            self.fail_next = max(self.fail_next - 1, 0)
            return ChargeResult("failed", error="card_declined")
        return ChargeResult("succeeded", reference=f"test_{new_id()}")

    async def refund(self, reference: str | None, amount_minor: int) -> None:
        del reference, amount_minor


test_provider = TestProvider()
PROVIDERS: dict[str, PaymentProvider] = {"manual": ManualProvider(), "test": test_provider}
