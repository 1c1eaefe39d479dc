"""`analytics.campaigns.list_campaigns`: latest start first, groups' sizes as at creation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.analytics import uplift
from habitue.analytics.campaigns import CampaignInfo, campaign_key, list_campaigns
from habitue.programs import service as programs_service
from tests.conftest import create_program, enrol


async def _campaign(
    client: httpx.AsyncClient, program: str, code: str, kind: str, share: float, starts: datetime
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/programs/{program}/campaigns",
        json={
            "code": code,
            "kind": kind,
            "holdout_share": share,
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(days=14)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def test_campaigns_latest_start_first_with_their_groups_at_creation(
    client: httpx.AsyncClient, program: str, session: AsyncSession
) -> None:
    now = clock.now().replace(microsecond=0)
    made = {
        "first": await _campaign(client, program, "first", "rule", 0.5, now - timedelta(days=60))
    }
    members = [(await enrol(client, program))["id"] for _ in range(12)]
    plan = [
        ("old", "offer", 0.5, now - timedelta(days=30)),
        ("beta", "rule", 0.1, now - timedelta(days=1)),
        ("alpha", "offer", 0.25, now - timedelta(days=1)),
        ("summer", "newsletter", 0.75, now + timedelta(days=10)),
    ]
    for code, kind, share, starts in plan:
        made[code] = await _campaign(client, program, code, kind, share, starts)
    await enrol(client, program)  # joins later: the hash places them, the sizes stay as made
    other = await create_program(client)
    await enrol(client, other)
    await _campaign(client, other, "alpha", "offer", 0.5, now + timedelta(days=99))

    info = await programs_service.get_info(session, program)
    got = await list_campaigns(session, info)
    assert [c.code for c in got] == ["summer", "alpha", "beta", "old", "first"]
    for c in got:
        at_creation = [] if c.code == "first" else members  # nobody was enrolled yet for first
        key = campaign_key(info, c.code)
        holdout = sum(
            uplift.assign_group(key, m, holdout_share=c.holdout_share) == "holdout"
            for m in at_creation
        )
        assert (c.treatment, c.holdout) == (len(at_creation) - holdout, holdout), c.code
        api = made[c.code]
        assert c == CampaignInfo(
            code=api["code"],
            kind=api["kind"],
            holdout_share=api["holdout_share"],
            starts_at=datetime.fromisoformat(api["starts_at"]),
            ends_at=datetime.fromisoformat(api["ends_at"]),
            created_at=datetime.fromisoformat(api["created_at"]),
            treatment=api["treatment"],
            holdout=api["holdout"],
        ), c.code
    old = next(c for c in got if c.code == "old")
    assert (old.kind, old.holdout_share) == ("offer", 0.5)
    assert (old.starts_at, old.ends_at) == (now - timedelta(days=30), now - timedelta(days=16))
    assert old.starts_at.utcoffset() == timedelta(0)
    assert sum(c.treatment + c.holdout for c in got) == 4 * 12


async def test_a_program_without_campaigns_lists_none(program: str, session: AsyncSession) -> None:
    info = await programs_service.get_info(session, program)
    assert await list_campaigns(session, info) == []
