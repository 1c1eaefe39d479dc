"""Consent to profiling at every point that targets members by segment: a segment whose
condition reads behaviour (a *profiling* segment) reaches, as a rule audience or an offer's
targets, only the members who consent to profiling; a segment over declared data reaches
everyone in it. The same member is tried with and without the consent."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from habitue.db import Database
from tests.conftest import enrol, new_code, purchase
from tests.web.conftest import csrf_of, make_staff, staff_signin


async def _setup(client: httpx.AsyncClient, program: str) -> tuple[str, str]:
    base = f"/v1/programs/{program}"
    profiled = (await enrol(client, program, consents={"profiling": True},
                            attributes={"store": "Canal"}))["id"]  # fmt: skip
    private = (await enrol(client, program, consents={"email": True},
                           attributes={"store": "Canal"}))["id"]  # fmt: skip
    for m in (profiled, private):
        assert (await purchase(client, program, m, "30.00")).status_code == 201
    assert (await client.post(f"{base}/analytics/scores")).status_code == 200
    for code, condition in (("buyers", "member.frequency >= 1"),
                            ("canal", 'member.attributes.store == "Canal"')):  # fmt: skip
        r = await client.post(f"{base}/segments", json={"code": code, "condition": condition})
        assert r.status_code == 201, r.text
    return profiled, private


async def _review(client: httpx.AsyncClient, program: str, member: str) -> dict[str, int]:
    r = await client.post(
        f"/v1/programs/{program}/events",
        json={"type": "review", "member": {"id": member}, "external_id": new_code("rv")},
    )
    assert r.status_code == 201, r.text
    return {e["rule"]: e["points"] for e in r.json()["effects"]}


async def _consent(client: httpx.AsyncClient, program: str, member: str, given: bool) -> None:
    r = await client.patch(
        f"/v1/programs/{program}/members/{member}", json={"consents": {"profiling": given}}
    )
    assert r.status_code == 200, r.text


async def test_segments_say_whether_they_profile_and_count_everyone(
    client: httpx.AsyncClient, program: str
) -> None:
    await _setup(client, program)
    base = f"/v1/programs/{program}/segments"
    got = {s["code"]: (s["profiling"], s["members"]) for s in (await client.get(base)).json()}
    assert got == {"buyers": (True, 2), "canal": (False, 2)}  # sizes are aggregates


async def test_a_rule_audience_by_a_profiling_segment_needs_consent_to_profiling(
    client: httpx.AsyncClient, program: str
) -> None:
    profiled, private = await _setup(client, program)
    base = f"/v1/programs/{program}/rules"
    for code, segment, points in (("for-buyers", "buyers", 7), ("for-canal", "canal", 3)):
        r = await client.post(base, json={
            "code": code, "event_type": "review", "effect": {"kind": "fixed", "points": points},
            "audience": {"segments": [segment]}})  # fmt: skip
        assert r.status_code == 201, r.text
    assert await _review(client, program, profiled) == {"for-buyers": 7, "for-canal": 3}
    # Without the consent the behavioural segment does not reach them; the declared one does.
    assert await _review(client, program, private) == {"for-canal": 3}
    quote = await client.post(
        f"/v1/programs/{program}/events/quote",
        json={"type": "review", "member": {"id": private}, "external_id": new_code("q")},
    )
    assert quote.status_code == 200, quote.text
    assert quote.json()["points"] == 3
    # The same members, consents swapped: it follows at once, without recomputing segments.
    await _consent(client, program, private, True)
    await _consent(client, program, profiled, False)
    assert await _review(client, program, private) == {"for-buyers": 7, "for-canal": 3}
    assert await _review(client, program, profiled) == {"for-canal": 3}


async def _offer(
    client: httpx.AsyncClient, program: str, code: str, **targets: Any
) -> httpx.Response:
    now = datetime.now(UTC)
    return await client.post(f"/v1/programs/{program}/offers", json={
        "code": code, "texts": {"en": {"name": code}}, "percent": "10",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=3)).isoformat(), **targets})  # fmt: skip


async def _offers_of(client: httpx.AsyncClient, program: str, member: str) -> set[str]:
    r = await client.get(f"/v1/programs/{program}/members/{member}/offers")
    assert r.status_code == 200, r.text
    return {o["code"] for o in r.json()["items"]}


async def test_an_offer_to_a_profiling_segment_targets_only_members_consenting(
    client: httpx.AsyncClient, program: str
) -> None:
    profiled, private = await _setup(client, program)
    r = await _offer(client, program, "champ", segment="buyers")
    assert r.status_code == 201, r.text
    assert r.json()["members"] == 1
    r = await _offer(client, program, "local", segment="canal")
    assert r.status_code == 201, r.text
    assert r.json()["members"] == 2
    assert await _offers_of(client, program, profiled) == {"champ", "local"}
    assert await _offers_of(client, program, private) == {"local"}
    # Given later: targeting the segment again reaches them too; nobody is targeted twice.
    await _consent(client, program, private, True)
    r = await client.post(
        f"/v1/programs/{program}/offers/champ/members", json={"segment": "buyers"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["members"] == 2
    assert await _offers_of(client, program, private) == {"champ", "local"}


async def test_a_newsletter_to_a_profiling_segment_reaches_only_members_consenting(
    client: httpx.AsyncClient, program: str
) -> None:
    _, private = await _setup(client, program)
    base = f"/v1/programs/{program}"
    r = await client.put(f"{base}/message-templates/news/email/en",
                         json={"subject": "News", "body": "<p>Hello</p>"})  # fmt: skip
    assert r.status_code == 201, r.text
    sent = {}
    for code, segment in (("n_buyers", "buyers"), ("n_canal", "canal")):
        body = {"code": code, "segment": segment, "template": "news"}
        r = await client.post(f"{base}/newsletters", json=body)
        assert r.status_code == 201, r.text
        sent[code] = r.json()["report"]["targeted"]
    assert sent == {"n_buyers": 1, "n_canal": 2}
    # Given later: the next newsletter to the segment reaches them too.
    await _consent(client, program, private, True)
    body = {"code": "n_again", "segment": "buyers", "template": "news"}
    r = await client.post(f"{base}/newsletters", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["report"]["targeted"] == 2


async def test_the_console_member_list_uses_rfm_groups_and_profiling_segments_with_consent(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    profiled, private = await _setup(client, program)
    r = await _offer(client, program, "console")  # no targets yet
    assert r.status_code == 201, r.text
    await staff_signin(client, await make_staff(db, "owner"))

    async def exported(query: str) -> dict[str, str]:
        r = await client.get(f"/admin/{program}/members.csv?{query}")
        assert r.status_code == 200, r.text
        rows = csv.DictReader(io.StringIO(r.text.lstrip("\ufeff")))
        return {row["id"]: row["rfm_group"] for row in rows}

    everyone = await exported("")
    assert set(everyone) == {profiled, private}
    assert everyone[profiled] != "" and everyone[private] == ""  # not exported without consent
    assert set(await exported(f"rfm={everyone[profiled]}")) == {profiled}
    assert set(await exported("segment=buyers")) == {profiled}
    assert set(await exported("segment=canal")) == {profiled, private}
    # An offer to the members a profiling filter keeps: the consenting one only.
    page = await client.get(f"/admin/{program}/members?segment=buyers")
    r = await client.post(f"/admin/{program}/members/offer", data={
        "csrf_token": csrf_of(page.text), "segment": "buyers", "offer": "console"})  # fmt: skip
    assert r.status_code == 303, r.text
    assert "count=1" in r.headers["location"]
    assert await _offers_of(client, program, profiled) == {"console"}
    assert await _offers_of(client, program, private) == set()
    # Given: the same filters keep them at once.
    await _consent(client, program, private, True)
    assert set(await exported("segment=buyers")) == {profiled, private}
    assert (await exported(""))[private] != ""


async def test_the_consent_check_adds_no_statement_to_the_event_path(
    client: httpx.AsyncClient, program: str, db: Database, db_kind: str
) -> None:
    """With segments, a purchase on PostgreSQL reads the member, then the member's segments
    (their consents come with that same query), then writes: three round trips, with or
    without the consent to profiling."""
    from sqlalchemy import event

    profiled, private = await _setup(client, program)
    r = await client.post(f"/v1/programs/{program}/rules", json={
        "code": "for-buyers", "event_type": "purchase", "effect": {"kind": "fixed", "points": 7},
        "audience": {"segments": ["buyers"]}})  # fmt: skip
    assert r.status_code == 201, r.text
    for m in (profiled, private):  # counters' rows exist, the 'has segments' flag is cached
        assert (await purchase(client, program, m, "1.00")).status_code == 201
    engine = db.write_engine.sync_engine
    for member, bonus in ((profiled, 7), (private, 0)):
        seen: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            seen.append(statement.split(None, 1)[0].upper())  # noqa: B023 - used at once

        event.listen(engine, "before_cursor_execute", count)
        try:
            r = await purchase(client, program, member, "10.00")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert r.status_code == 201, r.text
        assert r.json()["points"] == 10 + bonus
        writes = [s for s in seen if s not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]
        if db_kind == "postgres":
            assert writes == ["SELECT", "SELECT", "WITH"], seen
