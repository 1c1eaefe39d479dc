"""Aggregate-only release across dates: two cells of `GET /analytics/segments` that differ by
fewer than k members are not both released (a differencing attack over time)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from habitue.privacy.release import differencing_cells
from tests.conftest import create_program, enrol, purchase
from tests.privacy.test_erasure import _key

MAY, JUNE = "2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"

# Eight members' purchases (member, day, total): member 3's second purchase on 5 May moves
# them into "Potential loyalists", whose three members of 1 May become four on 1 June.
ATTACK = [
    (1, "2026-02-19", "10.00"), (1, "2026-03-06", "10.00"), (2, "2026-04-05", "30.00"),
    (3, "2026-02-04", "10.00"), (3, "2026-05-05", "10.00"), (4, "2026-04-05", "30.00"),
    (5, "2026-01-20", "10.00"), (5, "2026-02-04", "30.00"), (6, "2026-04-20", "30.00"),
    (7, "2026-02-04", "30.00"), (8, "2026-02-19", "30.00"), (8, "2026-03-21", "30.00"),
]  # fmt: skip


def _d(month: int) -> datetime:
    return datetime(2026, month, 1, tzinfo=UTC)


def test_cells_that_differ_by_fewer_than_k_members_are_withheld_in_pairs() -> None:
    dates = [_d(1), _d(2), _d(3)]
    memberships = [
        {1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "B"},
        {1: "A", 2: "A", 3: "A", 7: "A", 4: "B", 5: "B", 6: "B"},  # A gains member 7
        {1: "C", 2: "C", 3: "C", 7: "C", 4: "B", 5: "B"},  # B loses 6; A renamed C
    ]
    hidden = differencing_cells(dates, memberships, 3)
    # A(Jan) vs A(Feb): member 7 alone; A(Jan) vs C(Mar): member 7 again; B(Jan|Feb) vs B(Mar)
    # member 6 alone; B(Mar) has 2 < k members anyway.
    assert hidden == {(_d(1), "A"), (_d(2), "A"), (_d(3), "C")} | {
        (_d(m), "B") for m in (1, 2, 3)}  # fmt: skip
    # A(Feb) and C(Mar) hold the same members: a difference of none singles no one out.
    assert differencing_cells(dates[1:], memberships[1:], 3) == {
        (_d(2), "B"), (_d(3), "B")}  # fmt: skip
    # a difference of k members or more is released, in any order of the members
    series = [{i: "A" for i in range(10)}, {i: "A" for i in range(3, 16)}]
    assert differencing_cells(dates[:2], series, 3) == set()
    assert differencing_cells(dates[:2], series, 10) == {(_d(1), "A"), (_d(2), "A")}
    assert differencing_cells([], [], 3) == set()


async def test_two_dates_whose_cells_differ_by_one_member_release_neither(
    client: httpx.AsyncClient,
) -> None:
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 3})).status_code == 200
    members = [(await enrol(client, program))["id"] for _ in range(8)]
    for who, day, total in ATTACK:
        r = await purchase(client, program, members[who - 1], total, occurred_at=f"{day}T12:00:00Z")
        assert r.status_code == 201, r.text

    def cell(items: list[dict[str, object]], when: str) -> dict[str, object]:
        (found,) = [
            i for i in items
            if i["as_of"] == when and i["segment"] == "Potential loyalists"
        ]  # fmt: skip
        return found

    # The owner sees the attack's two cells: 3 members on 1 May, 4 on 1 June.
    r = await client.get(f"{base}/analytics/segments?months=3&as_of=2026-07-01T00:00:00Z")
    owner = r.json()["items"]
    assert [cell(owner, t)["members"] for t in (MAY, JUNE)] == [3, 4]

    analyst = await _key(client, program, "analytics:read")
    # Whatever the request's dates, neither cell is released: the difference is member 3.
    for query in ("", f"?months=1&as_of={JUNE}", f"?months=1&as_of={MAY}",
                  "?months=2&as_of=2026-06-15T00:00:00Z", "?months=120"):  # fmt: skip
        r = await client.get(f"{base}/analytics/segments{query}", headers=analyst)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert all(i["as_of"].endswith("-01T00:00:00Z") for i in items), items
        for when in (MAY, JUNE):
            if any(i["as_of"].startswith(when[:10]) for i in items):
                got = cell(items, when)
                assert got["suppressed"] is True
                assert got["members"] is None and got["monetary"] is None
        assert all((i["members"] is None) is i["suppressed"] for i in items)
    # The same cell, the same answer in every request.
    one = (await client.get(f"{base}/analytics/segments?months=1&as_of={JUNE}", headers=analyst))
    assert cell(one.json()["items"], JUNE)["suppressed"] is True


async def test_a_steady_series_is_released(client: httpx.AsyncClient) -> None:
    """Two groups of three members with the same purchases: each month start's cells hold the
    same members as the month before, or a whole group more (k = 3)."""
    program = await create_program(client)
    base = f"/v1/programs/{program}"
    assert (await client.put(f"{base}/privacy", json={"min_group_size": 3})).status_code == 200
    for day in ("2026-01-10", "2026-03-10"):
        for _ in range(3):
            m = (await enrol(client, program))["id"]
            r = await purchase(client, program, m, "10.00", occurred_at=f"{day}T12:00:00Z")
            assert r.status_code == 201, r.text
    analyst = await _key(client, program, "analytics:read")
    r = await client.get(f"{base}/analytics/segments?months=4&as_of=2026-05-01T00:00:00Z",
                         headers=analyst)  # fmt: skip
    released = [(i["as_of"][:10], i["segment"], i["members"], i["suppressed"])
                for i in r.json()["items"]]  # fmt: skip
    owner = (await client.get(f"{base}/analytics/segments?months=4&as_of=2026-05-01T00:00:00Z"))
    whole = [(i["as_of"][:10], i["segment"], i["members"], False) for i in owner.json()["items"]]
    assert released == whole
    assert len(released) >= 4 and all(m == 3 for _, _, m, _ in released)
    assert {d for d, *_ in released} == {"2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01"}
