"""The ledger's words: the enums of `habitue.ledger.kinds` and the tables' CHECK constraints
(migrations 0024 and 0036) say the same, on both databases."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from habitue.db import sync_url
from habitue.ledger.kinds import ACCOUNT_KINDS, EntryKind, MemberAccount, SystemAccount
from habitue.programs.service import SYSTEM_ACCOUNTS


def _check_text(table_sql: str, name: str) -> str:
    """The text of the named CHECK in SQLite's `CREATE TABLE`, its parentheses balanced."""
    found = re.search(rf"CONSTRAINT {name} CHECK \(", table_sql)
    assert found is not None, table_sql
    depth, start = 1, found.end()
    for at in range(start, len(table_sql)):
        depth += {"(": 1, ")": -1}.get(table_sql[at], 0)
        if depth == 0:
            return table_sql[start:at]
    raise AssertionError(table_sql)


def _check_values(db_kind: str, db_url: str, table: str) -> set[str]:
    """The values the table's `kind` CHECK allows, read back from the database."""
    name = f"ck_{table}_kind_known"
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            if db_kind == "postgres":
                sql = conn.execute(
                    text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :n"),
                    {"n": name},
                ).scalar_one()
            else:
                table_sql = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"),
                    {"t": table},
                ).scalar_one()
                sql = _check_text(table_sql, name)
    finally:
        engine.dispose()
    return set(re.findall(r"'([a-z_]+)'", sql))


def test_entry_kinds_agree_with_the_check(db_kind: str, db_url: str) -> None:
    assert _check_values(db_kind, db_url, "ledger_transactions") == set(EntryKind)


def test_account_kinds_agree_with_the_check(db_kind: str, db_url: str) -> None:
    assert _check_values(db_kind, db_url, "accounts") == set(ACCOUNT_KINDS)
    assert set(ACCOUNT_KINDS) == set(MemberAccount) | set(SystemAccount)
    assert set(SYSTEM_ACCOUNTS) == set(SystemAccount)


def test_an_unknown_kind_is_refused(db_kind: str, db_url: str) -> None:
    engine = create_engine(sync_url(db_url))
    try:
        # The CHECK refuses it (SQLite checks the program's foreign key after it; PostgreSQL
        # has none since 0038).
        with pytest.raises(IntegrityError, match="kind_known"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO ledger_transactions (program_id, member_id, kind, reference, "
                    "created_at, effective_at) "
                    "VALUES (0, NULL, 'gift', 'probe', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
    finally:
        engine.dispose()


def test_every_kind_is_a_snake_case_word_with_a_docstring() -> None:
    for enum in (EntryKind, MemberAccount, SystemAccount):
        for member in enum:
            assert re.fullmatch(r"[a-z][a-z_]*", member.value), member
    assert len(EntryKind) == len({k.value for k in EntryKind})
