"""Webhooks (issue 16): endpoints, the outbox, the delivery worker, the SSRF guard and the SDK's
verify_signature — against real PostgreSQL and Redis, with a real HTTP receiver on loopback
(aiohttp test server) and a DNS resolver the test controls (injected at the aiohttp resolver
boundary, so the guard's own logic runs unchanged)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import time
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from wavis.client import WebhookSignatureError, verify_signature
from wavis.client.webhooks import signature
from wavis.service import repo_webhooks as rw
from wavis.service.sealing import Sealer
from wavis.service.state import DB, SETTINGS, WEBHOOK_RESOLVER
from wavis.service.webhook_worker import DeliveryWorker
from wavis.service.webhooks import OutboxError, emit_event

from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

PUBLIC_IP = "93.184.216.34"

# every non-public address class the guard must refuse
BAD_ADDRESSES = {
    "loopback": "127.0.0.1", "loopback6": "::1", "private10": "10.1.2.3", "private172": "172.16.5.4",
    "private192": "192.168.0.10", "link_local_metadata": "169.254.169.254", "link_local6": "fe80::1",
    "ula6": "fd00::1", "cgnat": "100.64.0.1", "multicast": "224.0.0.251", "multicast6": "ff02::1",
    "reserved": "240.0.0.1", "unspecified": "0.0.0.0", "broadcast": "255.255.255.255",
    "mapped_loopback": "::ffff:127.0.0.1", "mapped_private": "::ffff:10.0.0.1", "mapped_public": "::ffff:8.8.8.8",
    "compat": "::127.0.0.1", "nat64": "64:ff9b::a00:1", "sixtofour": "2002:a00:1::1", "teredo": "2001:0:a00:1::1",
    "documentation": "192.0.2.7", "benchmarking": "198.18.0.1",
}


class ControlledDNS(AbstractResolver):
    """A resolver whose answers the test sets (and changes) per name; counts lookups."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups.append(host)
        if host not in self.answers:
            raise OSError(f"NXDOMAIN {host}")
        out = []
        for ip in self.answers[host]:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            if family in (socket.AF_UNSPEC, fam):
                out.append({"hostname": host, "host": ip, "port": port, "family": fam, "proto": 0, "flags": 0})
        return out

    async def close(self) -> None:
        pass


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every delivery and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list = []  # statuses (int) or callables(request) -> response, used in order; then 200
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        self.got.set()
        action = self.script.pop(0) if self.script else 200
        if callable(action):
            return await action(request)
        return web.Response(status=action, text="nope" if action >= 300 else "ok")

    def ids(self) -> list[str]:
        return [r["headers"]["X-WAVIS-Event-Id"] for r in self.requests]


@pytest.fixture
async def receiver(aiohttp_server):
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    rec.url = f"http://127.0.0.1:{server.port}/hook"
    rec.port = server.port
    return rec


@pytest.fixture
def dns():
    d = ControlledDNS()
    d.answers["hooks.example.com"] = [PUBLIC_IP]
    return d


def wh_settings(service_settings, **kw):
    base = dict(webhooks_allow_loopback=True, webhook_worker=False, webhook_poll_s=0.05, webhook_lease_s=5.0,
                webhook_retry_schedule_s=(0.05, 0.05, 0.05), webhook_timeout_s=3.0)
    base.update(kw)
    return replace(service_settings, **base)


async def webhook_client(make_client, settings, dns):
    client = await make_client(settings, setup=lambda app: app.__setitem__(WEBHOOK_RESOLVER, dns))
    add_account_helper(client)
    await clear_webhooks(client)
    return client


async def clear_webhooks(client) -> None:
    """The test database is shared by the session's tests: no endpoint (nor its events) of one
    test is seen by another's workers."""
    async with client.app[DB].acquire() as conn:
        await conn.execute("DELETE FROM webhooks")


@pytest.fixture
async def wh(make_client, service_settings, dns):
    """A client of the service with loopback targets allowed, no background worker (tests drive
    DeliveryWorker.run_once themselves) and the controlled resolver."""
    client = await webhook_client(make_client, wh_settings(service_settings), dns)
    yield client
    await clear_webhooks(client)


@pytest.fixture
async def strict(make_client, service_settings, dns):
    """As ``wh`` but with the production default: no loopback targets."""
    client = await webhook_client(make_client, wh_settings(service_settings, webhooks_allow_loopback=False), dns)
    yield client
    await clear_webhooks(client)


def worker_for(client, dns, **kw) -> DeliveryWorker:
    return DeliveryWorker(client.app[DB], replace(client.app[SETTINGS], **kw), resolver=dns)


async def create(client, key, url, **body):
    resp = await client.post("/api/v1/webhooks", json={"url": url, **body}, headers=bearer(key))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def events_of(client, key, **query) -> list[dict]:
    resp = await client.get("/api/v1/webhooks/events", params={"limit": "100", **query}, headers=bearer(key))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def send_test(client, key) -> list[str]:
    resp = await client.post("/api/v1/webhooks/test", headers=bearer(key))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["event_ids"]


async def drain(worker: DeliveryWorker, until, timeout: float = 10.0) -> None:
    """run_once repeatedly until ``until()`` (awaitable) is true."""
    deadline = time.monotonic() + timeout
    while True:
        await worker.run_once()
        if await until():
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


# --- endpoints ------------------------------------------------------------------------------

async def test_create_list_get_patch_delete_and_secret_sealed(wh, receiver):
    dev = await wh.account()
    made = await create(wh, dev, receiver.url, events=["key_created", "compute_complete"])
    assert made["webhook_id"].startswith("wh_") and made["status"] == "active"
    assert made["events"] == ["compute_complete", "key_created"]
    assert made["signature_info"] == {"algorithm": "HMAC-SHA256", "header": "X-WAVIS-Signature",
                                      "format": "sha256=<hex>", "signed_payload": "<X-WAVIS-Timestamp>.<raw body>"}
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(secret) >= 32
    wid = made["webhook_id"]

    got = await (await wh.get(f"/api/v1/webhooks/{wid}", headers=bearer(dev))).json()
    assert "secret" not in got and got["url"] == receiver.url
    listing = await (await wh.get("/api/v1/webhooks", headers=bearer(dev))).json()
    assert [w["webhook_id"] for w in listing["data"]] == [wid] and "secret" not in listing["data"][0]

    # sealed at rest: not in the row, opens only under the master key with this row's AAD
    async with wh.app[DB].acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM webhooks WHERE id = $1", wid)
    assert secret.encode() not in b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode()
                                          for v in row.values())
    sealer = Sealer(wh.app[SETTINGS].master_key)
    assert sealer.open(row["secret_sealed"], rw.secret_aad(wid, row["account_id"])) == secret.encode()

    # a caller-chosen secret is never echoed
    own = await create(wh, dev, receiver.url, secret="s" * 40)
    assert own["secret"] is None

    # PATCH: only fields present change; events replaces the list
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"events": ["key_deleted"]}, headers=bearer(dev))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["events"] == ["key_deleted"] and body["url"] == receiver.url
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"url": "https://hooks.example.com/x"}, headers=bearer(dev))
    assert (await resp.json())["url"] == "https://hooks.example.com/x"
    assert (await resp.json())["events"] == ["key_deleted"]
    # a new url is re-validated
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"url": "https://10.0.0.1/"}, headers=bearer(dev))
    await error_of(resp, 400, "INVALID_URL")
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"url": None}, headers=bearer(dev))
    await error_of(resp, 400, "INVALID_PARAMS")

    # another account sees nothing (404, never 403)
    other = await wh.account()
    await error_of(await wh.get(f"/api/v1/webhooks/{wid}", headers=bearer(other)), 404, "NOT_FOUND")
    await error_of(await wh.delete(f"/api/v1/webhooks/{wid}", headers=bearer(other)), 404, "NOT_FOUND")
    # only wh_… ids
    await error_of(await wh.get("/api/v1/webhooks/key_0123", headers=bearer(dev)), 404, "NOT_FOUND")

    resp = await wh.delete(f"/api/v1/webhooks/{wid}", headers=bearer(dev))
    assert resp.status == 200 and await resp.json() == {"deleted": True}
    await error_of(await wh.get(f"/api/v1/webhooks/{wid}", headers=bearer(dev)), 404, "NOT_FOUND")


async def test_validation_limits_and_roles(wh, receiver):
    dev = await wh.account()
    for bad in ({"url": receiver.url, "events": ["nope"]}, {"url": receiver.url, "secret": "short"},
                {"url": receiver.url, "extra": 1}, {"events": []}, {"url": "https://" + "a" * 2100 + ".com/"}):
        await error_of(await wh.post("/api/v1/webhooks", json=bad, headers=bearer(dev)), 422, "SCHEMA_MISMATCH")
    # "test" is sent to every endpoint; it is not subscribable
    resp = await wh.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["test"]}, headers=bearer(dev))
    await error_of(resp, 422, "SCHEMA_MISMATCH")
    for _ in range(10):
        await create(wh, dev, receiver.url)
    resp = await wh.post("/api/v1/webhooks", json={"url": receiver.url}, headers=bearer(dev))
    err = await error_of(resp, 409, "TOO_MANY_WEBHOOKS")
    assert err["details"]["limit"] == 10
    # viewer reads, cannot write; trial keys have no webhooks
    viewer = await wh.key_for(dev, role="viewer")
    assert (await wh.get("/api/v1/webhooks", headers=bearer(viewer))).status == 200
    await error_of(await wh.post("/api/v1/webhooks", json={"url": receiver.url}, headers=bearer(viewer)),
                   403, "FORBIDDEN")
    trial = await wh.account(role="trial", environment="trial")
    await error_of(await wh.post("/api/v1/webhooks", json={"url": receiver.url}, headers=bearer(trial)),
                   403, "FORBIDDEN")
    # static paths are not taken for ids
    assert (await wh.get("/api/v1/webhooks/events", headers=bearer(dev))).status == 200
    await error_of(await wh.get("/api/v1/webhooks/events", params={"status": "x"}, headers=bearer(dev)),
                   400, "INVALID_PARAMS")
    await error_of(await wh.get("/api/v1/webhooks/events", params={"cursor": "AAAA"}, headers=bearer(dev)),
                   400, "INVALID_CURSOR")


# --- the SDK ----------------------------------------------------------------------------------

def test_verify_signature_rules():
    secret, body, ts = "whsec_" + "k" * 40, b'{"id":"evt_1"}', int(time.time())
    good = {"X-WAVIS-Timestamp": str(ts), "X-WAVIS-Signature": signature(secret, ts, body)}
    assert verify_signature(secret, good, body)
    # header names are case-insensitive, even in a plain dict
    assert verify_signature(secret, {k.lower(): v for k, v in good.items()}, body)
    expected = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert good["X-WAVIS-Signature"] == expected
    # either of two signatures (rotation overlap)
    two = dict(good, **{"X-WAVIS-Signature": f"{signature('other' * 8, ts, body)} {expected}"})
    assert verify_signature(secret, two, body)
    assert verify_signature("other" * 8, two, body)
    bad_cases = [
        (secret, good, body + b" "),                                           # tampered body
        ("whsec_" + "x" * 40, good, body),                                     # wrong secret
        (secret, dict(good, **{"X-WAVIS-Timestamp": str(ts - 301)}), body),    # stale (signature then also off)
        (secret, {"X-WAVIS-Timestamp": str(ts)}, body),                        # missing signature
        (secret, dict(good, **{"X-WAVIS-Timestamp": "12e3"}), body),           # not unix seconds
        (secret, dict(good, **{"X-WAVIS-Signature": expected.upper()}), body),
    ]
    for sec, headers, b in bad_cases:
        with pytest.raises(WebhookSignatureError):
            verify_signature(sec, headers, b)
    # a correctly signed but old delivery is stale (replay)
    old = {"X-WAVIS-Timestamp": str(ts - 400), "X-WAVIS-Signature": signature(secret, ts - 400, body)}
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_signature(secret, old, body)
    assert verify_signature(secret, old, body, tolerance=500)


# --- delivery -----------------------------------------------------------------------------------

async def test_background_worker_delivers_signed_event(make_client, service_settings, dns, receiver, caplog):
    """The worker inside the server process: a test event arrives signed; the signature verifies
    with the SDK helper and with a plain HMAC recomputation; the secret is never logged."""
    caplog.set_level("DEBUG")
    client = await webhook_client(make_client, wh_settings(service_settings, webhook_worker=True), dns)
    dev = await client.account()
    made = await create(client, dev, receiver.url)
    [event_id] = await send_test(client, dev)
    await asyncio.wait_for(receiver.got.wait(), 10)
    [req] = receiver.requests
    h, body = req["headers"], req["body"]
    assert h["X-WAVIS-Event-Id"] == event_id and h["X-WAVIS-Event-Type"] == "test"
    assert h["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["id"] == event_id and doc["type"] == "test" and doc["account_id"].startswith("acct_")
    assert doc["created_at"].endswith("Z") and doc["data"]["message"]
    assert verify_signature(made["secret"], h, body)
    ts = h["X-WAVIS-Timestamp"]
    assert abs(int(ts) - time.time()) < 30
    mac = hmac.new(made["secret"].encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert h["X-WAVIS-Signature"] == f"sha256={mac}"

    async def delivered():
        return (await events_of(client, dev))[0]["status"] == "delivered"
    for _ in range(100):
        if await delivered():
            break
        await asyncio.sleep(0.05)
    [ev] = await events_of(client, dev)
    assert ev["status"] == "delivered" and ev["attempts"] == 1 and ev["last_status_code"] == 200
    assert ev["next_attempt_at"] is None and ev["delivered_at"]
    assert any(event_id in r.getMessage() for r in caplog.records)  # the worker logged the delivery …
    assert not any(made["secret"] in r.getMessage() for r in caplog.records)  # … never the secret


async def test_500_then_200_retries_with_the_same_id_and_history(wh, dns, receiver):
    dev = await wh.account()
    await create(wh, dev, receiver.url)
    receiver.script = [500, 200]
    [event_id] = await send_test(wh, dev)
    worker = worker_for(wh, dns)

    async def done():
        return (await events_of(wh, dev))[0]["status"] == "delivered"
    await drain(worker, done)
    assert receiver.ids() == [event_id, event_id]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]  # byte-identical retries
    [ev] = await events_of(wh, dev)
    assert ev["attempts"] == 2 and ev["last_status_code"] == 200 and ev["last_error"] is None
    detail = await (await wh.get(f"/api/v1/webhooks/events/{event_id}", headers=bearer(dev))).json()
    assert [(a["attempt"], a["status_code"]) for a in detail["delivery_attempts"]] == [(1, 500), (2, 200)]
    assert detail["delivery_attempts"][0]["error"].startswith("HTTP 500")
    assert detail["data"]["message"]


async def test_retries_end_in_failed_and_redeliver_resends(wh, dns, receiver):
    dev = await wh.account()
    await create(wh, dev, receiver.url)
    receiver.script = [503] * 4  # the first attempt and all three retries of the shortened schedule
    [event_id] = await send_test(wh, dev)
    worker = worker_for(wh, dns)

    async def failed():
        return (await events_of(wh, dev))[0]["status"] == "failed"
    await drain(worker, failed)
    [ev] = await events_of(wh, dev)
    assert ev["attempts"] == 4 and ev["last_status_code"] == 503 and ev["next_attempt_at"] is None
    assert len(receiver.requests) == 4

    resp = await wh.post(f"/api/v1/webhooks/events/{event_id}/redeliver", headers=bearer(dev))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "pending"

    async def delivered():
        return (await events_of(wh, dev))[0]["status"] == "delivered"
    await drain(worker, delivered)
    assert receiver.ids() == [event_id] * 5
    other = await wh.account()
    await error_of(await wh.post(f"/api/v1/webhooks/events/{event_id}/redeliver", headers=bearer(other)),
                   404, "NOT_FOUND")
    await error_of(await wh.post("/api/v1/webhooks/events/nope/redeliver", headers=bearer(dev)), 404, "NOT_FOUND")


async def test_rotation_sends_both_signatures_for_24h(wh, dns, receiver):
    dev = await wh.account()
    old_secret = "o" * 40
    made = await create(wh, dev, receiver.url, secret=old_secret)
    wid = made["webhook_id"]
    resp = await wh.patch(f"/api/v1/webhooks/{wid}/regenerate-secret", headers=bearer(dev))
    assert resp.status == 200, await resp.text()
    rotated = await resp.json()
    new_secret = rotated["secret"]
    assert new_secret != old_secret
    got = await (await wh.get(f"/api/v1/webhooks/{wid}", headers=bearer(dev))).json()
    assert got["secret_rotation_ends_at"] == rotated["old_secret_expires_at"]
    worker = worker_for(wh, dns)
    await send_test(wh, dev)
    await drain(worker, lambda: _true(len(receiver.requests) == 1))
    h, body = receiver.requests[0]["headers"], receiver.requests[0]["body"]
    sigs = h["X-WAVIS-Signature"].split(" ")
    assert len(sigs) == 2
    ts = h["X-WAVIS-Timestamp"]
    assert sigs == [signature(new_secret, ts, body), signature(old_secret, ts, body)]
    assert verify_signature(new_secret, h, body) and verify_signature(old_secret, h, body)

    # once the overlap is over, only the new secret signs
    async with wh.app[DB].acquire() as conn:
        await conn.execute("UPDATE webhooks SET old_secret_expires_at = now() - interval '1 s' WHERE id = $1", wid)
    await send_test(wh, dev)
    await drain(worker, lambda: _true(len(receiver.requests) == 2))
    h, body = receiver.requests[1]["headers"], receiver.requests[1]["body"]
    assert h["X-WAVIS-Signature"] == signature(new_secret, h["X-WAVIS-Timestamp"], body)
    with pytest.raises(WebhookSignatureError):
        verify_signature(old_secret, h, body)


async def _true(value: bool) -> bool:
    return value


async def test_redirects_not_followed_and_response_body_capped(wh, dns, receiver):
    dev = await wh.account()
    await create(wh, dev, receiver.url)

    async def redirect(request):
        raise web.HTTPFound(f"http://127.0.0.1:{receiver.port}/elsewhere")

    async def endless(request):
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        chunk = b"x" * 65536
        for _ in range(100000):  # ~6 GB if anyone read it all
            await resp.write(chunk)
        return resp

    receiver.script = [redirect, endless]
    [event_id] = await send_test(wh, dev)
    worker = worker_for(wh, dns)
    await worker.run_once()
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "pending" and ev["last_status_code"] == 302 and ev["last_error"].startswith("HTTP 302")
    assert [r["path"] for r in receiver.requests] == ["/hook"]  # the Location was not visited
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await worker.run_once()
    assert time.monotonic() - t0 < 3  # read up to the cap, not to the end (and not until the timeout)
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "delivered" and ev["attempts"] == 2


async def test_timeout_is_a_failed_attempt(wh, dns, receiver):
    dev = await wh.account()
    await create(wh, dev, receiver.url)

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    receiver.script = [slow]
    await send_test(wh, dev)
    worker = worker_for(wh, dns, webhook_timeout_s=0.5)
    t0 = time.monotonic()
    await worker.run_once()
    assert time.monotonic() - t0 < 3
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "pending" and ev["last_status_code"] is None
    assert "within 0.5 s" in ev["last_error"]


async def test_concurrent_workers_never_make_the_same_attempt(wh, dns, receiver):
    dev = await wh.account()
    await create(wh, dev, receiver.url)
    async with wh.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", dev[:16])
        async with conn.transaction():
            for i in range(40):
                await emit_event(conn, acct, "usage_alert", {"pct": i})

    async def slowish(request):
        await asyncio.sleep(0.02)
        return web.Response(text="ok")

    receiver.script = [slowish] * 40
    workers = [worker_for(wh, dns, webhook_concurrency=4) for _ in range(4)]
    assert "wavis_webhook_events_pending 40.0" in await (await wh.get("/metrics")).text()

    async def loop(w):
        while await w.run_once():
            pass

    await asyncio.gather(*(loop(w) for w in workers))
    ids = receiver.ids()
    assert len(ids) == 40 and len(set(ids)) == 40
    assert sum(w.delivered for w in workers) == 40 and sum(1 for w in workers if w.delivered) > 1
    evs = await events_of(wh, dev)
    assert {e["status"] for e in evs} == {"delivered"} and {e["attempts"] for e in evs} == {1}
    assert "wavis_webhook_events_pending 0.0" in await (await wh.get("/metrics")).text()


async def test_dead_worker_lease_expires_and_the_event_is_retried(wh, dns, receiver):
    """A worker that claimed an attempt and died (never recorded anything) loses nothing: after
    its lease another worker delivers the same event id."""
    dev = await wh.account()
    await create(wh, dev, receiver.url)
    [event_id] = await send_test(wh, dev)
    from datetime import timedelta
    async with wh.app[DB].acquire() as conn:
        claimed = await rw.claim_due(conn, 10, timedelta(seconds=0.5))  # ... and then the worker "dies"
    assert [r["id"] for r in claimed] == [event_id]
    worker = worker_for(wh, dns)
    assert await worker.run_once() == 0  # leased: nobody else takes it meanwhile
    await asyncio.sleep(0.6)
    assert await worker.run_once() == 1
    assert receiver.ids() == [event_id]
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "delivered" and ev["attempts"] == 2
    # the dead worker's late result cannot overwrite the newer attempt
    async with wh.app[DB].acquire() as conn:
        await rw.record_attempt(conn, event_id=event_id, webhook_id=claimed[0]["webhook_id"], attempt=1,
                                started_at=claimed[0]["created_at"], duration_ms=1.0, status_code=500,
                                error="HTTP 500", success=False, retry_in=timedelta(seconds=1),
                                disable_after=timedelta(days=3))
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "delivered" and ev["last_status_code"] == 200


async def test_endpoint_failing_too_long_is_disabled_and_reported(wh, dns, receiver):
    dev = await wh.account()
    made = await create(wh, dev, receiver.url)
    wid = made["webhook_id"]
    receiver.script = [500] * 1000
    worker = worker_for(wh, dns, webhook_disable_after_s=0.3, webhook_retry_schedule_s=(0.05,) * 50)
    await send_test(wh, dev)

    async def disabled():
        got = await (await wh.get(f"/api/v1/webhooks/{wid}", headers=bearer(dev))).json()
        return got["status"] == "disabled"
    await drain(worker, disabled)
    got = await (await wh.get(f"/api/v1/webhooks/{wid}", headers=bearer(dev))).json()
    assert got["disabled_at"] and "failed" in got["disabled_reason"] and got["failing_since"]
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "failed"
    # no new events for a disabled endpoint; redelivery refused until it is enabled again
    assert await send_test(wh, dev) == []
    await error_of(await wh.post(f"/api/v1/webhooks/events/{ev['event_id']}/redeliver", headers=bearer(dev)),
                   409, "WEBHOOK_DISABLED")
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"enabled": True}, headers=bearer(dev))
    body = await resp.json()
    assert body["status"] == "active" and body["failing_since"] is None and body["disabled_reason"] is None
    receiver.script = []
    assert (await wh.post(f"/api/v1/webhooks/events/{ev['event_id']}/redeliver", headers=bearer(dev))).status == 200
    await drain(worker, lambda: _status(wh, dev, "delivered"))


async def test_paused_endpoint_keeps_its_events_until_enabled(wh, dns, receiver):
    dev = await wh.account()
    made = await create(wh, dev, receiver.url)
    wid = made["webhook_id"]
    [event_id] = await send_test(wh, dev)
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"enabled": False}, headers=bearer(dev))
    body = await resp.json()
    assert body["status"] == "disabled" and body["disabled_reason"] == "disabled by the user"
    worker = worker_for(wh, dns)
    assert await worker.run_once() == 0 and receiver.requests == []
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "pending"
    resp = await wh.patch(f"/api/v1/webhooks/{wid}", json={"enabled": True}, headers=bearer(dev))
    assert (await resp.json())["status"] == "active"
    assert await worker.run_once() == 1
    assert receiver.ids() == [event_id]


async def _status(client, key, status) -> bool:
    return all(e["status"] == status for e in await events_of(client, key))


@pytest.mark.slow
async def test_worker_process_killed_mid_delivery_loses_nothing(wh, receiver, tmp_path, service_database_url):
    """A real ``wavis webhooks`` process is SIGKILLed while its POST is in flight; a second
    process delivers the same event id after the lease, and the history shows it."""
    dev = await wh.account()
    await create(wh, dev, receiver.url)
    release = asyncio.Event()

    async def hang(request):
        await release.wait()
        return web.Response(text="too late")

    receiver.script = [hang]
    [event_id] = await send_test(wh, dev)
    env = {**os.environ, "WAVIS_DATABASE_URL": wh.app[SETTINGS].database_url,
           "WAVIS_MASTER_KEY": wh.app[SETTINGS].master_key.hex(), "WAVIS_WEBHOOKS_ALLOW_LOOPBACK": "1",
           "WAVIS_WEBHOOK_POLL_S": "0.1", "WAVIS_WEBHOOK_LEASE_S": "2", "WAVIS_DATA_DIR": str(tmp_path / "worker")}

    async def start():
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "wavis.cli", "webhooks", env=env,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)

    first = await start()
    await asyncio.wait_for(receiver.got.wait(), 60)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    release.set()
    [ev] = await events_of(wh, dev)
    assert ev["status"] == "pending" and ev["attempts"] == 1 and ev["last_status_code"] is None

    second = await start()
    try:
        deadline = time.monotonic() + 60
        while (await events_of(wh, dev))[0]["status"] != "delivered":
            assert time.monotonic() < deadline, "the event was not delivered after the lease"
            await asyncio.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()[-2000:]
    assert receiver.ids() == [event_id, event_id]
    detail = await (await wh.get(f"/api/v1/webhooks/events/{event_id}", headers=bearer(dev))).json()
    assert detail["attempts"] == 2
    assert [(a["attempt"], a["status_code"]) for a in detail["delivery_attempts"]] == [(2, 200)]


def self_signed(tmp_path, name: str):
    """A certificate for ``name`` (and a key) in ``tmp_path``; returns (cert path, key path)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_https_goes_to_the_vetted_address_with_the_name_for_sni_host_and_certificate(
        wh, dns, aiohttp_server, tmp_path):
    """The connection goes to the address resolved once and vetted, while TLS (SNI and the
    certificate check) and the Host header use the URL's name."""
    import ssl

    name = "secure-receiver.example"
    cert, key = self_signed(tmp_path, name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str] = []
    server_ctx.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=server_ctx)
    dns.answers[name] = ["127.0.0.1"]  # https to loopback: allowed only by the test setting
    dev = await wh.account()
    await create(wh, dev, f"https://{name}:{server.port}/hook")
    [event_id] = await send_test(wh, dev)
    dns.lookups.clear()
    worker = worker_for(wh, dns)
    worker.ssl_context = ssl.create_default_context(cafile=str(cert))
    assert await worker.run_once() == 1
    assert rec.ids() == [event_id]
    assert rec.requests[0]["headers"]["Host"] == f"{name}:{server.port}"
    assert sni == [name]
    assert dns.lookups == [name]  # one resolution for the delivery, none by the connector

    # a certificate for another name is refused (the name, not the address, is verified)
    other = "other-name.example"
    dns.answers[other] = ["127.0.0.1"]
    made = await create(wh, dev, f"https://{other}:{server.port}/hook")
    async with wh.app[DB].acquire() as conn:
        async with conn.transaction():
            [evt] = await rw_insert_one(conn, made["webhook_id"])
    await worker.run_once()
    detail = await (await wh.get(f"/api/v1/webhooks/events/{evt}", headers=bearer(dev))).json()
    assert detail["status"] == "pending" and detail["last_status_code"] is None
    assert "certificate" in detail["last_error"].lower() or "ssl" in detail["last_error"].lower()
    assert rec.ids() == [event_id]


async def rw_insert_one(conn, webhook_id: str) -> list[str]:
    from wavis.service.webhooks import insert_events

    acct = await conn.fetchval("SELECT account_id FROM webhooks WHERE id = $1", webhook_id)
    return [e for e, _ in await insert_events(conn, acct, "test", {"message": "x"}, [webhook_id])]


# --- the outbox -----------------------------------------------------------------------------------

async def test_outbox_is_transactional_and_filters_by_event_type(wh, receiver):
    dev = await wh.account()
    all_types = await create(wh, dev, receiver.url)
    only_keys = await create(wh, dev, receiver.url, events=["key_created"])
    async with wh.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", dev[:16])
        with pytest.raises(OutboxError, match="transaction"):
            await emit_event(conn, acct, "usage_alert", {"pct": 50})
        with pytest.raises(OutboxError, match="unknown"):
            async with conn.transaction():
                await emit_event(conn, acct, "usage-alert", {"pct": 50})
        with pytest.raises(OutboxError, match="JSON"):
            async with conn.transaction():
                await emit_event(conn, acct, "usage_alert", {"blob": b"\x00"})
        with pytest.raises(OutboxError, match="exceeds"):
            async with conn.transaction():
                await emit_event(conn, acct, "usage_alert", {"blob": "x" * 20000})
        # rolled back with the change that caused it
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert len(await emit_event(conn, acct, "usage_alert", {"pct": 80})) == 1
                raise RuntimeError("the change failed")
        assert await conn.fetchval("SELECT count(*) FROM webhook_events WHERE account_id = $1", acct) == 0
        async with conn.transaction():
            ids = await emit_event(conn, acct, "usage_alert", {"pct": 80})
            ids += await emit_event(conn, acct, "key_created", {"kind": "fhe_key", "key_id": "key_x"})
    assert len(ids) == 3
    evs = await events_of(wh, dev)
    assert sorted((e["webhook_id"], e["type"]) for e in evs) == sorted([
        (all_types["webhook_id"], "usage_alert"), (all_types["webhook_id"], "key_created"),
        (only_keys["webhook_id"], "key_created")])
    # history filters and pagination
    assert len(await events_of(wh, dev, webhook_id=only_keys["webhook_id"])) == 1
    assert len(await events_of(wh, dev, type="usage_alert")) == 1
    page1 = await (await wh.get("/api/v1/webhooks/events", params={"limit": "2"}, headers=bearer(dev))).json()
    assert page1["has_more"] and len(page1["data"]) == 2
    page2 = await (await wh.get("/api/v1/webhooks/events", params={"limit": "2", "cursor": page1["next_cursor"]},
                                headers=bearer(dev))).json()
    assert not page2["has_more"] and len(page2["data"]) == 1
    assert {e["event_id"] for e in page1["data"] + page2["data"]} == set(ids)


async def test_key_events_are_emitted_where_keys_change(wh, receiver, ckks_pair_factory):
    admin = await wh.account(role="account_admin")
    await create(wh, admin, receiver.url, events=["key_created", "key_deleted", "key_rotated"])
    resp = await wh.post("/api/v1/api-keys", json={"environment": "test", "role": "viewer"}, headers=bearer(admin))
    assert resp.status == 201
    new_key = await resp.json()
    assert (await wh.delete(f"/api/v1/api-keys/{new_key['id']}", headers=bearer(admin))).status == 204
    assert (await wh.delete(f"/api/v1/api-keys/{new_key['id']}", headers=bearer(admin))).status == 204  # no 2nd event
    pair = ckks_pair_factory()
    resp = await wh.post("/api/v1/keys/upload", json=pair.upload_body(), headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    key_id = (await resp.json())["key_id"]
    assert (await wh.delete(f"/api/v1/keys/{key_id}", headers=bearer(admin))).status == 200
    resp = await wh.post("/api/v1/keys/apikey/rotate", headers=bearer(admin))
    assert resp.status == 200
    rotated = await resp.json()

    evs = await events_of(wh, admin)
    assert [e["type"] for e in evs] == ["key_created", "key_deleted", "key_created", "key_deleted", "key_rotated"]
    data = []
    for e in evs:
        detail = await (await wh.get(f"/api/v1/webhooks/events/{e['event_id']}", headers=bearer(admin))).json()
        data.append(detail["data"])
    assert data[0] == {"kind": "api_key", "api_key_id": new_key["id"], "prefix": new_key["prefix"],
                       "role": "viewer", "environment": "test"}
    assert data[1] == {"kind": "api_key", "api_key_id": new_key["id"], "prefix": new_key["prefix"]}
    assert data[2]["kind"] == "fhe_key" and data[2]["key_id"] == key_id and data[2]["blind"] is True
    assert data[3] == {"kind": "fhe_key", "key_id": key_id, "ciphertexts_deleted": 0}
    assert data[4]["old_key_prefix"] == rotated["old_key_prefix"]
    assert data[4]["new_key_prefix"] == rotated["new_api_key"][:16]
    assert data[4]["grace_period_ends_at"].endswith("Z")
    blob = json.dumps(data)
    assert new_key["key"] not in blob and rotated["new_api_key"] not in blob  # never the keys themselves


async def test_compute_complete_for_async_jobs_from_the_engine(wh, dns, receiver, ckks_pair_factory):
    """The engine's complete_job writes compute_complete in the job's completing transaction:
    async jobs only, ids and status only (never ciphertext bytes), failed jobs with their code."""
    from wavis import serialize

    dev = await wh.account()
    await create(wh, dev, receiver.url, events=["compute_complete"])
    h = bearer(dev)
    pair = ckks_pair_factory(max_depth=1, index=0)
    key_id = (await (await wh.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)).json())["key_id"]
    ids = []
    for v in ([1.0, 2.0], [3.0, 4.0]):
        resp = await wh.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": serialize.b64encode(
            serialize.dumps(pair.encrypt(v)))}, headers=h)
        ids.append((await resp.json())["ciphertext_id"])

    async def job_done(job_id):
        for _ in range(600):
            body = await (await wh.get(f"/api/v1/jobs/{job_id}", headers=h)).json()
            if body["status"] in ("COMPLETED", "FAILED"):
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(body)

    resp = await wh.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": ids, "async": True},
                         headers=h)
    assert resp.status == 202, await resp.text()
    ok = await job_done((await resp.json())["job_id"])
    resp = await wh.post("/api/v1/compute/multiply-plain", json={"key_id": key_id, "ciphertext_ids": ids[:1],
                                                                "plain_operand": [1e300], "async": True}, headers=h)
    bad = await job_done((await resp.json())["job_id"])
    assert bad["status"] == "FAILED"
    sync = await wh.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": ids}, headers=h)
    assert sync.status == 200  # a synchronous job: no event (the caller has the answer)

    evs = await events_of(wh, dev)
    assert [e["type"] for e in evs] == ["compute_complete", "compute_complete"]
    datas = [(await (await wh.get(f"/api/v1/webhooks/events/{e['event_id']}", headers=h)).json())["data"]
             for e in evs]
    assert datas[0] == {"job_id": ok["job_id"], "kind": "ckks", "operation": "add", "status": "COMPLETED",
                        "result_ids": [ok["result_ciphertext_id"]]}
    assert datas[1] == {"job_id": bad["job_id"], "kind": "ckks", "operation": "multiply-plain", "status": "FAILED",
                        "result_ids": [], "error": {"code": "INVALID_PLAINTEXT", "status": 400}}
    worker = worker_for(wh, dns)
    while await worker.run_once():
        pass
    assert len(receiver.requests) == 2 and max(len(r["body"]) for r in receiver.requests) < 1024  # ids, not bytes
    assert json.loads(receiver.requests[0]["body"])["data"]["result_ids"] == [ok["result_ciphertext_id"]]


# --- the SSRF guard ---------------------------------------------------------------------------------

LITERAL_URLS = {
    "http (not loopback)": "http://hooks.example.com/",
    "loopback literal": "https://127.0.0.1/",
    "loopback6 literal": "https://[::1]/",
    "private literal": "https://10.0.0.1/",
    "metadata literal": "https://169.254.169.254/latest/meta-data",
    "cgnat literal": "https://100.64.0.1/",
    "mapped literal": "https://[::ffff:127.0.0.1]/",
    "mapped hex literal": "https://[::ffff:7f00:1]/",
    "decimal ip": "https://2130706433/",
    "short ip": "https://127.1/",
    "hex ip": "https://0x7f000001/",
    "octal ip": "https://0177.0.0.1/",
    "localhost": "https://localhost/",
    ".local": "https://printer.local/",
    ".internal": "https://metadata.google.internal/",
    ".intranet": "https://wiki.corp.intranet/",
    "trailing dot": "https://db.internal./",
    "single label": "https://metadata/",
    "credentials": "https://user:pw@hooks.example.com/",
    "ftp": "ftp://hooks.example.com/",
    "relative": "/hook",
}


async def test_every_ssrf_form_is_refused_at_registration(strict, dns):
    wh = strict
    dev = await wh.account()
    for label, url in LITERAL_URLS.items():
        resp = await wh.post("/api/v1/webhooks", json={"url": url}, headers=bearer(dev))
        assert resp.status in (400, 422), (label, resp.status)
        if resp.status == 400:
            err = await error_of(resp, 400, "INVALID_URL")
            assert err["details"]["field"] == "url", label
    for label, ip in BAD_ADDRESSES.items():
        name = f"{label.replace('_', '-')}.attacker.example"
        dns.answers[name] = [ip]
        err = await error_of(await wh.post("/api/v1/webhooks", json={"url": f"https://{name}/"}, headers=bearer(dev)),
                             400, "INVALID_URL")
        assert err["details"]["reason"] == "address", (label, err)
    # one bad address among good ones is enough to refuse
    dns.answers["mixed.attacker.example"] = [PUBLIC_IP, "10.0.0.1"]
    await error_of(await wh.post("/api/v1/webhooks", json={"url": "https://mixed.attacker.example/"},
                                 headers=bearer(dev)), 400, "INVALID_URL")
    # a name that does not resolve
    err = await error_of(await wh.post("/api/v1/webhooks", json={"url": "https://nx.attacker.example/"},
                                       headers=bearer(dev)), 400, "INVALID_URL")
    assert err["details"]["reason"] == "dns"
    resp = await wh.get("/api/v1/webhooks", headers=bearer(dev))
    assert (await resp.json())["data"] == []


async def test_dns_answer_changed_after_registration_is_refused_at_delivery(strict, dns, receiver):
    """DNS rebinding: the name was public at registration; at delivery it resolves to each
    forbidden address class in turn, and every attempt is refused before any connection."""
    wh = strict
    dev = await wh.account()
    name = "rebind.attacker.example"
    dns.answers[name] = [PUBLIC_IP]
    # the receiver's port: were the guard bypassed, a loopback answer would reach it
    made = await create(wh, dev, f"https://{name}:{receiver.port}/hook")
    worker = worker_for(wh, dns, webhook_retry_schedule_s=(0.0,) * 100)
    for label, ip in list(BAD_ADDRESSES.items()) + [("mixed", [PUBLIC_IP, "127.0.0.1"])]:
        dns.answers[name] = ip if isinstance(ip, list) else [ip]
        before = len(dns.lookups)
        async with wh.app[DB].acquire() as conn:
            acct = await conn.fetchval("SELECT account_id FROM webhooks WHERE id = $1", made["webhook_id"])
            async with conn.transaction():
                [event_id] = await emit_event(conn, acct, "usage_alert", {"pct": 100})
        assert await worker.run_once() == 1
        detail = await (await wh.get(f"/api/v1/webhooks/events/{event_id}", headers=bearer(dev))).json()
        assert detail["last_error"].startswith("refused by the SSRF guard"), (label, detail["last_error"])
        assert detail["last_status_code"] is None
        assert dns.lookups[before:] == [name], label  # resolved once, at this delivery
        async with wh.app[DB].acquire() as conn:  # done with this one
            await conn.execute("UPDATE webhook_events SET status = 'failed' WHERE id = $1", event_id)
    assert receiver.requests == []


async def test_url_forms_are_refused_again_at_delivery(strict, dns, receiver):
    """Rows whose URL would not pass today (written under older rules, or edited in the
    database) are refused by the worker too: the guard runs at every delivery."""
    wh = strict
    dev = await wh.account()
    made = await create(wh, dev, "https://hooks.example.com/hook")
    sealer = Sealer(wh.app[SETTINGS].master_key)
    worker = worker_for(wh, dns)
    forms = dict(LITERAL_URLS)
    forms.pop("relative")
    forms["loopback receiver"] = receiver.url
    async with wh.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM webhooks WHERE id = $1", made["webhook_id"])
        await conn.execute("DELETE FROM webhooks WHERE id = $1", made["webhook_id"])
        for label, url in forms.items():
            wid = f"wh_{hashlib.sha256(label.encode()).hexdigest()[:24]}"
            await conn.execute("INSERT INTO webhooks (id, account_id, url, secret_sealed) VALUES ($1, $2, $3, $4)",
                               wid, acct, url, sealer.seal(b"s" * 32, rw.secret_aad(wid, acct)))
            async with conn.transaction():
                await rw_insert_one(conn, wid)
    while await worker.run_once():
        pass
    evs = await events_of(wh, dev)
    assert len(evs) == len(forms)
    for ev in evs:
        assert ev["last_error"].startswith("refused by the SSRF guard"), ev
        assert ev["last_status_code"] is None
    assert receiver.requests == []
    assert [h for h in dns.lookups if h != "hooks.example.com"] == []  # refused before any lookup


async def test_loopback_needs_the_operator_setting(wh, dns, receiver):
    dev = await wh.account()
    made = await create(wh, dev, receiver.url)  # allowed: this app runs with the setting on
    await send_test(wh, dev)
    # a worker without the setting refuses the same target at delivery
    worker = worker_for(wh, dns, webhooks_allow_loopback=False)
    await worker.run_once()
    [ev] = await events_of(wh, dev)
    assert ev["last_error"].startswith("refused by the SSRF guard") and receiver.requests == []
    assert made["url"].startswith("http://127.0.0.1")


async def test_registration_refuses_loopback_by_default(api):
    dev = await api.account()
    for url in ("http://127.0.0.1:9/hook", "https://127.0.0.1/hook", "https://[::1]/"):
        err = await error_of(await api.post("/api/v1/webhooks", json={"url": url}, headers=bearer(dev)),
                             400, "INVALID_URL")
        assert err["details"]["reason"] in ("scheme", "address")


async def test_openapi_documents_the_webhook_routes(api):
    doc = await (await api.get("/api/v1/openapi.json")).json()
    paths = doc["paths"]
    expected = {
        "/api/v1/webhooks": {"get", "post"},
        "/api/v1/webhooks/{webhook_id}": {"get", "patch", "delete"},
        "/api/v1/webhooks/{webhook_id}/regenerate-secret": {"patch"},
        "/api/v1/webhooks/test": {"post"},
        "/api/v1/webhooks/events": {"get"},
        "/api/v1/webhooks/events/{event_id}": {"get"},
        "/api/v1/webhooks/events/{event_id}/redeliver": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods | ({"head"} if "get" in methods else set()), path  # HEAD with GET
    post = paths["/api/v1/webhooks"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("WebhookCreateRequest")
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("WebhookCreated")
    schemas = doc["components"]["schemas"]
    assert "key_rotated" in json.dumps(schemas["WebhookCreateRequest"])
    assert {p["name"] for p in paths["/api/v1/webhooks/events"]["get"]["parameters"] if "name" in p} >= {
        "limit", "cursor", "webhook_id", "status", "type"}


async def test_malformed_host_names_are_a_400_not_a_500(api):
    """`https://a..b/` and a 64+-character label reached the resolver, whose IDNA codec raised
    UnicodeError ("label empty or too long"): a 500 INTERNAL_ERROR. The static check now refuses
    them (400 INVALID_URL, reason "host"), and a resolver that raises UnicodeError anyway is an
    unresolvable name (reason "dns"), never a 500."""
    from wavis.service import ssrf

    dev = await api.account()
    for url in ("https://a..b/x", "https://" + "a" * 64 + ".example.com/x", "https://.example.com/x",
                "https://" + ".".join(["a" * 60] * 5) + "/x"):
        err = await error_of(await api.post("/api/v1/webhooks", json={"url": url}, headers=bearer(dev)),
                             400, "INVALID_URL")
        assert err["details"]["reason"] == "host", (url, err)

    class Idna:
        async def resolve(self, host, port=0, family=0):
            "a..b".encode("idna")  # raises UnicodeError, as the threaded resolver does

    target = ssrf.check_url("https://hooks.example.com/x")
    with pytest.raises(ssrf.UnresolvableTarget):
        await ssrf.resolve_and_vet(target, Idna())
