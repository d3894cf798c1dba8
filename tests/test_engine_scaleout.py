"""Scale-out (issue 13), slow: real processes on loopback against the test PostgreSQL/Redis.

* two ``wavis worker`` + two ``wavis serve --engine remote`` serve 500 mixed concurrent
  requests (TFHE gates and circuits, CKKS add/multiply/negate) with no loss, no duplicate and
  no wrong result, and every job completes exactly once (a completion hook counts them);
* a worker SIGKILLed while it holds a batch: its messages are reclaimed (XAUTOCLAIM) by the
  other worker and every job still completes exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wavis import serialize, tfhe
from conftest import TEST_PEPPER, TEST_REDIS_PREFIX, bearer

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.timeout(300)]

HERE = Path(__file__).parent
PRESET = "fast_128"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(ct) -> str:
    return base64.b64encode(tfhe.serialize.dumps(ct)).decode()


class Cluster:
    """API and worker processes sharing one database, one Redis prefix and one data dir."""

    def __init__(self, tmp: Path, database_url: str, redis_url: str, **env) -> None:
        self.tmp = tmp
        self.prefix = f"{TEST_REDIS_PREFIX}so{secrets.token_hex(3)}:"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("WAVIS_")},
                    "WAVIS_DATABASE_URL": database_url, "WAVIS_REDIS_URL": redis_url,
                    "WAVIS_REDIS_PREFIX": self.prefix, "WAVIS_API_KEY_PEPPER": TEST_PEPPER.decode(),
                    "WAVIS_MASTER_KEY": secrets.token_hex(32), "WAVIS_DATA_DIR": str(tmp / "data"),
                    "WAVIS_LOG_FORMAT": "text", "WAVIS_COMPUTE_THREADS": "1", "WAVIS_JOB_RECLAIM_S": "2",
                    "WAVIS_ALLOW_INSECURE_PARAMS": "1",  # small `testing` keys (issue 15: refused by default)
                    "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: list[int] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def api(self, name: str) -> int:
        port = free_port()
        self._start(name, [sys.executable, "-m", "wavis.cli", "serve", "--engine", "remote", "--port", str(port)])
        self.ports.append(port)
        return port

    def worker(self, name: str) -> None:
        self._start(name, [sys.executable, str(HERE / "engine_worker_with_hook.py"), name])

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def worker_id(self, name: str) -> str | None:
        for line in self.log(name).splitlines():
            if " worker wrk_" in line and " started" in line:
                return line.split(" worker ", 1)[1].split()[0]
        return None

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


async def _ready(session, cluster: Cluster, workers: int) -> None:
    import redis.asyncio as aioredis

    deadline = time.monotonic() + 60
    for port in cluster.ports:
        while True:
            for name, p in cluster.procs.items():
                assert p.poll() is None, f"{name} exited:\n{cluster.log(name)[-3000:]}"
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "API did not come up"
            await asyncio.sleep(0.3)
    r = aioredis.from_url(cluster.env["WAVIS_REDIS_URL"])
    try:
        while len(await r.zrangebyscore(cluster.prefix + "workers", time.time() - 5, "+inf")) < workers:
            for name, p in cluster.procs.items():
                assert p.poll() is None, f"{name} exited:\n{cluster.log(name)[-3000:]}"
            assert time.monotonic() < deadline, "workers did not come up"
            await asyncio.sleep(0.3)
    finally:
        await r.aclose()


async def _db(url: str):
    import asyncpg

    return await asyncpg.connect(url)


async def _account(database_url: str) -> str:
    from wavis.service import db as service_db
    from wavis.service import repo
    from wavis.service.access import Role

    conn = await _db(database_url)
    try:
        await service_db.migrate(conn)
        await conn.execute("CREATE TABLE IF NOT EXISTS engine_test_completions "
                           "(job_id text NOT NULL, attempt int NOT NULL, status text NOT NULL, worker text)")
        new = await repo.create_account(conn, TEST_PEPPER, email=None, plan="enterprise", role=Role.DEVELOPER,
                                        environment="test")
        return new.api_key
    finally:
        await conn.close()


async def _completions(database_url: str, job_ids: list[str]) -> dict[str, list]:
    conn = await _db(database_url)
    try:
        rows = await conn.fetch("SELECT job_id, attempt, status, worker FROM engine_test_completions "
                                "WHERE job_id = ANY($1::text[])", job_ids)
        jobs = await conn.fetch("SELECT id, status, attempts FROM jobs WHERE id = ANY($1::text[])", job_ids)
    finally:
        await conn.close()
    out: dict[str, list] = {j: [] for j in job_ids}
    for r in rows:
        out[r["job_id"]].append((r["attempt"], r["status"], r["worker"]))
    return out, {j["id"]: (j["status"], j["attempts"]) for j in jobs}


async def test_two_workers_two_apis_500_mixed_requests(tmp_path, service_database_url, service_redis_url,
                                                       ckks_pair_factory):
    import aiohttp

    cluster = Cluster(tmp_path, service_database_url, service_redis_url, WAVIS_JOB_RECLAIM_S="10")
    key = await _account(service_database_url)
    h = bearer(key)
    ck, sk = tfhe.keygen(PRESET, seed=99)
    pair = ckks_pair_factory(max_depth=1, index=0)
    try:
        cluster.worker("w1")
        cluster.worker("w2")
        cluster.api("a1")
        cluster.api("a2")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=96),
                                         timeout=aiohttp.ClientTimeout(total=240)) as s:
            await _ready(s, cluster, workers=2)
            bases = [f"http://127.0.0.1:{p}/api/v1" for p in cluster.ports]

            async def post(i, path, body):
                async with s.post(bases[i % 2] + path, json=body, headers=h) as r:
                    return r.status, await r.json()

            # sessions until both workers own one (each session's jobs go to its shard's owner)
            from wavis.service import streams

            ids = sorted(cluster.worker_id(n) for n in ("w1", "w2"))
            sids, owners = [], set()
            for attempt in range(16):
                st, sess = await post(attempt, "/tfhe/eval-session", {"eval_key_b64": b64(sk)})
                assert st == 201, sess
                owner = streams.owner_of(streams.shard_of(sess["session_id"], 8), ids)
                if owner not in owners or attempt == 15:
                    sids.append(sess["session_id"])
                    owners.add(owner)
                if len(owners) == 2:
                    break
            st, kmeta = await post(1, "/keys/upload", pair.upload_body())
            assert st == 200, kmeta
            key_id = kmeta["key_id"]
            rng = np.random.default_rng(5)
            n = pair.params.slot_count
            plain = [rng.uniform(-1, 1, n) for _ in range(6)]
            ct_ids = []
            for i, v in enumerate(plain):
                st, c = await post(i, "/ciphertexts", {"key_id": key_id, "ciphertext_b64": serialize.b64encode(
                    serialize.dumps(pair.encrypt(v)))})
                assert st == 201, c
                ct_ids.append(c["ciphertext_id"])
            enc = {bit: [b64(ck.encrypt(bit)) for _ in range(4)] for bit in (False, True)}
            truth = {"NAND": lambda a, b: not (a and b), "AND": lambda a, b: a and b, "OR": lambda a, b: a or b,
                     "XOR": lambda a, b: a != b, "NOR": lambda a, b: not (a or b), "XNOR": lambda a, b: a == b}
            ops = list(truth)

            reqs = []  # (path, body, checker)
            for i in range(500):
                kind = i % 10
                if kind < 6:  # single gates
                    op = ops[i % len(ops)]
                    x, y = bool(rng.integers(2)), bool(rng.integers(2))
                    body = {"session_id": sids[i % len(sids)], "op": op, "a": enc[x][i % 4], "b": enc[y][(i + 1) % 4]}
                    reqs.append(("/tfhe/gate", body, ("gate", [truth[op](x, y)])))
                elif kind == 6:  # a small circuit
                    x, y = bool(rng.integers(2)), bool(rng.integers(2))
                    gates = [{"op": "XOR", "a": enc[x][0], "b": enc[y][1]}, {"op": "AND", "a": enc[x][2],
                             "b": enc[y][3]}, {"op": "OR", "a": "$0", "b": "$1"}]
                    reqs.append(("/tfhe/batch", {"session_id": sids[i % len(sids)], "gates": gates},
                                 ("batch", [x != y, x and y, (x != y) or (x and y)])))
                else:  # CKKS
                    a, b = int(rng.integers(6)), int(rng.integers(6))
                    op = ("add", "multiply", "negate")[kind - 7]
                    ids = [ct_ids[a]] if op == "negate" else [ct_ids[a], ct_ids[b]]
                    want = {"add": plain[a] + plain[b], "multiply": plain[a] * plain[b], "negate": -plain[a]}[op]
                    reqs.append((f"/compute/{op}", {"key_id": key_id, "ciphertext_ids": ids}, ("ckks", want)))

            t0 = time.monotonic()
            results = await asyncio.gather(*(post(i, p, b) for i, (p, b, _) in enumerate(reqs)))
            elapsed = time.monotonic() - t0
            job_ids = []
            for (path, body, (kind, want)), (st, out) in zip(reqs, results):
                assert st == 200, (path, out)
                job_ids.append(out["job_id"])
                if kind == "gate":
                    got = [bool(ck.decrypt(tfhe.serialize.load_ciphertext(base64.b64decode(out["result_b64"]),
                                                                          key=ck)))]
                elif kind == "batch":
                    got = [bool(ck.decrypt(tfhe.serialize.load_ciphertext(base64.b64decode(t), key=ck)))
                           for t in out["results_b64"]]
                else:
                    ct = serialize.loads(serialize.b64decode(out["result_ciphertext"]),
                                         expected_type=serialize.Ciphertext, params=pair.params)
                    got = pair.decrypt(ct).real
                    assert np.max(np.abs(got - want)) < 1e-3, path
                    continue
                assert got == want, (path, body)
            assert len(set(job_ids)) == 500  # no duplicate answers
            done, rows = await _completions(service_database_url, job_ids)
            assert all(rows[j] == ("COMPLETED", 1) for j in job_ids)
            assert all(len(done[j]) == 1 for j in job_ids), [d for d in done.items() if len(d[1]) != 1][:3]
            workers_used = {w for d in done.values() for (_, _, w) in d}
            print(f"500 mixed requests in {elapsed:.1f} s over workers {sorted(workers_used)}")
            assert workers_used == {"w1", "w2"}  # both workers served (each its own sessions)
    finally:
        cluster.stop()


async def test_worker_sigkilled_mid_batch_every_job_completes_exactly_once(tmp_path, service_database_url,
                                                                          service_redis_url):
    import aiohttp
    import redis.asyncio as aioredis

    # big, slow batches so the kill lands inside one
    cluster = Cluster(tmp_path, service_database_url, service_redis_url,
                      WAVIS_BATCH_MAX_SIZE="16", WAVIS_BATCH_MAX_DELAY_MS="100")
    key = await _account(service_database_url)
    h = bearer(key)
    ck, sk = tfhe.keygen(PRESET, seed=77)
    try:
        cluster.worker("w1")
        cluster.worker("w2")
        cluster.api("a1")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            await _ready(s, cluster, workers=2)
            base = f"http://127.0.0.1:{cluster.ports[0]}/api/v1"
            async with s.post(base + "/tfhe/eval-session", json={"eval_key_b64": b64(sk)}, headers=h) as r:
                sid = (await r.json())["session_id"]
            bits = [bool(b) for b in np.random.default_rng(1).integers(0, 2, 48)]
            cts = [b64(ck.encrypt(b)) for b in bits]

            async def submit(i):
                async with s.post(base + "/tfhe/gate", json={"session_id": sid, "op": "NOT", "a": cts[i],
                                                            "async": True}, headers=h) as r:
                    assert r.status == 202, await r.text()
                    return (await r.json())["job_id"]

            job_ids = await asyncio.gather(*(submit(i) for i in range(len(cts))))
            # the worker holding this session's shard is running a batch: find it and kill it
            conn = await _db(service_database_url)
            try:
                deadline = time.monotonic() + 30
                victim = None
                while victim is None:
                    running = await conn.fetch("SELECT DISTINCT worker FROM jobs WHERE id = ANY($1::text[]) "
                                               "AND status = 'RUNNING'", job_ids)
                    names = {cluster.worker_id(n): n for n in ("w1", "w2")}
                    for r in running:
                        victim = names.get(r["worker"])
                    assert time.monotonic() < deadline, "no batch started"
                    await asyncio.sleep(0.02)
                held = await conn.fetchval("SELECT count(*) FROM jobs WHERE id = ANY($1::text[]) "
                                           "AND status = 'RUNNING'", job_ids)
                cluster.procs[victim].send_signal(signal.SIGKILL)
                cluster.procs[victim].wait(10)
                assert held > 0
                # every job completes (the survivor reclaims after 2 s idle, and takes the
                # victim's shard once its heartbeat is 5 s old)
                deadline = time.monotonic() + 90
                while True:
                    left = await conn.fetchval("SELECT count(*) FROM jobs WHERE id = ANY($1::text[]) "
                                               "AND status <> 'COMPLETED'", job_ids)
                    if left == 0:
                        break
                    assert time.monotonic() < deadline, f"{left} jobs never completed"
                    await asyncio.sleep(0.2)
                rows = await conn.fetch("SELECT id, attempts, result FROM jobs WHERE id = ANY($1::text[])", job_ids)
            finally:
                await conn.close()
            done, _ = await _completions(service_database_url, job_ids)
            assert all(len(done[j]) == 1 for j in job_ids), [d for d in done.items() if len(d[1]) != 1][:3]
            reclaimed = [r for r in rows if r["attempts"] > 1]
            assert reclaimed, "no job was taken over from the killed worker"
            survivor = {"w1": "w2", "w2": "w1"}[victim]
            assert all(done[r["id"]][0][2] == survivor for r in reclaimed)
            by_id = {r["id"]: r for r in rows}
            for j, bit in zip(job_ids, bits):
                out = json.loads(by_id[j]["result"])["results_b64"][0]  # a plain connection: jsonb as text
                assert bool(ck.decrypt(tfhe.serialize.load_ciphertext(base64.b64decode(out), key=ck))) is (not bit)
            r = aioredis.from_url(service_redis_url)
            try:
                from wavis.service import streams

                deadline = time.monotonic() + 10  # acknowledged and deleted right after the commit
                while await streams.queue_depth(r, cluster.prefix, 8) != 0:
                    assert time.monotonic() < deadline, "messages left on the job streams"
                    await asyncio.sleep(0.1)
            finally:
                await r.aclose()
    finally:
        cluster.stop()


@pytest.mark.timeout(480)
def test_the_end_to_end_suite_passes_with_a_remote_engine_and_two_workers():
    """The service's end-to-end tests (jobs, TFHE, CKKS compute) once more with every app as
    ``wavis serve --engine remote`` and two separate workers (conftest WAVIS_TEST_ENGINE; run
    more files by hand: ``WAVIS_TEST_ENGINE=remote ./dev test tests/test_service_*.py``)."""
    files = ["test_service_jobs.py", "test_service_tfhe.py", "test_service_compute.py"]
    env = {**os.environ, "WAVIS_TEST_ENGINE": "remote"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *[str(HERE / f) for f in files]], env=env, cwd=HERE.parent, capture_output=True,
                          text=True, timeout=450)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1]
