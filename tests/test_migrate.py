"""The migrations give the schema the models declare: identifier collation, partial indexes."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import String, create_engine, text

from habitue.db import sync_url
from habitue.migrate import alembic_config, upgrade
from habitue.models import Base
from tests.conftest import PG_ADMIN_URL


def _ident_columns() -> set[tuple[str, str]]:
    """(table, column) of every model column declared with `habitue.db.ident`."""
    out = set()
    for table in Base.metadata.tables.values():
        for column in table.columns:
            variant = getattr(column.type, "_variant_mapping", {}).get("postgresql")
            if isinstance(variant, String) and variant.collation == "C":
                out.add((table.name, column.name))
    return out


def test_identifiers_compare_bytes_on_postgresql(db_kind: str, db_url: str) -> None:
    if db_kind != "postgres":
        pytest.skip("SQLite compares text byte by byte already")
    engine = create_engine(sync_url(db_url))
    with engine.connect() as conn:
        collated = {
            (r.table_name, r.column_name)
            for r in conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND collation_name = 'C'"
                )
            )
        }
    engine.dispose()
    declared = _ident_columns()
    assert ("events", "external_id") in declared
    assert collated == declared


def _index_sql(url: str, name: str) -> str:
    engine = create_engine(sync_url(url))
    query = (
        "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
        if engine.dialect.name == "postgresql"
        else "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
    )
    with engine.connect() as conn:
        sql = conn.execute(text(query), {"n": name}).scalar_one()
    engine.dispose()
    return str(sql)


def test_the_foreign_keys_are_those_the_models_create(db_url: str) -> None:
    """Each table's foreign keys are those its model's CREATE TABLE has on this dialect:
    0038_pgcost's references (`habitue.db.sqlite_foreign_key`) on SQLite only."""
    import re

    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateTable

    engine = create_engine(sync_url(db_url))
    reflected: dict[str, set[str]] = {}
    try:
        found = inspect(engine)
        for table in Base.metadata.sorted_tables:
            ddl = str(CreateTable(table).compile(dialect=engine.dialect))
            declared = set(re.findall(r"CONSTRAINT (\w+) FOREIGN KEY", ddl))
            reflected[table.name] = {fk["name"] for fk in found.get_foreign_keys(table.name)}
            assert reflected[table.name] == declared, table.name
    finally:
        engine.dispose()
    sqlite = engine.dialect.name == "sqlite"
    assert ("fk_events_program_id_programs" in reflected["events"]) == sqlite
    assert ("fk_event_lines_event_id_events" in reflected["event_lines"]) == sqlite
    assert ("fk_postings_account_id_accounts" in reflected["postings"]) == sqlite
    assert "fk_accounts_program_id_programs" in reflected["accounts"]


def test_the_feed_sequencer_index_holds_only_unsequenced_rows(db_url: str) -> None:
    assert "seq IS NULL" in _index_sql(db_url, "ix_outbox_program_unsequenced")


@pytest.fixture
def scratch_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of the run's kind, dropped afterwards."""
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('migrate') / 'scratch.db'}"
        return
    import psycopg

    name = f"habitue_migrate_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "revision",
    [
        "0012_ident_collation",
        "0013_outbox_unsequenced",
        "0014_rewards_ident_collation",
        "0019_api_keys",  # the first of wave 2: every later migration goes down and up again
        "0026_messaging",
        "0027_privacy_security",
        "0029_promotions",
        "0028_console",
        "0024_kinds",
        "0032_effective",
        "0033_console2",
        "0034_counters_rows",
        "0035_rule_drafts",
        "0036_kind_checks",
        "0037_promo",
        "0038_pgcost",
        "0039_price",
    ],
)
def test_a_migration_goes_down_and_up_again(scratch_url: str, revision: str) -> None:
    upgrade(scratch_url)
    config = alembic_config(scratch_url)
    command.downgrade(config, f"{revision}@-1")
    if revision == "0013_outbox_unsequenced":
        assert "seq IS NULL" not in _index_sql(scratch_url, "ix_outbox_program_unsequenced")
    upgrade(scratch_url)
    assert "seq IS NULL" in _index_sql(scratch_url, "ix_outbox_program_unsequenced")


def test_the_effective_time_is_backfilled(db_kind: str, scratch_url: str) -> None:
    """0032_effective: a transaction an event wrote is effective when the event occurred;
    any other (a release, an adjustment) when it was booked."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from habitue.db import table_of
    from habitue.events.models import Event
    from habitue.ledger.models import LedgerTransaction, Posting

    events, txns, postings = table_of(Event), table_of(LedgerTransaction), table_of(Posting)
    occurred = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    booked = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    released = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    adjusted = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
    upgrade(scratch_url)
    config = alembic_config(scratch_url)
    command.downgrade(config, "0024_kinds")
    engine = create_engine(sync_url(scratch_url))
    with engine.begin() as conn:
        if db_kind == "postgres":  # rows without their program and member: no foreign keys
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            insert(events).values(
                id="e1", program_id=1, member_id=1, type="purchase", source="api",
                external_id="x1", occurred_at=occurred, total_minor=1000, points=10,
                points_spent=0, refunded_minor=0, points_taken_back=0, spent_returned=0,
                attributes={}, response={}, created_at=booked,
            )
        )  # fmt: skip
        rows = [
            ("earn", "event:e1:earn", "e1", booked),
            ("release", "release:1", "e1", released),
            ("adjust", "adjust:1", None, adjusted),
        ]
        for kind, reference, event_id, at in rows:
            txn = conn.execute(
                insert(txns)
                .values(program_id=1, member_id=1, kind=kind, reference=reference,
                        event_id=event_id, created_at=at)
                .returning(txns.c.id)
            ).scalar_one()  # fmt: skip
            conn.execute(
                insert(postings),
                [
                    {"program_id": 1, "transaction_id": txn, "account_id": a, "member_id": 1,
                     "amount": amount, "created_at": at}
                    for a, amount in ((1, 10), (2, -10))
                ],
            )  # fmt: skip
    config.attributes["check_references"] = False  # the rows stand for a program without one
    command.upgrade(config, "heads")
    with engine.connect() as conn:
        got = dict(conn.execute(select(txns.c.reference, txns.c.effective_at)).all())
        assert conn.execute(select(postings.c.id)).all()  # the postings are still there
    engine.dispose()
    assert {k: v.replace(tzinfo=UTC) for k, v in got.items()} == {
        "event:e1:earn": occurred,
        "release:1": released,
        "adjust:1": adjusted,
    }


@contextlib.asynccontextmanager
async def _operator_api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API over the (migrated) database at `url`, called with the operator key."""
    from habitue.api import create_app
    from habitue.db import Database
    from habitue.settings import Settings
    from tests.conftest import ADMIN_KEY

    settings = Settings(
        env="test", database_url=url, admin_key=ADMIN_KEY, scheduler=False, worker=False,
        hmac_key="test-hmac-key",
    )  # fmt: skip
    db = Database(url)
    app = create_app(settings, db=db)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", headers=headers
            ) as client:
                yield client
    finally:
        await db.dispose()


async def test_a_database_with_a_ledger_goes_down_and_up_again(scratch_url: str) -> None:
    """The migrations that rebuild tables (SQLite's batch mode: copy, drop, rename) keep the
    rows other tables point to: a program with members, purchases and a refund goes down past
    0024_kinds (which rebuilt `ledger_transactions` and `accounts`) and up again, unchanged."""
    from sqlalchemy import func, select

    from habitue.db import Database, table_of
    from habitue.ledger.models import Posting
    from habitue.ledger.verify import verify
    from tests.conftest import create_program, enrol, purchase

    upgrade(scratch_url)
    async with _operator_api(scratch_url) as c:
        program = await create_program(c)
        for i in range(3):
            member = await enrol(c, program)
            assert (await purchase(c, program, member["id"], f"{10 + i}.00")).status_code == 201

    postings = table_of(Posting)
    engine = create_engine(sync_url(scratch_url))

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(postings)).scalar_one())

    before = count()
    assert before > 0
    command.downgrade(alembic_config(scratch_url), "0028_console")
    upgrade(scratch_url)
    assert count() == before
    engine.dispose()
    db = Database(scratch_url)
    async with db.read() as session:
        assert not any((await verify(session)).values())
    await db.dispose()



async def test_members_enrolled_before_0034_get_a_counters_row(scratch_url: str) -> None:
    """0034_counters_rows: members without a counters row (enrolled before it) get one with
    nothing counted; those with counted events keep theirs; and a new member's row is made
    with them, so that their first purchase counts from it."""
    from sqlalchemy import delete, select

    from habitue.db import table_of
    from habitue.members.models import Member
    from habitue.rules.models import MemberCounters
    from habitue.rules.service import state_from_json
    from tests.conftest import create_program, enrol, purchase

    upgrade(scratch_url)
    counters = table_of(MemberCounters)
    engine = create_engine(sync_url(scratch_url))

    def states() -> dict[int, Any]:
        with engine.connect() as conn:
            return dict(conn.execute(select(counters.c.member_id, counters.c.state)).all())

    async with _operator_api(scratch_url) as c:
        program = await create_program(c)
        bought, idle = await enrol(c, program), await enrol(c, program)
        assert len(states()) == 2  # made at enrolment
        assert (await purchase(c, program, bought["id"], "10.00")).status_code == 201
    members = table_of(Member)
    with engine.begin() as conn:
        ids = dict(conn.execute(select(members.c.public_id, members.c.id)).all())
        # As before 0034, the member with nothing counted has no row.
        conn.execute(delete(counters).where(counters.c.member_id == ids[idle["id"]]))
    counted = states()
    assert list(counted) == [ids[bought["id"]]]
    assert state_from_json(counted[ids[bought["id"]]]).lifetime["purchases"] == 1
    command.downgrade(alembic_config(scratch_url), "0033_console2")
    upgrade(scratch_url)
    after = states()
    assert after[ids[bought["id"]]] == counted[ids[bought["id"]]]
    assert state_from_json(after[ids[idle["id"]]]) == state_from_json({})
    engine.dispose()


async def test_each_program_with_promotions_gets_a_stamp(scratch_url: str) -> None:
    """0039_price: the programs that have promotions get a stamp of their own (so the till
    keeps them in its process at once); a program without promotions gets none."""
    from tests.conftest import create_program
    from tests.promotions.helpers import promo

    upgrade(scratch_url)
    async with _operator_api(scratch_url) as c:
        programs = [await create_program(c) for _ in range(3)]
        for program in programs[:2]:
            await promo(c, program, code="five", effect={"type": "order_percent", "percent": "5"})
    config = alembic_config(scratch_url)
    command.downgrade(config, "0038_pgcost")
    command.upgrade(config, "heads")
    engine = create_engine(sync_url(scratch_url))
    with engine.connect() as conn:
        stamps = conn.execute(
            text(
                "SELECT p.code, s.stamp FROM promotion_stamps AS s"
                " JOIN programs AS p ON p.id = s.program_id"
            )
        ).all()
    engine.dispose()
    assert sorted(code for code, _ in stamps) == sorted(programs[:2])
    assert len({stamp for _, stamp in stamps}) == 2
    assert all(len(stamp) == 32 for _, stamp in stamps)
    async with _operator_api(scratch_url) as c:  # and the till prices with them
        member = (await c.post(f"/v1/programs/{programs[0]}/members", json={})).json()["id"]
        line = {"sku": "A", "category": "x", "quantity": 1, "unit_price": "10.00"}
        for _ in range(2):  # read, then from the cache
            r = await c.post(
                f"/v1/programs/{programs[0]}/baskets/price",
                json={"member": {"id": member}, "lines": [line]},
            )
            assert r.status_code == 200, r.text
            assert [d["amount"] for d in r.json()["discounts"]] == ["0.50"]
