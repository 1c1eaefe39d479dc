"""Whose baskets the recommendation model learns from: the `analytics` purpose.

The item-item model (co-purchases, popular items) and its offline evaluations learn only from
the baskets of members consenting to `analytics` ("counting the member in the program's
statistics beyond what running it needs"). Unlike the few population parameters of the RFM
quintiles and the CLV fit, an item-item model can repeat one member's rare basket to others
("bought X also bought Y" when only they bought X), so it is where the purpose is applied;
see docs/privacy.md, "Where each purpose is enforced".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, func, select

from habitue.db import table_of
from habitue.members.models import Member
from habitue.privacy.models import ConsentChange
from habitue.privacy.purposes import Purpose, granted

_members = table_of(Member)
_history = table_of(ConsentChange)


def _consents(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # a JSON column read as text by a raw driver
        loaded = orjson.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return dict(value or {})


def member_ids(conn: Connection, program_id: int, purposes: Iterable[Purpose]) -> frozenset[int]:
    """Internal ids of the program's (not erased) members granting any of `purposes`."""
    wanted = tuple(purposes)
    rows = conn.execute(
        select(_members.c.id, _members.c.consents).where(
            _members.c.program_id == program_id, _members.c.status != "erased"
        )
    )
    return frozenset(
        int(r.id) for r in rows if any(granted(_consents(r.consents), p) for p in wanted)
    )


def consents_stamp(conn: Connection, program_id: int) -> tuple[int, int]:
    """Changes whenever a consent is given or withdrawn (each change appends to the consent
    history) or a member is erased: a cache key for what `member_ids` answers."""
    members = conn.execute(
        select(func.count()).where(
            _members.c.program_id == program_id, _members.c.status != "erased"
        )
    ).scalar_one()
    newest = conn.execute(
        select(func.coalesce(func.max(_history.c.id), 0)).where(
            _history.c.program_id == program_id
        )
    ).scalar_one()
    return int(members), int(newest)


def only_members(table: pa.Table, ids: frozenset[int]) -> pa.Table:
    """The rows of `table` (with an integer `member_id`) of the given members."""
    if table.num_rows == 0:
        return table
    keep = pa.array(sorted(ids), type=table.schema.field("member_id").type)
    return table.filter(pc.is_in(table.column("member_id"), value_set=keep))


def training_lines(lines: pa.Table, conn: Connection, program_id: int) -> pa.Table:
    """Basket lines the recommendation model may learn from: members consenting to analytics."""
    return only_members(lines, member_ids(conn, program_id, (Purpose.ANALYTICS,)))
