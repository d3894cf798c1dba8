"""Jobs whose Redis stream message is lost (issues 13/14) against real PostgreSQL and Redis:
the job rows are the source of truth, and the reconciler (``reconcile.py``) of a worker sends
lost asynchronous jobs again from PostgreSQL and fails lost synchronous ones with a typed,
retryable 503 ``JOB_LOST`` that charges nothing. Redis's loss is the deletion of the job streams
(what a Redis restarted without persistence, or ``FLUSHDB``, does to them); the multi-process
case with a real SIGKILL of Redis is ``test_service_faults.py`` (slow)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import pytest

from wavis import tfhe
from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

PRESET = "fast_128"
FAST = dict(job_lost_grace_s=0.3, job_reconcile_interval_s=0.2, worker_heartbeat_s=0.2, worker_ttl_s=1.0)


@pytest.fixture(scope="module")
def tfhe_keys():
    return tfhe.keygen(PRESET, seed=1414)


def b64(ct) -> str:
    return base64.b64encode(tfhe.serialize.dumps(ct)).decode()


async def client(make_client, settings):
    c = await make_client(settings)
    add_account_helper(c)
    return c


async def session(api, h, sk) -> str:
    resp = await api.post("/api/v1/tfhe/eval-session", json={"eval_key_b64": b64(sk)}, headers=h)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["session_id"]


async def lose_job_streams(app) -> int:
    """What Redis losing its data does to the job streams: they and their groups are gone."""
    from wavis.service import streams
    from wavis.service.state import REDIS, SETTINGS

    s = app[SETTINGS]
    return await app[REDIS].delete(*streams.all_streams(s.redis_prefix, s.job_shards))


async def wait_job(api, h, job_id: str, timeout: float = 60.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await (await api.get(f"/api/v1/jobs/{job_id}", headers=h)).json()
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def test_queued_async_jobs_whose_messages_redis_lost_are_sent_again_and_complete(
        make_client, service_settings, tfhe_keys):
    from wavis.service.state import DB
    from wavis.service.worker import Worker

    ck, sk = tfhe_keys
    # no worker yet: the jobs stay QUEUED, each named by its stream message
    api = await client(make_client, replace(service_settings, engine="remote", **FAST))
    h = bearer(await api.account())
    sid = await session(api, h, sk)
    bits = [(True, False), (True, True), (False, False), (False, True)]
    ids = []
    for x, y in bits:
        resp = await api.post("/api/v1/tfhe/batch", json={"session_id": sid, "async": True, "gates": [
            {"op": "XOR", "a": b64(ck.encrypt(x)), "b": b64(ck.encrypt(y))}]}, headers=h)
        assert resp.status == 202, await resp.text()
        ids.append((await resp.json())["job_id"])
    async with api.app[DB].acquire() as conn:
        entries = await conn.fetch("SELECT stream_entry FROM jobs WHERE id = ANY($1::text[])", ids)
    assert all(r["stream_entry"] for r in entries)
    assert await lose_job_streams(api.app) >= 1  # Redis lost every queued message

    worker = Worker(api.app)
    await worker.start()
    try:
        jobs_ = [await wait_job(api, h, j, timeout=60) for j in ids]
    finally:
        await worker.stop()
    for job, (x, y) in zip(jobs_, bits):
        assert job["status"] == "COMPLETED", job
        assert job["attempts"] == 1  # sent again once, claimed once: completed exactly once
        out = tfhe.serialize.load_ciphertext(base64.b64decode(job["results_b64"][0]), key=ck)
        assert bool(ck.decrypt(out)) is (x != y)
    # (jobs other tests of this session left QUEUED under the same Redis prefix are sent again too)
    assert worker.reconciler.requeued >= len(ids)


async def test_a_synchronous_job_whose_message_was_lost_fails_typed_and_retryable_uncharged(
        make_client, service_settings, tfhe_keys):
    from wavis.service.state import DB
    from wavis.service.worker import Worker

    ck, sk = tfhe_keys
    api = await client(make_client, replace(service_settings, engine="remote", **FAST))
    key = await api.account()
    h = bearer(key)
    sid = await session(api, h, sk)
    a = b64(ck.encrypt(True))
    body = {"session_id": sid, "op": "AND", "a": a, "b": a}  # one bootstrap: 1 FCU
    waiting = asyncio.ensure_future(api.post("/api/v1/tfhe/gate", json=body, headers=h))
    async with api.app[DB].acquire() as conn:  # wait until its job is queued with its message
        for _ in range(200):
            row = await conn.fetchrow("SELECT id, stream_entry FROM jobs WHERE operation = 'gate' "
                                      "AND status = 'QUEUED' ORDER BY created_at DESC LIMIT 1")
            if row is not None and row["stream_entry"]:
                break
            await asyncio.sleep(0.05)
    assert row is not None and row["stream_entry"]
    await lose_job_streams(api.app)
    worker = Worker(api.app)
    await worker.start()
    try:
        resp = await asyncio.wait_for(waiting, 30)
        err = await error_of(resp, 503, "JOB_LOST")  # typed, at once, not a 504 two minutes later
        assert resp.headers["Retry-After"] == "1" and err["details"]["retryable"] is True
        job = await wait_job(api, h, row["id"])
        assert job["status"] == "FAILED" and job["error"]["code"] == "JOB_LOST"
        # a retry runs anew and succeeds; only that one is metered
        resp = await api.post("/api/v1/tfhe/gate", json=body, headers=h)
        assert resp.status == 200, await resp.text()
    finally:
        await worker.stop()
    async with api.app[DB].acquire() as conn:
        account_id = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", key[:16])
        used = await conn.fetchval("SELECT COALESCE(sum(fcu), 0) FROM usage_events WHERE account_id = $1",
                                   account_id)
    assert used == 1


async def test_a_fast_path_job_its_worker_no_longer_holds_is_failed_not_left_running(
        make_client, service_settings, tfhe_keys):
    """The in-process fast path writes a job already claimed by this process's worker and
    sends no message; if that worker loses it (here: dropped from what it holds, as a crash of
    its batch would), the reconciler fails it instead of leaving it RUNNING for ever."""
    from wavis.service import jobs
    from wavis.service.state import DB, SETTINGS, WORKER

    ck, sk = tfhe_keys
    api = await client(make_client, replace(service_settings, **FAST))
    h = bearer(await api.account())
    sid = await session(api, h, sk)
    # an ordinary request takes the fast path: no stream message, one claim, answered
    resp = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "NOT", "a": b64(ck.encrypt(True))},
                          headers=h)
    assert resp.status == 200, await resp.text()
    job_id = (await resp.json())["job_id"]
    async with api.app[DB].acquire() as conn:
        row = await conn.fetchrow("SELECT status, attempts, stream_entry, worker FROM jobs WHERE id = $1", job_id)
    worker = api.app[WORKER]
    assert row["status"] == "COMPLETED" and row["attempts"] == 1 and row["stream_entry"] is None
    assert row["worker"] == worker.name

    # a job row claimed by this worker that it does not hold (lost in memory)
    async with api.app[DB].acquire() as conn:
        account_id = await conn.fetchval("SELECT account_id FROM jobs WHERE id = $1", job_id)
        spec = jobs.JobSpec(account_id=account_id, kind="tfhe", operation="gate", batch_key=f"tfhe:{sid}",
                            affinity=sid, payload={})
        lost = await jobs.insert(conn, spec, 3600, claimed_by=worker.name, queue=api.app[SETTINGS].redis_prefix)
    job = await wait_job(api, h, lost["id"], timeout=30)
    assert job["status"] == "FAILED" and job["error"]["code"] == "JOB_LOST"


# --- an answer lost after its job completed -----------------------------------------------------

async def _usage(api, key: str) -> int:
    from wavis.service.state import DB

    async with api.app[DB].acquire() as conn:
        account_id = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", key[:16])
        return int(await conn.fetchval("SELECT COALESCE(sum(fcu), 0) FROM usage_events WHERE account_id = $1",
                                       account_id))


async def _lose_stored_answers(api) -> None:
    """The window between a job's completion (metered) and the idempotency record of its answer
    (a PostgreSQL or server crash there, or the client gone): the record was never written."""
    from wavis.service.state import DB

    async with api.app[DB].acquire() as conn:
        await conn.execute("DELETE FROM idempotency_records")


async def test_a_completed_job_whose_answer_was_lost_replays_under_its_idempotency_key_charged_once(
        api, ckks_pair_factory, tfhe_keys):
    from wavis import frame, serialize

    pair = ckks_pair_factory(max_depth=1, index=0)
    key = await api.account()
    h = bearer(key)
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
    key_id = (await resp.json())["key_id"]
    resp = await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": serialize.b64encode(
        serialize.dumps(pair.encrypt([0.25])))}, headers=h)
    ct = (await resp.json())["ciphertext_id"]
    add = {"key_id": key_id, "ciphertext_ids": [ct, ct]}
    first = await api.post("/api/v1/compute/add", json=add, headers={**h, "Idempotency-Key": "add-1"})
    assert first.status == 200
    one = await first.json()
    assert await _usage(api, key) == 1
    await _lose_stored_answers(api)
    again = await api.post("/api/v1/compute/add", json=add, headers={**h, "Idempotency-Key": "add-1"})
    assert again.status == 200, await again.text()
    two = await again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (two["job_id"], two["result_ciphertext_id"]) == (one["job_id"], one["result_ciphertext_id"])
    assert frame.strip_tag(base64.b64decode(two["result_ciphertext"])) == \
        frame.strip_tag(base64.b64decode(one["result_ciphertext"]))
    assert await _usage(api, key) == 1  # charged once
    # the same key with another body (its stored answer gone) is not that job: a new operation
    await _lose_stored_answers(api)
    other = await api.post("/api/v1/compute/add", json={**add, "async": False},
                           headers={**h, "Idempotency-Key": "add-1"})
    assert other.status == 200 and (await other.json())["job_id"] != one["job_id"]
    assert await _usage(api, key) == 2

    # a synchronous TFHE request under an Idempotency-Key keeps its outputs for that replay
    ck, sk = tfhe_keys
    sid = await session(api, h, sk)
    x = b64(ck.encrypt(True))
    gate = {"session_id": sid, "op": "AND", "a": x, "b": x}
    first = await api.post("/api/v1/tfhe/gate", json=gate, headers={**h, "Idempotency-Key": "g-1"})
    assert first.status == 200
    await _lose_stored_answers(api)
    again = await api.post("/api/v1/tfhe/gate", json=gate, headers={**h, "Idempotency-Key": "g-1"})
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["result_b64"] == (await first.json())["result_b64"]
    assert await _usage(api, key) == 3  # 1 + 1 + one AND gate, once


async def test_a_redelivered_synchronous_tfhe_job_that_completed_unseen_is_answered_by_recomputing(
        make_client, service_settings, tfhe_keys):
    """A worker completed a synchronous gate job (row + usage committed) and died before its
    reply: the message is reclaimed, the job is already COMPLETED, its outputs were never
    stored — the reclaiming worker computes them again from the message (deterministic, bit
    for bit) and the waiting request gets its 200, not a 503; nothing is completed or charged
    twice."""
    from wavis.service import jobs, streams
    from wavis.service.state import DB, REDIS
    from wavis.service.worker import Worker

    ck, sk = tfhe_keys
    settings = replace(service_settings, engine="remote", job_reclaim_idle_s=0.6)
    api = await client(make_client, settings)
    key = await api.account()
    h = bearer(key)
    sid = await session(api, h, sk)
    a, b = ck.encrypt(True), ck.encrypt(False)
    waiting = asyncio.ensure_future(api.post("/api/v1/tfhe/gate", json={
        "session_id": sid, "op": "OR", "a": b64(a), "b": b64(b)}, headers=h))
    stream = streams.shard_stream(settings.redis_prefix, streams.shard_of(sid, settings.job_shards))
    redis = api.app[REDIS]
    got = None
    for _ in range(200):  # the "dead" worker reads the message …
        got = await redis.xreadgroup(streams.GROUP, "wrk_dead", {stream: ">"}, count=1)
        if got:
            break
        await asyncio.sleep(0.05)
    assert got
    fields = got[0][1][0][1]
    job_id = fields[b"job"].decode()
    async with api.app[DB].acquire() as conn:  # … claims and completes the job, and dies unanswered
        row = (await jobs.claim(conn, [job_id], "wrk_dead"))[job_id]
        job = jobs.job_from_row(row, jobs.decode_payload(fields[b"payload"]))
        assert await jobs.complete_job(conn, job, jobs.Outcome(result={"levels": 1, "gates": 1}))
    assert await _usage(api, key) == 1

    worker = Worker(api.app)
    await worker.start()
    try:
        resp = await asyncio.wait_for(waiting, 30)
    finally:
        await worker.stop()
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["job_id"] == job_id
    res = tfhe.serialize.load_ciphertext(base64.b64decode(out["result_b64"]), key=ck)
    assert bool(ck.decrypt(res)) is True
    from wavis import frame

    assert frame.strip_tag(base64.b64decode(out["result_b64"])) == tfhe.serialize.dumps(sk.gate("OR", a, b))
    assert worker.replayed == 1 and worker.completed == 0
    assert await _usage(api, key) == 1  # completed and charged once


async def test_without_the_fast_path_a_synchronous_job_goes_through_the_stream(make_client, service_settings,
                                                                              tfhe_keys):
    from wavis.service.state import DB

    ck, sk = tfhe_keys
    api = await client(make_client, replace(service_settings, engine_fast_path=False))
    h = bearer(await api.account())
    sid = await session(api, h, sk)
    resp = await api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "NOT", "a": b64(ck.encrypt(True))},
                          headers=h)
    assert resp.status == 200, await resp.text()
    async with api.app[DB].acquire() as conn:
        row = await conn.fetchrow("SELECT status, attempts, stream_entry FROM jobs WHERE id = $1",
                                  (await resp.json())["job_id"])
    assert row["status"] == "COMPLETED" and row["attempts"] == 1 and row["stream_entry"]


async def test_a_fast_path_job_whose_end_cannot_be_written_answers_retryable_at_once(
        make_client, service_settings, tfhe_keys, monkeypatch):
    """PostgreSQL unreachable when a fast-path job's end is written: no message holds the job, so
    its waiter gets a retryable 502 at once (not a 504 after the request timeout); the row, left
    RUNNING, is failed by the reconciler (uncharged) once PostgreSQL answers again."""
    from wavis.service import jobs
    from wavis.service.state import DB

    ck, sk = tfhe_keys
    api = await client(make_client, replace(service_settings, **FAST))
    key = await api.account()
    h = bearer(key)
    sid = await session(api, h, sk)
    x = b64(ck.encrypt(True))

    async def down(*_a, **_k):
        raise ConnectionError("postgres is gone")

    monkeypatch.setattr(jobs, "complete_jobs", down)
    monkeypatch.setattr(jobs, "complete_job", down)
    resp = await asyncio.wait_for(api.post("/api/v1/tfhe/gate", json={"session_id": sid, "op": "AND", "a": x, "b": x},
                                           headers=h), 20)
    err = await error_of(resp, 502, "UPSTREAM_UNAVAILABLE")
    assert err["details"]["retryable"] is True
    monkeypatch.undo()
    async with api.app[DB].acquire() as conn:
        job_id = await conn.fetchval(
            "SELECT id FROM jobs WHERE operation = 'gate' AND status = 'RUNNING' AND account_id = "
            "(SELECT account_id FROM api_keys WHERE prefix = $1)", key[:16])
    assert job_id is not None
    job = await wait_job(api, h, job_id, timeout=30)
    assert job["status"] == "FAILED" and job["error"]["code"] == "JOB_LOST"
    assert await _usage(api, key) == 0
