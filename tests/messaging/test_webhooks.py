"""Outbound webhooks against a local receiver that checks signatures with the
`standardwebhooks` package: endpoints, signatures, retries with the same webhook-id,
timeouts, 500s, redirects, rotation, the deliveries log, and two workers on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from habitue import clock
from habitue.api import create_app
from habitue.db import Database
from habitue.messaging import worker
from habitue.settings import Settings
from tests.conftest import create_program, enrol


class Receiver:
    """A local HTTP receiver. `mode`: ok, fail (500), slow (answers after 2 s), redirect."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[dict[str, Any]] = []
        self.in_flight: dict[str, int] = {}
        self.overlaps = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                msg_id = self.headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.in_flight[msg_id] = receiver.in_flight.get(msg_id, 0) + 1
                    if receiver.in_flight[msg_id] > 1:
                        receiver.overlaps += 1
                    receiver.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    mode = receiver.mode
                try:
                    if mode == "slow":
                        time.sleep(2)
                    if mode == "redirect" and self.path != "/moved":
                        self.send_response(307)
                        self.send_header("Location", "/moved")
                        self.end_headers()
                        return
                    if mode == "hold":
                        time.sleep(0.02)
                    self.send_response(500 if mode == "fail" else 204)
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with receiver.lock:
                        receiver.in_flight[msg_id] -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """The bodies of the calls whose signature `secret` verifies."""
        out = []
        for call in self.calls:
            try:
                out.append(Webhook(secret).verify(call["body"], call["headers"]))
            except WebhookVerificationError:
                pass
        return out




@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_timeout_seconds": 0.5, "retry_base_seconds": 60.0})


async def _endpoint(
    client: httpx.AsyncClient, program: str, url: str, events: list[str]
) -> dict[str, Any]:
    r = await client.post(f"/v1/programs/{program}/webhooks", json={"url": url, "events": events})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _log(client: httpx.AsyncClient, program: str, hook: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/programs/{program}/webhooks/{hook}/deliveries")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_endpoints_crud_and_bad_input_writes_nothing(
    client: httpx.AsyncClient, program: str
) -> None:
    hook = await _endpoint(client, program, "https://example.com/in", ["member.enrolled"])
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["member.enrolled"]
    base = f"/v1/programs/{program}/webhooks"
    listed = (await client.get(base)).json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    for body, field in (
        ({"url": "https://example.com/x", "events": ["points.stolen"]}, "events[0]"),
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
    ):
        r = await client.post(base, json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == field
    r = await client.patch(f"{base}/{hook['id']}", json={"events": ["nope.nope"]})
    assert r.status_code == 422
    assert [h["id"] for h in (await client.get(base)).json()["items"]] == [hook["id"]]
    assert (await client.get(f"{base}/{hook['id']}")).json()["events"] == ["member.enrolled"]
    r = await client.patch(f"{base}/{hook['id']}", json={"events": ["*"], "description": "CRM"})
    assert r.status_code == 200 and r.json()["events"] == ["*"]
    assert r.json()["description"] == "CRM"
    assert (await client.get(f"/v1/programs/{program}/webhook-events")).status_code == 200
    assert (await client.delete(f"{base}/{hook['id']}")).status_code == 204
    assert (await client.get(f"{base}/{hook['id']}")).status_code == 404
    other = await create_program(client)
    hook2 = await _endpoint(client, other, "https://example.com/in", ["*"])
    assert (await client.get(f"{base}/{hook2['id']}")).status_code == 404


async def test_production_refuses_link_local_and_metadata_addresses(
    settings: Settings, db: Database
) -> None:
    strong = "9f8e7d6c5b4a39281706f5e4d3c2b1a0a1b2c3d4e5f60718"
    prod = settings.model_copy(
        update={
            "env": "production",
            "admin_key": strong,
            "hmac_key": strong[::-1],
            "public_url": "https://loyalty.example.com",
        }
    )
    app = create_app(prod, db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {strong}"},
        ) as c,
    ):
        program = await create_program(c)
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/x",
            "http://metadata.google.internal/computeMetadata/v1",
        ):
            r = await c.post(f"/v1/programs/{program}/webhooks", json={"url": url, "events": ["*"]})
            assert r.status_code == 422, url
        assert (await c.get(f"/v1/programs/{program}/webhooks")).json()["items"] == []
        await _endpoint(c, program, "https://crm.example.com/hook", ["*"])


async def test_signed_deliveries_retried_with_the_same_id_then_parked_and_retried(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    hook_settings: Settings,
    receiver: Receiver,
) -> None:
    hook = await _endpoint(client, program, receiver.url, ["member.enrolled", "points.earned"])
    m = await enrol(client, program, email="hook@example.com")
    await worker.run_until_idle(db, hook_settings)
    [event] = receiver.verified(hook["secret"])
    assert event["type"] == "member.enrolled" and event["data"]["member_id"] == m["id"]
    assert set(receiver.calls[0]["headers"]) >= {"webhook-id", "webhook-timestamp"}
    assert receiver.verified("whsec_" + "A" * 32) == []  # another secret does not verify

    # A 500: retried later with the same webhook-id, and logged.
    receiver.mode = "fail"
    r = await client.post(
        f"/v1/programs/{program}/members/{m['id']}/adjustments",
        json={"points": 5, "reason": "goodwill"},
    )
    assert r.status_code == 201, r.text
    second = await enrol(client, program, email="second@example.com")
    await worker.run_until_idle(db, hook_settings)
    failed_id = receiver.calls[-1]["headers"]["webhook-id"]
    [latest, *_] = await _log(client, program, hook["id"])
    assert latest["status"] == "pending" and latest["attempts"][0]["status_code"] == 500
    receiver.mode = "ok"
    clock.advance(timedelta(seconds=61))
    await worker.run_until_idle(db, hook_settings)
    assert receiver.calls[-1]["headers"]["webhook-id"] == failed_id
    [latest, *_] = await _log(client, program, hook["id"])
    assert latest["status"] == "sent"
    assert [a["status_code"] for a in latest["attempts"]] == [500, 204]
    assert latest["member_id"] == second["id"]

    # A receiver that does not answer in time: a timeout, retried.
    receiver.mode = "slow"
    await enrol(client, program, email="slow@example.com")
    await worker.run_until_idle(db, hook_settings)
    [latest, *_] = await _log(client, program, hook["id"])
    assert latest["status"] == "pending" and latest["attempts"][0]["error"] == "timed out"
    receiver.mode = "ok"
    clock.advance(timedelta(seconds=61))
    await worker.run_until_idle(db, hook_settings)
    [latest, *_] = await _log(client, program, hook["id"])
    assert latest["status"] == "sent"

    # A redirect is not followed: failed (parked) at once; retried on demand.
    receiver.mode = "redirect"
    await enrol(client, program, email="moved@example.com")
    await worker.run_until_idle(db, hook_settings)
    assert not any(c["path"] == "/moved" for c in receiver.calls)
    r = await client.get(
        f"/v1/programs/{program}/webhooks/{hook['id']}/deliveries", params={"status": "failed"}
    )
    [parked] = r.json()["items"]
    assert parked["attempts"][0]["status_code"] == 307 and "redirect" in parked["reason"]
    receiver.mode = "ok"
    base = f"/v1/programs/{program}/webhooks/{hook['id']}/deliveries"
    assert (await client.post(f"{base}/nope/retry")).status_code == 404
    r = await client.post(f"{base}/{parked['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    await worker.run_until_idle(db, hook_settings)
    again = [d for d in await _log(client, program, hook["id"]) if d["id"] == parked["id"]]
    assert again[0]["status"] == "sent" and len(again[0]["attempts"]) == 2

    # Nothing lost, each event once delivered: every enrolment reached the receiver.
    delivered = {
        json.loads(c["body"])["data"].get("member_id")
        for c in receiver.calls
        if json.loads(c["body"])["type"] == "member.enrolled"
    }
    assert len(delivered) == 4


async def test_parked_after_the_retry_period(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    hook_settings: Settings,
    receiver: Receiver,
) -> None:
    hook = await _endpoint(client, program, receiver.url, ["member.enrolled"])
    receiver.mode = "fail"
    await enrol(client, program)
    short = hook_settings.model_copy(update={"retry_period_hours": 0.25})
    for _ in range(10):
        await worker.run_until_idle(db, short)
        clock.advance(timedelta(minutes=3))
    [d] = await _log(client, program, hook["id"])
    assert d["status"] == "failed" and d["reason"].startswith("gave up after")
    ids = {c["headers"]["webhook-id"] for c in receiver.calls}
    assert len(ids) == 1 and len(receiver.calls) == len(d["attempts"]) >= 3


async def test_rotation_signs_with_both_secrets_for_a_day(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    hook_settings: Settings,
    receiver: Receiver,
) -> None:
    hook = await _endpoint(client, program, receiver.url, ["*"])
    r = await client.post(f"/v1/programs/{program}/webhooks/{hook['id']}/rotate-secret")
    assert r.status_code == 200
    new = r.json()["secret"]
    assert new.startswith("whsec_") and new != hook["secret"]
    await enrol(client, program)
    await worker.run_until_idle(db, hook_settings)
    assert len(receiver.verified(hook["secret"])) == len(receiver.verified(new)) == 1
    clock.advance(timedelta(hours=25))
    await enrol(client, program)
    await worker.run_until_idle(db, hook_settings)
    assert len(receiver.verified(new)) == 2
    assert len(receiver.verified(hook["secret"])) == 1  # the old secret no longer signs


async def test_two_workers_on_postgresql_never_send_one_delivery_twice_at_once(
    client: httpx.AsyncClient,
    program: str,
    db_kind: str,
    hook_settings: Settings,
    receiver: Receiver,
) -> None:
    if db_kind != "postgres":
        pytest.skip("several workers share the work on PostgreSQL only")
    receiver.mode = "hold"
    hook = await _endpoint(client, program, receiver.url, ["member.enrolled", "points.adjusted"])
    members = [await enrol(client, program) for _ in range(40)]
    for m in members[:10]:
        r = await client.post(
            f"/v1/programs/{program}/members/{m['id']}/adjustments",
            json={"points": 1, "reason": "goodwill"},
        )
        assert r.status_code == 201, r.text
    settings = hook_settings.model_copy(update={"worker_batch": 8, "webhook_timeout_seconds": 10.0})
    dbs = [Database(settings.database_url, group_commit=False) for _ in range(2)]
    try:
        await asyncio.gather(*(worker.run_until_idle(d, settings) for d in dbs))
    finally:
        for d in dbs:
            await d.dispose()
    log = await _log(client, program, hook["id"])
    assert len(log) == 50 and {d["status"] for d in log} == {"sent"}
    assert receiver.overlaps == 0
    ids = [c["headers"]["webhook-id"] for c in receiver.calls]
    assert len(ids) == len(set(ids)) == 50  # none sent twice
    # In order per member: each member's enrolment before their adjustment.
    order = [json.loads(c["body"]) for c in receiver.calls]
    for m in members[:10]:
        types = [o["type"] for o in order if o["data"].get("member_id") == m["id"]]
        assert types == ["member.enrolled", "points.adjusted"], types


async def test_a_batchs_domain_events_are_delivered_signed_as_recorded(
    client: httpx.AsyncClient,
    program: str,
    db: Database,
    hook_settings: Settings,
    receiver: Receiver,
) -> None:
    """The event path's domain events (one multi-row write on PostgreSQL, their payloads
    encoded by orjson): each delivery verifies, and its data is what the event's answer says,
    text beyond ASCII included."""
    hook = await _endpoint(client, program, receiver.url, ["points.earned", "event.recorded"])
    m = await enrol(client, program, email="batchhook@example.com")
    events = [
        {"type": "purchase", "member": {"id": m["id"]}, "external_id": ext, "total": total}
        for ext, total in (("Reçu-ü-1", "20.00"), ("レシート-2", "3.50"))
    ]
    r = await client.post(f"/v1/programs/{program}/events/batch", json={"events": events})
    assert r.status_code == 200, r.text
    answers = [slot["body"] for slot in r.json()["results"]]
    assert [a["external_id"] for a in answers] == ["Reçu-ü-1", "レシート-2"]
    await worker.run_until_idle(db, hook_settings)
    delivered = receiver.verified(hook["secret"])
    assert len(delivered) == len(receiver.calls) == 4
    by_type: dict[str, list[dict[str, Any]]] = {}
    for d in delivered:
        by_type.setdefault(d["type"], []).append(d["data"])
    recorded = {d["external_id"]: d for d in by_type["event.recorded"]}
    earned = {d["event_id"]: d for d in by_type["points.earned"]}
    for a in answers:
        assert recorded[a["external_id"]] == {
            "member_id": m["id"], "event_id": a["id"], "type": "purchase",
            "external_id": a["external_id"], "total": a["total"],
        }  # fmt: skip
        assert earned[a["id"]] == {
            "member_id": m["id"], "points": a["points"], "event_id": a["id"],
            "event_type": "purchase", "pending": False,
        }  # fmt: skip
