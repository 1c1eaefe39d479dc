"""`habitue consume`: events from NATS JetStream, acked after commit, poison parked, credited once.

Against the NATS server of HABITUE_NATS_URL (default nats://127.0.0.1:4222), one stream per
test. Skipped when no server answers, except under CI=true, where that fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from habitue.db import Database
from habitue.events import consume as intake
from habitue.events.models import Event
from habitue.programs import service as programs_service
from habitue.rooms import build_pipeline
from tests.conftest import create_program, enrol

NATS_URL = os.environ.get("HABITUE_NATS_URL", "nats://127.0.0.1:4222")
HABITUE = str(Path(sys.executable).parent / "habitue")


class Stream:
    def __init__(self, js: Any, name: str, subject: str) -> None:
        self.js, self.name, self.subject = js, name, subject

    async def publish(self, *bodies: Any) -> None:
        for body in bodies:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            await self.js.publish(self.subject, data, stream=self.name)


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    import nats

    try:
        nc = await nats.connect(
            NATS_URL, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
        )
    except Exception as exc:  # no server
        if os.environ.get("CI") == "true":
            pytest.fail(f"no NATS server at {NATS_URL}: {exc}")
        pytest.skip(f"no NATS server at {NATS_URL}")
    token = secrets.token_hex(4)
    js = nc.jetstream()
    name, subject = f"TEST_{token}", f"test.{token}.events"
    await js.add_stream(name=name, subjects=[subject])
    try:
        yield Stream(js, name, subject)
    finally:
        await js.delete_stream(name)
        await nc.close()


def _buy(member: dict[str, Any], total: str, external_id: str) -> dict[str, Any]:
    return {"type": "purchase", "member": {"id": member["id"]}, "external_id": external_id,
            "total": total}


def _cli(db_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HABITUE_DATABASE_URL": db_url, "HABITUE_NATS_URL": NATS_URL}
    return subprocess.Popen(  # noqa: S603  (the habitue command of this venv)
        [HABITUE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def _run(db_url: str, *args: str) -> str:
    proc = _cli(db_url, *args)
    out, errs = await asyncio.to_thread(proc.communicate, timeout=240)
    assert proc.returncode == 0, out + errs
    return out


async def _available(client: httpx.AsyncClient, program: str, member: dict[str, Any]) -> int:
    r = await client.get(f"/v1/programs/{program}/members/{member['id']}/balance")
    assert r.status_code == 200, r.text
    return int(r.json()["available"])


async def _events(db: Database) -> int:
    async with db.read() as s:
        return int((await s.execute(select(func.count()).select_from(Event))).scalar_one())


async def test_consume_records_once_parks_poison_and_resumes(
    client: httpx.AsyncClient, db_url: str, stream: Stream
) -> None:
    code = await create_program(client)
    a, b = await enrol(client, code), await enrol(client, code)
    good = [_buy(a if i % 2 else b, f"{i + 1}.00", f"n-{i}") for i in range(10)]
    await stream.publish(
        *good[:5],
        b"{not json",
        good[3],  # a duplicate: credited once
        {"type": "purchase", "member": {"id": "mem_nobody"}, "external_id": "u-1", "total": "1"},
        {"type": "purchase", "external_id": "v-1"},  # invalid: no member, no total
        *good[5:],
    )
    args = ("consume", "--program", code, "--stream", stream.name, "--subject", stream.subject,
            "--until-idle")
    out = await _run(db_url, *args)
    assert "recorded 11, parked 3" in out, out
    want_a = sum(i + 1 for i in range(10) if i % 2)
    want_b = sum(i + 1 for i in range(10) if not i % 2)
    assert await _available(client, code, a) == want_a
    assert await _available(client, code, b) == want_b
    listed = await _run(db_url, "consume", "--program", code, "--parked")
    assert "{not json" in listed and "not JSON" in listed
    assert "mem_nobody" in listed and "404" in listed
    assert "v-1" in listed and "422" in listed
    # A restarted consumer resumes after what it acknowledged: nothing is credited twice.
    await stream.publish(_buy(a, "100.00", "n-later"), good[0])
    out = await _run(db_url, *args)
    assert "recorded 2, parked 0" in out, out
    assert await _available(client, code, a) == want_a + 100
    assert await _available(client, code, b) == want_b
    again = await _run(db_url, "consume", "--program", code, "--parked")
    assert again.count("mem_nobody") == 1


async def test_a_message_redelivered_after_its_commit_is_credited_once(
    client: httpx.AsyncClient, db: Database, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nats.aio.msg import Msg

    code = await create_program(client)
    m = await enrol(client, code)
    await stream.publish(*[_buy(m, "2.00", f"r-{i}") for i in range(6)], b"[oops")
    async with db.read() as s:
        info = await programs_service.get_info(s, code)
    kw: dict[str, Any] = {
        "url": NATS_URL, "stream": stream.name, "subject": stream.subject, "ack_wait": 1.0,
    }
    # The first run commits but its acks are lost (as when the process dies right then).
    lost: list[int] = []

    async def no_ack(self: Msg) -> None:
        lost.append(1)

    monkeypatch.setattr(Msg, "ack", no_ack)
    pipeline = build_pipeline()
    first = await intake.consume(db, pipeline, info, max_messages=7, **kw)
    assert (first.recorded, first.parked) == (6, 1)
    assert len(lost) == 7
    assert await _available(client, code, m) == 12
    monkeypatch.undo()
    second = await intake.consume(db, pipeline, info, until_idle=True, idle_seconds=0.5, **kw)
    assert second.redelivered == 7
    assert (second.recorded, second.parked) == (6, 1)
    assert await _available(client, code, m) == 12
    async with db.read() as s:
        assert len(await intake.parked(s, info)) == 1
    third = await intake.consume(db, pipeline, info, until_idle=True, idle_seconds=0.5, **kw)
    assert third.seen == 0


async def test_kill_9_mid_stream_loses_nothing_and_credits_nothing_twice(
    client: httpx.AsyncClient, db: Database, db_url: str, stream: Stream
) -> None:
    code = await create_program(client)
    members = [await enrol(client, code) for _ in range(5)]
    n = 1500
    await stream.publish(*[_buy(members[i % 5], "1.00", f"k-{i}") for i in range(n)])
    before = await _events(db)
    args = ("consume", "--program", code, "--stream", stream.name, "--subject", stream.subject,
            "--batch", "100", "--ack-wait", "2")
    proc = _cli(db_url, *args)
    try:
        for _ in range(600):
            done = await _events(db) - before
            if done >= 200:
                break
            assert proc.poll() is None, proc.communicate()
            await asyncio.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert 0 < await _events(db) - before < n
    out = await _run(db_url, *args, "--until-idle")
    got = re.search(r"recorded (\d+), parked (\d+)", out)
    assert got is not None and got.group(2) == "0", out
    assert await _events(db) - before == n
    for m in members:
        assert await _available(client, code, m) == n // 5
