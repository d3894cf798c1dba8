"""Jobs, the batcher and the stream workers (issue 13) against real PostgreSQL and Redis:
async jobs (202 → GET /jobs/{id}), listing and cancelling, batched results equal to unbatched
ones bit for bit (TFHE and CKKS), a failing job failing alone, bounded queues (429 per account
before 503 overall), async jobs surviving an API restart, the attempt fence (exactly once) and
XAUTOCLAIM of a dead consumer's messages."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import numpy as np
import pytest

from wavis import frame, serialize, tfhe
from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

PRESET = "fast_128"


@pytest.fixture(scope="module")
def tfhe_keys():
    return tfhe.keygen(PRESET, seed=1313)


def b64(ct) -> str:
    return base64.b64encode(tfhe.serialize.dumps(ct)).decode()


def untagged(text: str | None) -> str | None:
    """A server-emitted blob without its keyed tag (issue 15): what the library itself writes."""
    return None if text is None else base64.b64encode(frame.strip_tag(base64.b64decode(text))).decode()


def unb64(ck, text: str):
    return tfhe.serialize.load_ciphertext(base64.b64decode(text), key=ck)


async def wait_job(api, headers, job_id: str, timeout: float = 60.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await api.get(f"/api/v1/jobs/{job_id}", headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def blind_session(api, headers, sk) -> str:
    resp = await api.post("/api/v1/tfhe/eval-session", json={"eval_key_b64": b64(sk)}, headers=headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["session_id"]


def client_for(make_client, settings):
    async def make():
        c = await make_client(settings)
        add_account_helper(c)
        return c
    return make


# --- jobs API -------------------------------------------------------------------------------------

async def test_async_gate_job_lists_and_other_account_gets_404(api, tfhe_keys):
    ck, sk = tfhe_keys
    h = bearer(await api.account())
    sid = await blind_session(api, h, sk)
    a, b = ck.encrypt(True), ck.encrypt(False)
    resp = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "NAND", "a": b64(a), "b": b64(b),
                                                     "async": True}, headers=h)
    assert resp.status == 202, await resp.text()
    acc = await resp.json()
    assert acc["status"] == "QUEUED" and acc["job_id"].startswith("op_") and acc["operation"] == "gate"
    job = await wait_job(api, h, acc["job_id"])
    assert job["status"] == "COMPLETED" and job["kind"] == "tfhe" and job["attempts"] == 1
    assert job["batch_size"] >= 1 and job["cost_units"] == 1 and job["compute_time_ms"] > 0
    assert job["started_at"] is not None and job["finished_at"] is not None
    assert bool(ck.decrypt(unb64(ck, job["result_b64"]))) is True  # NAND(1, 0)
    assert untagged(job["result_b64"]) == b64(sk.gate("NAND", a, b))  # bit for bit the library's gate

    # a synchronous request is a job too (its outputs are not kept in the row)
    resp = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "AND", "a": b64(a), "b": b64(a)},
                          headers=h)
    assert resp.status == 200, await resp.text()
    sync = await resp.json()
    got = await wait_job(api, h, sync["job_id"])
    assert got["status"] == "COMPLETED" and got["result_b64"] is None and got["levels"] == 1

    # list: newest first, cursor pagination
    resp = await api.get("/api/v1/jobs?limit=1", headers=h)
    page = await resp.json()
    assert [j["job_id"] for j in page["data"]] == [sync["job_id"]] and page["has_more"] is True
    resp = await api.get(f"/api/v1/jobs?limit=1&cursor={page['next_cursor']}", headers=h)
    page2 = await resp.json()
    assert [j["job_id"] for j in page2["data"]] == [acc["job_id"]] and page2["has_more"] is False
    await error_of(await api.get("/api/v1/jobs?cursor=AAAA", headers=h), 400, "INVALID_CURSOR")

    # another account: 404 for get and delete, and an empty list
    other = bearer(await api.account())
    # ... and its gates on this session, synchronous (the touch in the admission statement) or
    # async (touched apart), and batches: 404, no job admitted
    for path, body in (("/tfhe/gate", {"op": "NAND", "a": b64(a), "b": b64(b)}),
                       ("/tfhe/batch", {"gates": [{"op": "NOT", "a": b64(a)}]})):
        for extra in ({}, {"async": True}):
            await error_of(await api.post("/api/v1" + path, json={"session_id": sid, **body, **extra}, headers=other),
                           404, "NOT_FOUND")
    await error_of(await api.get(f"/api/v1/jobs/{acc['job_id']}", headers=other), 404, "NOT_FOUND")
    await error_of(await api.delete(f"/api/v1/jobs/{acc['job_id']}", headers=other), 404, "NOT_FOUND")
    resp = await api.get("/api/v1/jobs", headers=other)
    assert (await resp.json())["data"] == []
    # a completed job cannot be cancelled
    await error_of(await api.delete(f"/api/v1/jobs/{acc['job_id']}", headers=h), 409, "JOB_NOT_CANCELLABLE")
    # a viewer may read jobs but not cancel them
    viewer = bearer(await api.key_for(h["Authorization"][7:], role="viewer"))
    assert (await api.get(f"/api/v1/jobs/{acc['job_id']}", headers=viewer)).status == 200
    await error_of(await api.delete(f"/api/v1/jobs/{acc['job_id']}", headers=viewer), 403, "FORBIDDEN")


async def test_async_ckks_job_result_is_a_stored_ciphertext(api, ckks_pair_factory):
    pair = ckks_pair_factory(max_depth=1, index=0)
    h = bearer(await api.account())
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
    key_id = (await resp.json())["key_id"]
    x = np.linspace(-1, 1, pair.params.slot_count)
    ids = []
    for v in (x, -0.5 * x):
        resp = await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": serialize.b64encode(
            serialize.dumps(pair.encrypt(v)))}, headers=h)
        ids.append((await resp.json())["ciphertext_id"])
    resp = await api.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": ids, "async": True},
                          headers=h)
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, h, (await resp.json())["job_id"])
    assert job["status"] == "COMPLETED" and job["kind"] == "ckks" and job["operation"] == "add"
    resp = await api.get(f"/api/v1/ciphertexts/{job['result_ciphertext_id']}", headers=h)
    ct = serialize.loads(serialize.b64decode((await resp.json())["ciphertext_b64"]),
                         expected_type=serialize.Ciphertext, params=pair.params)
    assert np.max(np.abs(pair.decrypt(ct).real - 0.5 * x)) < 1e-4
    # the synchronous answer of the same operation is the same ciphertext, bit for bit
    resp = await api.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": ids}, headers=h)
    assert resp.status == 200
    assert frame.strip_tag(serialize.b64decode((await resp.json())["result_ciphertext"])) == serialize.dumps(ct)

    # an async job that fails is FAILED with the error the synchronous request would answer
    resp = await api.post("/api/v1/compute/multiply-plain",
                          json={"key_id": key_id, "ciphertext_ids": ids[:1], "plain_operand": [1e300],
                                "async": True}, headers=h)
    assert resp.status == 202
    job = await wait_job(api, h, (await resp.json())["job_id"])
    assert job["status"] == "FAILED" and job["error"]["code"] == "INVALID_PLAINTEXT" and job["error"]["status"] == 400


# --- batching -------------------------------------------------------------------------------------

async def test_tfhe_batched_equals_unbatched_and_a_bad_job_fails_alone(make_client, service_settings, tfhe_keys):
    ck, sk = tfhe_keys
    # a long window so the concurrent requests below surely share one batched bootstrap
    api = await client_for(make_client, replace(service_settings, batch_max_size=64, batch_max_delay_ms=400.0))()
    h = bearer(await api.account())
    sid = await blind_session(api, h, sk)
    rng = np.random.default_rng(7)
    ops = ["NAND", "AND", "OR", "XOR", "NOR", "XNOR", "NOT", "MUX"]
    bodies, expect = [], []
    for i in range(16):
        op = ops[i % len(ops)]
        a, b, s = (ck.encrypt(bool(v)) for v in rng.integers(0, 2, 3))
        body = {"session_id": sid, "op": op, "a": b64(a)}
        if op != "NOT":
            body["b"] = b64(b)
        if op == "MUX":
            body["sel"] = b64(s)
        bodies.append(("/tfhe/gate", body))
        expect.append([b64(sk.gate(op, a, None if op == "NOT" else b, s if op == "MUX" else None))])
    # a circuit job ("$k" references) in the same batch
    x, y = ck.encrypt(True), ck.encrypt(True)
    circuit = [{"op": "XOR", "a": b64(x), "b": b64(y)}, {"op": "AND", "a": b64(x), "b": b64(y)},
               {"op": "OR", "a": "$0", "b": "$1"}]
    bodies.append(("/tfhe/batch", {"session_id": sid, "gates": circuit}))
    c0, c1 = sk.gate("XOR", x, y), sk.gate("AND", x, y)
    expect.append([b64(c0), b64(c1), b64(sk.gate("OR", c0, c1))])
    # and a job whose operand is corrupt: it fails alone
    bad = dict(bodies[0][1], a=b64(x)[:-8] + "AAAAAAA=")
    bodies.append(("/tfhe/gate", bad))

    resps = await asyncio.gather(*(api.post("/api/v1" + path, json=body, headers=h) for path, body in bodies))
    *good, bad_resp = resps
    await error_of(bad_resp, 400, "INVALID_CIPHERTEXT")
    sizes = set()
    for resp, want in zip(good, expect):
        assert resp.status == 200, await resp.text()
        out = await resp.json()
        got = [untagged(t) for t in (out.get("results_b64") or [out["result_b64"]])]
        assert got == want  # bit for bit what the library computes gate by gate
        sizes.add(out["batch_size"])
    assert max(sizes) > 1, sizes  # they really were batched


async def test_ckks_batched_equals_unbatched(make_client, service_settings, ckks_pair_factory):
    pair = ckks_pair_factory(max_depth=1, index=0)
    rng = np.random.default_rng(3)
    n = pair.params.slot_count
    cts = [pair.encrypt(rng.uniform(-1, 1, n)) for _ in range(8)]

    async def run(settings):
        api = await client_for(make_client, settings)()
        h = bearer(await api.account())
        resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
        key_id = (await resp.json())["key_id"]
        ids = []
        for ct in cts:
            resp = await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64":
                                  serialize.b64encode(serialize.dumps(ct))}, headers=h)
            ids.append((await resp.json())["ciphertext_id"])
        reqs = [api.post("/api/v1/compute/multiply", json={"key_id": key_id, "ciphertext_ids": [ids[i], ids[i + 1]]},
                         headers=h) for i in range(0, 8, 2)]
        reqs += [api.post("/api/v1/compute/rescale", json={"key_id": key_id, "ciphertext_ids": [ids[i]]}, headers=h)
                 for i in range(2)]  # a different operation: its own batch key
        out = []
        for resp in await asyncio.gather(*reqs):
            assert resp.status in (200, 400), await resp.text()
            body = await resp.json()
            out.append((resp.status, untagged(body.get("result_ciphertext")), body.get("batch_size")))
        await api.close()
        return out

    batched = await run(replace(service_settings, batch_max_size=8, batch_max_delay_ms=300.0))
    single = await run(replace(service_settings, batch_max_size=1, batch_max_delay_ms=0.0))
    assert [s for s, _, _ in batched] == [s for s, _, _ in single]
    assert [r for _, r, _ in batched] == [r for _, r, _ in single]  # bit for bit
    assert max(b for s, _, b in batched if s == 200) > 1
    assert all(b == 1 for s, _, b in single if s == 200)


# --- bounded queues, cancel, restart ----------------------------------------------------------------

async def test_queue_quota_429_then_global_503_and_cancel(make_client, service_settings, tfhe_keys):
    ck, sk = tfhe_keys
    # remote engine and no worker: jobs stay QUEUED
    settings = replace(service_settings, engine="remote", job_queue_max=3, job_queue_per_account=2)
    api = await client_for(make_client, settings)()
    h1 = bearer(await api.account())
    h2 = bearer(await api.account())
    sid1 = await blind_session(api, h1, sk)
    sid2 = await blind_session(api, h2, sk)
    a = b64(ck.encrypt(True))

    async def gate(h, sid):
        return await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "NOT", "a": a, "async": True},
                              headers=h)

    r1, r2 = await gate(h1, sid1), await gate(h1, sid1)
    assert r1.status == r2.status == 202
    err = await error_of(await gate(h1, sid1), 429, "QUEUE_QUOTA_EXCEEDED")  # the account's quota first
    assert err["details"]["queue_quota"] == 2
    assert (await gate(h2, sid2)).status == 202
    resp = await gate(h2, sid2)
    await error_of(resp, 503, "OVERLOADED")  # then the global bound
    assert resp.headers["Retry-After"] == "1"

    job_id = (await r1.json())["job_id"]
    resp = await api.delete(f"/api/v1/jobs/{job_id}", headers=h1)
    assert resp.status == 200 and (await resp.json())["status"] == "CANCELLED"
    await error_of(await api.delete(f"/api/v1/jobs/{job_id}", headers=h1), 409, "JOB_NOT_CANCELLABLE")
    # the cancelled job no longer counts against the account's quota (429 gone), but its message
    # is still on the stream until a worker passes it: the global bound still answers 503
    await error_of(await gate(h1, sid1), 503, "OVERLOADED")
    got = await (await api.get(f"/api/v1/jobs/{job_id}", headers=h1)).json()
    assert got["status"] == "CANCELLED" and got["attempts"] == 0
    # a worker comes up: it skips the cancelled job, runs the others, and the queue drains
    from wavis.service.worker import Worker

    worker = Worker(api.app)
    await worker.start()
    try:
        for r in (r2,):
            assert (await wait_job(api, h1, (await r.json())["job_id"]))["status"] == "COMPLETED"
        assert (await gate(h1, sid1)).status == 202
    finally:
        await worker.stop()
    got = await (await api.get(f"/api/v1/jobs/{job_id}", headers=h1)).json()
    assert got["status"] == "CANCELLED" and got["attempts"] == 0  # never ran


async def test_async_jobs_survive_an_api_restart(make_client, service_settings, tfhe_keys):
    ck, sk = tfhe_keys
    first = await client_for(make_client, replace(service_settings, engine="remote"))()
    h = bearer(await first.account())
    sid = await blind_session(first, h, sk)
    bits = [(True, False), (True, True), (False, False)]
    job_ids = []
    for x, y in bits:
        resp = await first.post("/api/v1/tfhe/batch", json={"session_id": sid, "async": True, "gates": [
            {"op": "XOR", "a": b64(ck.encrypt(x)), "b": b64(ck.encrypt(y))}]}, headers=h)
        assert resp.status == 202
        job_ids.append((await resp.json())["job_id"])
    await first.close()  # the process that accepted them is gone; nothing computed them yet

    from wavis.service import create_app

    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(replace(service_settings, engine="embedded"))  # the Redis keys are NOT cleared

    async with TestClient(TestServer(app)) as api2:
        for job_id, (x, y) in zip(job_ids, bits):
            job = await wait_job(api2, h, job_id)
            assert job["status"] == "COMPLETED", job
            assert [bool(ck.decrypt(unb64(ck, t))) for t in job["results_b64"]] == [x != y]


# --- exactly once --------------------------------------------------------------------------------------

async def test_attempt_fence_completes_exactly_once_and_hooks_run_once(api):
    from wavis.service import jobs
    from wavis.service.state import DB

    h = await api.account()
    async with api.app[DB].acquire() as conn:
        account_id = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", h[:16])
        spec = jobs.JobSpec(account_id=account_id, kind="tfhe", operation="gate", batch_key="tfhe:x",
                            affinity="x", payload={"gates": []}, is_async=True)
        row = await jobs.insert(conn, spec, 3600)
        first = (await jobs.claim(conn, [row["id"]], "w1"))[row["id"]]
        second = (await jobs.claim(conn, [row["id"]], "w2"))[row["id"]]  # reclaimed by another worker
        assert (first["attempts"], second["attempts"]) == (1, 2)
        calls = []
        added = []

        async def hook(c, job, outcome):
            calls.append((job.id, job.attempt, outcome.status))
            await c.execute("SELECT 1")  # inside the completing transaction

        added.append(jobs.register_completion_hook(hook))
        try:
            late = jobs.job_from_row(first)
            now = jobs.job_from_row(second)
            assert await jobs.complete_job(conn, late, jobs.Outcome(result={"who": "late"})) is False
            assert await jobs.complete_job(conn, now, jobs.Outcome(result={"who": "current"})) is True
            assert await jobs.complete_job(conn, now, jobs.Outcome(result={"who": "again"})) is False
            assert calls == [(row["id"], 2, "COMPLETED")]
            # a hook that raises rolls the job row back with it
            row2 = await jobs.insert(conn, spec, 3600)
            claimed = jobs.job_from_row((await jobs.claim(conn, [row2["id"]], "w1"))[row2["id"]])

            async def boom(c, job, outcome):
                raise RuntimeError("billing down")

            added.append(jobs.register_completion_hook(boom))
            with pytest.raises(RuntimeError):
                await jobs.complete_job(conn, claimed, jobs.Outcome(result={}))
            assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", row2["id"]) == "RUNNING"
        finally:
            for fn in added:
                jobs.COMPLETION_HOOKS.remove(fn)
        final = await conn.fetchrow("SELECT status, result, attempts FROM jobs WHERE id = $1", row["id"])
    assert final["status"] == "COMPLETED" and final["result"] == {"who": "current"} and final["attempts"] == 2
    # claiming a final job gives nothing (its redelivered message is acknowledged without work)
    async with api.app[DB].acquire() as conn:
        assert await jobs.claim(conn, [row["id"]], "w3") == {}


async def test_messages_of_a_dead_consumer_are_reclaimed_and_completed(make_client, service_settings, tfhe_keys):
    """A message delivered to a consumer that never acknowledges (a worker that died right
    after reading it) is taken over with XAUTOCLAIM and completed once."""
    from wavis.service import streams
    from wavis.service.state import REDIS

    ck, sk = tfhe_keys
    settings = replace(service_settings, engine="remote", job_reclaim_idle_s=0.6)
    api = await client_for(make_client, settings)()
    h = bearer(await api.account())
    sid = await blind_session(api, h, sk)
    resp = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "NOT", "a": b64(ck.encrypt(False)),
                                                     "async": True}, headers=h)
    job_id = (await resp.json())["job_id"]
    redis = api.app[REDIS]
    prefix = settings.redis_prefix
    stream = streams.shard_stream(prefix, streams.shard_of(sid, settings.job_shards))
    got = await redis.xreadgroup(streams.GROUP, "wrk_dead", {stream: ">"}, count=10)
    assert got and got[0][1][0][1][b"job"].decode() == job_id  # now pending on the "dead" consumer
    # a worker comes up (in this process): it reclaims the message after 0.6 s idle
    from wavis.service.worker import Worker

    worker = Worker(api.app)
    await worker.start()
    try:
        job = await wait_job(api, h, job_id, timeout=30)
    finally:
        await worker.stop()
    assert job["status"] == "COMPLETED" and job["attempts"] == 1
    assert bool(ck.decrypt(unb64(ck, job["result_b64"]))) is True
    assert await redis.xlen(stream) == 0  # acknowledged and deleted
    info = await redis.xpending(stream, streams.GROUP)
    assert info["pending"] == 0


async def test_usage_is_metered_in_the_completing_transaction_once(api, tfhe_keys):
    """A job's FCU go to usage_events when (and only when) it completes: a synchronous and an
    async gate once each, a failing job and a cancelled one never."""
    from wavis.service.state import DB

    ck, sk = tfhe_keys
    key = await api.account()
    h = bearer(key)
    sid = await blind_session(api, h, sk)
    a = b64(ck.encrypt(True))
    r1 = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "AND", "a": a, "b": a}, headers=h)
    assert r1.status == 200
    r2 = await api.post("/api/v1/tfhe/batch", json={"session_id": sid, "async": True, "gates": [
        {"op": "MUX", "a": a, "b": a, "sel": a}, {"op": "AND", "a": a, "b": a}]}, headers=h)
    j2 = (await r2.json())["job_id"]
    assert (await wait_job(api, h, j2))["status"] == "COMPLETED"
    bad = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "AND", "a": a, "b": a[:-8] + "AAAAAAA=",
                                                    "async": True}, headers=h)
    assert (await wait_job(api, h, (await bad.json())["job_id"]))["status"] == "FAILED"
    async with api.app[DB].acquire() as conn:
        account_id = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", key[:16])
        rows = await conn.fetch("SELECT route, operation, fcu, request_id FROM usage_events WHERE account_id = $1 "
                                "ORDER BY id", account_id)
    assert [(r["operation"], r["fcu"]) for r in rows] == [("tfhe:gate", 1), ("tfhe:batch", 3)]
    assert rows[0]["route"] == "POST /api/v1/tfhe/gate" and rows[0]["request_id"] == r1.headers["X-Request-ID"]
