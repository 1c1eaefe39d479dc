"""The program as the import sees it: settings, system accounts, usable rules, and which
members a worker of a partitioned import owns."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Connection,
    select,
)

from habitue.db import table_of
from habitue.ledger.bulk import LedgerTerms
from habitue.ledger.models import Account
from habitue.programs.models import Program
from habitue.programs.service import SYSTEM_ACCOUNTS, earn_on_of
from habitue.rules.compile import RuleSet, compile_rules
from habitue.rules.service import live_rule_versions_sync
from habitue.rules.types import (
    ProgramSnapshot,
)

_programs = table_of(Program)
_accounts = table_of(Account)


@dataclass
class _Member:
    id: int
    public_id: str
    status: str
    available: int
    pending: int
    enrolled_at: datetime
    tier: str | None


@dataclass
class _Program:
    id: int
    snapshot: ProgramSnapshot
    """Code, currency, timezone, earning rate and pending period, as `decide` sees them."""
    expiry_policy: str
    expiry_days: int | None
    card_prefix: str
    system: dict[str, int]
    rules: RuleSet
    limited_rules: frozenset[str]
    """Codes of the rules with caps or a budget: a purchase one of them applies to (or clips)
    goes the API's way (`delivering`), which reads and writes their usage."""
    share: tuple[int, int] = (0, 1)
    """(k, n): this process imports the members whose external id hashes to k of n
    (`member_share`), and draws the card numbers that are k modulo n, so that the workers
    of a partitioned import never enrol one member or issue one number twice."""

    def owns(self, member_external_id: str) -> bool:
        part, parts = self.share
        return parts == 1 or member_share(member_external_id, parts) == part

    @property
    def ledger_terms(self) -> LedgerTerms:
        """What the ledger's bulk planner needs of the program (`ledger.bulk`)."""
        return LedgerTerms(self.id, self.system["issued"], self.expiry_policy, self.expiry_days,
                           self.snapshot.timezone)  # fmt: skip

    def may_issue(self, number: str) -> bool:
        part, parts = self.share
        return parts == 1 or int(number) % parts == part


def member_share(member_external_id: str, parts: int) -> int:
    """Which of `parts` workers imports a member's purchases (stable across processes)."""
    return zlib.crc32(member_external_id.encode("utf-8", "surrogateescape")) % parts


def _load_program(conn: Connection, code: str) -> _Program:
    from habitue.money import currency_exponent

    row = conn.execute(select(_programs).where(_programs.c.code == code)).mappings().first()
    if row is None:
        raise LookupError(f"no program {code!r}")
    system = dict(
        conn.execute(
            select(_accounts.c.kind, _accounts.c.id).where(
                _accounts.c.program_id == row["id"], _accounts.c.member_id.is_(None)
            )
        ).all()
    )
    exp = currency_exponent(row["currency"])
    # The bulk path keeps no caps or budgets usage: every rule decides, and a purchase a
    # limited rule applies to is recorded by the API's path (`delivering`), as `POST /events`.
    versions = live_rule_versions_sync(conn, row["id"])
    limited = frozenset(v.spec.code for v in versions if v.spec.caps or v.spec.budget is not None)
    return _Program(
        id=row["id"],
        snapshot=ProgramSnapshot(
            id=row["id"],
            code=code,
            currency=row["currency"],
            currency_exponent=exp,
            timezone=row["timezone"],
            earn_rate=Decimal(row["earn_rate"]),
            rounding=row["rounding"],
            pending_days=row["pending_days"],
            earn_on=earn_on_of(row["settings"]),
        ),
        expiry_policy=row["expiry_policy"],
        expiry_days=row["expiry_days"],
        card_prefix=row["card_prefix"],
        system={k: system[k] for k in SYSTEM_ACCOUNTS},
        rules=compile_rules(versions),
        limited_rules=limited,
    )
