"""Round trips to PostgreSQL and Redis of one synchronous TFHE gate request (issue 13's
low-load p99): the service in this process (aiohttp test server, embedded engine), every
asyncpg statement and every Redis command (a pipeline counts once) counted per request,
for the in-process fast path and for the stream path (the path a request takes when the
fast path is unavailable: remote workers, or the local worker's prefetch full).

    .venv/bin/python benchmarks/request_roundtrips.py [--requests 50] [--profile /tmp/rt.prof]

Needs PostgreSQL and Redis (``WAVIS_BENCH_DATABASE_URL``, ``WAVIS_BENCH_REDIS_URL``, as
bench_engine.py); a database ``wavis_rt_<hex>`` is created and dropped. Prints, per path, the
round trips per request by kind (statement text, shortened), the latency p50/p99 at
concurrency 1 (wall clock; an upper bound on a loaded host) and the CPU time of the whole
process per request (the aiohttp client, the server and the gate's compute thread together),
which other load does not inflate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

PG = os.environ.get("WAVIS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("WAVIS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PEPPER = b"wavis-bench-pepper-" + b"0" * 40


class Counter:
    """Counts asyncpg statements and Redis commands while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.pg: collections.Counter = collections.Counter()
        self.redis: collections.Counter = collections.Counter()

    def install(self) -> None:
        import asyncpg
        from redis.asyncio.client import Pipeline, Redis

        me = self

        def wrap_pg(name):
            orig = getattr(asyncpg.connection.Connection, name)

            async def f(conn, query, *a, **kw):
                if me.on:
                    me.pg[" ".join(str(query).split())[:70]] += 1
                return await orig(conn, query, *a, **kw)
            setattr(asyncpg.connection.Connection, name, f)

        for name in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
            wrap_pg(name)
        orig_cmd = Redis.execute_command

        async def cmd(self, *args, **kw):
            if me.on and not isinstance(self, Pipeline):  # (BEGIN/COMMIT are statements: counted above)
                me.redis[str(args[0])] += 1
            return await orig_cmd(self, *args, **kw)
        Redis.execute_command = cmd
        orig_pipe = Pipeline.execute

        async def pipe(self, *a, **kw):
            if me.on:
                me.redis["PIPELINE(" + ",".join(sorted({str(c[0][0]) for c in self.command_stack})) + ")"] += 1
            return await orig_pipe(self, *a, **kw)
        Pipeline.execute = pipe


async def run(args) -> dict:
    import asyncpg
    from aiohttp.test_utils import TestClient, TestServer

    from wavis import tfhe
    from wavis.service import create_app, repo
    from wavis.service import db as service_db
    from wavis.service.access import Role
    from wavis.service.settings import Settings
    from wavis.service.worker import Worker

    counter = Counter()
    counter.install()
    name = f"wavis_rt_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    db_url = urlunsplit(urlsplit(PG)._replace(path="/" + name))
    prefix = f"wavis_rt_{secrets.token_hex(4)}:"
    out: dict = {"requests": args.requests}
    try:
        conn = await asyncpg.connect(db_url)
        await service_db.migrate(conn)
        new = await repo.create_account(conn, PEPPER, email=None, plan="enterprise", role=Role.DEVELOPER,
                                        environment="test")
        await conn.close()
        ck, sk = tfhe.keygen("fast_128", seed=5)
        enc = lambda v: base64.b64encode(tfhe.serialize.dumps(ck.encrypt(v))).decode()  # noqa: E731
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), database_url=db_url, redis_url=REDIS, redis_prefix=prefix,
                                api_key_pepper=PEPPER, compute_threads=2, batch_max_delay_ms=args.delay_ms)
            app = create_app(settings)
            async with TestClient(TestServer(app)) as api:
                h = {"Authorization": f"Bearer {new.api_key}"}
                r = await api.post("/api/v1/tfhe/eval-session", headers=h, json={
                    "eval_key_b64": base64.b64encode(tfhe.serialize.dumps(sk)).decode()})
                sid = (await r.json())["session_id"]
                body = {"session_id": sid, "op": "NAND", "a": enc(True), "b": enc(False)}
                for path in ("fast", "stream"):
                    if path == "stream":  # what a request does without the fast path
                        Worker.accepts_local = lambda self: False
                    for _ in range(5):  # warm
                        assert (await api.post("/api/v1/tfhe/gate", json=body, headers=h)).status == 200
                    counter.pg.clear()
                    counter.redis.clear()
                    lat, compute = [], []
                    prof = None
                    if args.profile and path == "fast":
                        import cProfile

                        # timed by the thread's CPU clock: where the event loop's CPU goes, not
                        # where it waits (a wall-clock profile shows mostly epoll and sends
                        # descheduled on a loaded host)
                        prof = cProfile.Profile(time.thread_time)
                        prof.enable()
                    cpu0, loop0 = time.process_time(), time.thread_time()
                    for _ in range(args.requests):
                        counter.on = True
                        t0 = time.perf_counter()
                        r = await api.post("/api/v1/tfhe/gate", json=body, headers=h)
                        got = await r.json()
                        lat.append((time.perf_counter() - t0) * 1e3)
                        counter.on = False
                        assert r.status == 200, got
                        compute.append(got["compute_time_ms"])
                        await asyncio.sleep(0.02)  # let the worker's background round trips settle
                    n = args.requests
                    # CPU of this whole process (client, server, worker threads) per request, less
                    # the pauses between requests: unlike wall clock, not inflated by other load
                    cpu_ms = (time.process_time() - cpu0) * 1e3 / n
                    # the event loop's thread alone: the Python of the server and the client (the
                    # gate itself runs on the compute pool's threads)
                    loop_ms = (time.thread_time() - loop0) * 1e3 / n
                    if prof is not None:
                        prof.disable()
                        prof.dump_stats(args.profile)
                    res = {
                        "process_cpu_ms_per_request": round(cpu_ms, 2),
                        "event_loop_cpu_ms_per_request": round(loop_ms, 2),
                        "pg_per_request": round(sum(counter.pg.values()) / n, 2),
                        "redis_per_request": round(sum(counter.redis.values()) / n, 2),
                        "pg": {k: round(v / n, 2) for k, v in counter.pg.most_common()},
                        "redis": {k: round(v / n, 2) for k, v in counter.redis.most_common()},
                        "p50_ms": round(float(np.percentile(lat, 50)), 2),
                        "p99_ms": round(float(np.percentile(lat, 99)), 2),
                        "compute_p50_ms": round(float(np.percentile(compute, 50)), 2),
                    }
                    out[path] = res
                    print(f"{path}: {res['pg_per_request']} PostgreSQL + {res['redis_per_request']} Redis round trips "
                          f"per request; p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms (gate compute "
                          f"p50 {res['compute_p50_ms']} ms); process CPU {res['process_cpu_ms_per_request']} ms "
                          f"per request (client + server + gate), of which the event loop's thread "
                          f"{res['event_loop_cpu_ms_per_request']} ms (client + server Python)", flush=True)
                    for k, v in res["pg"].items():
                        print(f"   pg    {v:5.2f}  {k}")
                    for k, v in res["redis"].items():
                        print(f"   redis {v:5.2f}  {k}")
    finally:
        admin = await asyncpg.connect(PG)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        import redis.asyncio as aioredis

        r = aioredis.from_url(REDIS)
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--delay-ms", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None,
                    help="write a cProfile (CPU time of the event loop's thread) of the fast path's measured requests here")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
