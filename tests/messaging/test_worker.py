"""The worker as a process: `habitue worker` killed in the middle of a batch and restarted
delivers every message."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from habitue.privacy import pii
from habitue.settings import Settings
from tests.conftest import enrol
from tests.messaging.conftest import Mailbox

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _start_worker(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "HABITUE_ENV": "test",
        "HABITUE_DATABASE_URL": settings.database_url,
        "HABITUE_HMAC_KEY": settings.hmac_key,
        # The contacts were sealed with this process's keys (habitue.privacy.pii).
        "HABITUE_PII_KEYS": pii.keyring_spec(),
        "HABITUE_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "HABITUE_WORKER_BATCH": "10",
        "HABITUE_WORKER_LEASE_SECONDS": "2",
        "HABITUE_WORKER_IDLE_SECONDS": "0.1",
    }
    code = "import sys; from habitue.cli import app; sys.argv = ['habitue', 'worker']; app()"
    return subprocess.Popen(  # noqa: S603 (our own interpreter)
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def _statuses(client: httpx.AsyncClient, program: str, ids: list[str]) -> list[str]:
    out = []
    for member_id in ids:
        r = await client.get(f"/v1/programs/{program}/members/{member_id}/messages")
        out.extend(m["status"] for m in r.json()["items"])
    return out


async def test_a_worker_killed_mid_batch_and_restarted_loses_nothing(
    client: httpx.AsyncClient, program: str, settings: Settings, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    box.delay = 0.05  # each message takes a while: the kill lands in the middle of a batch
    # Addresses of this test only: the worker also delivers what other tests left in the outbox.
    wanted = {f"k{i}-{program}@example.com" for i in range(60)}
    members = [
        await enrol(client, program, email=email, consents={"email": True})
        for email in sorted(wanted)
    ]
    ids = [m["id"] for m in members]
    proc = _start_worker(settings, port)
    try:
        box.wait(15, timeout=60, to=wanted)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    received = len({m["To"] for m in box.messages} & wanted)
    assert 0 < received < 60
    assert "pending" in await _statuses(client, program, ids)

    proc = _start_worker(settings, port)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if set(await _statuses(client, program, ids)) == {"sent"}:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.stderr.read() if proc.stderr else b""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await _statuses(client, program, ids) == ["sent"] * 60
    addresses = {m["To"] for m in box.messages}
    assert wanted <= addresses  # at least once, every one


async def test_the_worker_outlives_a_database_it_cannot_reach(
    settings: Settings, tmp_path: Path
) -> None:
    from habitue.db import Database
    from habitue.messaging import worker

    missing = f"sqlite:///{tmp_path}/no/such/dir/h.db"
    dead = settings.model_copy(update={"database_url": missing, "worker_idle_seconds": 0.05})
    db = Database(missing)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(db, dead, stop))
    await asyncio.sleep(0.5)
    assert not task.done()  # still trying, ever less often
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    await db.dispose()
