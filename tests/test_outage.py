"""A database outage under load: fast 503s with Retry-After, /readyz false, recovery alone.

The test starts a private PostgreSQL cluster (`initdb`, `pg_ctl`) on a port of its own, keeps
purchases flowing through the API, kills the cluster (`pg_ctl stop -m immediate`) and starts
it again, all without restarting the application.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from habitue.api import create_app
from habitue.migrate import upgrade
from habitue.settings import Settings
from tests.conftest import ADMIN_KEY, create_program, enrol, purchase

pytestmark = pytest.mark.postgres

SERVICE_UNAVAILABLE = "https://habitue.dev/errors/service-unavailable"
BUDGET = 3.0
"""Seconds any one request may take while the database is down (the timeout is 2 s)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    bin: Path
    data: Path
    base: Path
    port: int
    as_owner: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - fixed arguments
            [*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100 -c shared_buffers=16MB"
        )
        self._pg_ctl("-l", str(self.base / "server.log"), "-w", "-t", "60", "-o", options, "start")

    def kill(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")


def _bindir() -> Path | None:
    """The newest PostgreSQL's binaries (Debian's layout), or those on the PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if found:
        newest = max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
        return Path(newest).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@pytest.fixture(scope="module")
def cluster(db_kind: str) -> Iterator[Cluster]:
    """A PostgreSQL cluster of the test's own, on a free port (as `postgres` when root)."""
    if db_kind != "postgres":
        pytest.skip("a PostgreSQL fault test: run with --db postgres")
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail("initdb/pg_ctl not found and CI requires the outage test")
        pytest.skip("initdb/pg_ctl not found")
    as_owner: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.fail("running as root needs a `postgres` user to own the test cluster")
        as_owner = ["runuser", "-u", owner, "--"]
    base = Path(tempfile.mkdtemp(prefix="habitue-pg-"))
    data = base / "data"
    c = Cluster(bin=bindir, data=data, base=base, port=0, as_owner=as_owner)
    try:
        if owner is not None:
            shutil.chown(base, owner)
        done = subprocess.run(  # noqa: S603 - fixed arguments
            [
                *as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for attempt in range(3):  # another process may take the free port first
            c.port = _free_port()
            try:
                c.start()
                break
            except subprocess.CalledProcessError:
                log = base / "server.log"
                if attempt == 2:
                    text = log.read_text()[-2000:] if log.exists() else ""
                    pytest.fail(f"the test cluster did not start: {text}")
        yield c
    finally:
        subprocess.run(  # noqa: S603 - fixed arguments
            [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Answer:
    external_id: str
    started: float
    elapsed: float
    status: int
    content_type: str = ""
    retry_after: str | None = None
    problem_type: str | None = None
    points: int | None = None
    error: str | None = None


def _answer(external_id: str, started: float, r: httpx.Response) -> Answer:
    a = Answer(external_id, started, time.monotonic() - started, r.status_code)
    a.content_type = r.headers.get("content-type", "")
    a.retry_after = r.headers.get("retry-after")
    if r.status_code == 201:
        a.points = r.json()["points"]
    elif a.content_type.startswith("application/problem+json"):
        a.problem_type = r.json().get("type")
    return a


async def test_database_outage_under_load_gives_fast_503s_and_recovers(cluster: Cluster) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres",
                         autocommit=True) as conn:
        conn.execute('CREATE DATABASE "habitue"')
    url = f"{cluster.url}/habitue"
    upgrade(url)
    settings = Settings(
        env="test", database_url=url, admin_key=ADMIN_KEY, scheduler=False, worker=False,
        hmac_key="test-hmac-key", db_timeout_seconds=2,
    )
    assert settings.db_timeout_seconds == 2
    app = create_app(settings)  # its Database comes from the settings, as in `habitue serve`
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        ) as client:
            program = await create_program(client)
            member = (await enrol(client, program))["id"]
            r = await client.get("/readyz")
            assert r.status_code == 200 and r.json() == {"ready": True}

            answers: list[Answer] = []
            stop = asyncio.Event()

            async def till(n: int) -> None:
                i = 0
                while not stop.is_set():
                    external_id = f"till{n}-{i}"
                    i += 1
                    started = time.monotonic()
                    try:
                        r = await purchase(client, program, member, "10.00",
                                           external_id=external_id)
                    except Exception as exc:  # noqa: BLE001 - recorded, asserted below
                        answers.append(Answer(external_id, started, time.monotonic() - started,
                                              0, error=repr(exc)))
                        await asyncio.sleep(0.05)
                        continue
                    answers.append(_answer(external_id, started, r))
                    if r.status_code != 201:
                        await asyncio.sleep(0.05)  # a till backs off a little

            tills = [asyncio.create_task(till(n)) for n in range(8)]
            try:
                await asyncio.sleep(1.0)
                assert any(a.status == 201 for a in answers), answers[:5]

                # Down: the cluster is killed under load.
                await asyncio.to_thread(cluster.kill)
                down = time.monotonic()
                await asyncio.sleep(1.0)
                started = time.monotonic()
                r = await client.get("/readyz")
                readyz_down = (time.monotonic() - started, r)
                await asyncio.sleep(1.5)

                # Back up: no restart of the application.
                restart = time.monotonic()
                await asyncio.to_thread(cluster.start)
                up = time.monotonic()
                ready_after = None
                while time.monotonic() - up < 10:
                    r = await client.get("/readyz")
                    if r.status_code == 200:
                        ready_after = time.monotonic() - up
                        break
                    await asyncio.sleep(0.1)
                recovered = None
                while time.monotonic() - up < 10:
                    done = [a.started + a.elapsed for a in answers
                            if a.status == 201 and a.started > up]
                    if done:
                        recovered = min(done)
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)
            finally:
                stop.set()
                await asyncio.gather(*tills, return_exceptions=True)

            # /readyz said no, fast, while the database was down.
            elapsed, r = readyz_down
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == SERVICE_UNAVAILABLE
            assert r.headers.get("retry-after") in ("1", "2")
            assert elapsed <= BUDGET, elapsed

            # Every request got an answer, 201 or 503, none slow, never a 500.
            assert not [a for a in answers if a.error], [a for a in answers if a.error][:3]
            statuses = {a.status for a in answers}
            assert statuses <= {201, 503}, statuses
            slow = [a for a in answers if a.elapsed > BUDGET]
            assert not slow, [(a.status, round(a.elapsed, 2)) for a in slow[:5]]
            during = [a for a in answers if down <= a.started and a.started + a.elapsed <= restart]
            assert during and all(a.status == 503 for a in during), {a.status for a in during}
            for a in (a for a in answers if a.status == 503):
                assert a.content_type.startswith("application/problem+json"), a
                assert a.problem_type == SERVICE_UNAVAILABLE, a
                assert a.retry_after in ("1", "2"), a

            # Recovered alone, within a few seconds of the database's return.
            assert ready_after is not None and ready_after <= 5, ready_after
            assert recovered is not None and recovered - up <= 5, recovered
            late = [a for a in answers if a.started > recovered + 0.5]
            assert late and all(a.status == 201 for a in late), {a.status for a in late}
            print(  # noqa: T201 - the run's figures, with pytest -s
                f"outage: {len(answers)} requests, {len(during)} during the outage, "
                f"{sum(a.status == 503 for a in answers)} × 503, slowest "
                f"{max(a.elapsed for a in answers):.2f} s; ready {ready_after:.2f} s and "
                f"purchases {recovered - up:.2f} s after the database's return"
            )

            # The ledger: each purchase credited once, whatever its first answer was. The
            # tills retry what did not get a 201; a retry of one that had committed gets the
            # first answer.
            per_purchase = {a.points for a in answers if a.status == 201}
            assert len(per_purchase) == 1, per_purchase
            points = per_purchase.pop()
            assert points > 0
            first = {a.external_id: a for a in answers}
            retries = [e for e, a in first.items() if a.status != 201]
            for n in range(0, len(retries), 16):
                again = await asyncio.gather(
                    *(purchase(client, program, member, "10.00", external_id=e)
                      for e in retries[n : n + 16])
                )
                for r in again:
                    assert r.status_code == 201, r.text
                    assert r.json()["points"] == points
            r = await client.get(f"/v1/programs/{program}/members/{member}/balance")
            assert r.status_code == 200, r.text
            assert r.json()["available"] == points * len(first)
            assert r.json()["lifetime_earned"] == points * len(first)
