"""`habitue ledger verify`: every invariant of the ledger, checked with set-based SQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

REFERENCES: dict[str, tuple[str, str, str]] = {
    "events name an existing program": ("events", "program_id", "programs"),
    "events name an existing member": ("events", "member_id", "members"),
    "basket lines name an existing event": ("event_lines", "event_id", "events"),
    "transactions name an existing program": ("ledger_transactions", "program_id", "programs"),
    "postings name an existing transaction": ("postings", "transaction_id", "ledger_transactions"),
    "postings name an existing account": ("postings", "account_id", "accounts"),
    "lots name an existing account": ("lots", "account_id", "accounts"),
}
"""The references a purchase writes that PostgreSQL does not enforce with a foreign key
(migration 0038: each check cost a query per row, and those to the one `programs` row and the
program's `issued` account a row lock shared by every till's transaction). SQLite keeps them
as foreign keys, except while the import writes with them off. No parent is ever deleted
(erasure keeps the member's row, pseudonymised), so a row that names a missing parent is a
writer's bug; these checks find it: (child table, column, parent table whose `id` it names)."""


def _orphans(child: str, column: str, parent: str) -> str:
    """The rows of `child` whose `column` names no row of `parent` (names from REFERENCES)."""
    return f"""
        SELECT c.id, c.{column} FROM {child} c
        WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = c.{column})"""  # noqa: S608


CHECKS: dict[str, str] = {
    "transaction postings sum to zero": """
        SELECT transaction_id, SUM(amount) FROM postings
        GROUP BY transaction_id HAVING SUM(amount) <> 0""",
    "postings of a program sum to zero": """
        SELECT program_id, SUM(amount) FROM postings
        GROUP BY program_id HAVING SUM(amount) <> 0""",
    "member balance equals the sum of its postings": """
        SELECT a.id, a.balance, COALESCE(p.total, 0) FROM accounts a
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM postings GROUP BY account_id) p
          ON p.account_id = a.id
        WHERE a.member_id IS NOT NULL AND a.balance <> COALESCE(p.total, 0)""",
    "no member account below zero (unless the program allows it)": """
        SELECT a.id, a.balance FROM accounts a JOIN programs g ON g.id = a.program_id
        WHERE a.member_id IS NOT NULL AND a.balance < 0
          AND (a.kind = 'pending' OR g.allow_negative = FALSE)""",
    "open lots add up to the balance": """
        SELECT a.id, a.balance, COALESCE(l.total, 0) FROM accounts a
        LEFT JOIN (SELECT account_id, SUM(remaining) AS total FROM lots
                   WHERE remaining > 0 GROUP BY account_id) l ON l.account_id = a.id
        WHERE a.member_id IS NOT NULL
          AND COALESCE(l.total, 0) <> CASE WHEN a.balance > 0 THEN a.balance ELSE 0 END""",
    "lot remaining within 0 and its amount": """
        SELECT id, amount, remaining FROM lots WHERE remaining < 0 OR remaining > amount""",
    "transaction has at least two postings": """
        SELECT t.id FROM ledger_transactions t
        LEFT JOIN postings p ON p.transaction_id = t.id
        GROUP BY t.id HAVING COUNT(p.id) < 2""",
    **{name: _orphans(*reference) for name, reference in REFERENCES.items()},
}


async def verify(session: AsyncSession, *, sample: int = 5) -> dict[str, list[tuple[object, ...]]]:
    """Breaches per invariant (empty lists when the ledger is sound)."""
    breaches: dict[str, list[tuple[object, ...]]] = {}
    for name, sql in CHECKS.items():
        rows = (await session.execute(text(sql + f" LIMIT {int(sample)}"))).all()
        breaches[name] = [tuple(r) for r in rows]
    return breaches
