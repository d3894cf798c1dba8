"""The compute engine under load (issue 13): TFHE gate requests through the real service.

For each batcher setting (``WAVIS_BATCH_MAX_SIZE`` ∈ {1, 8, 32, 128} × ``WAVIS_BATCH_MAX_DELAY_MS``
∈ {0, 1, 5}) a ``wavis serve`` process (embedded engine, external PostgreSQL/Redis on loopback)
is started and driven by a closed-loop load generator (``aiohttp`` client, C concurrent
clients, each sending its next request when the previous answered; bounded by time and count):

* single-gate requests (``POST /tfhe/gate``, NAND) at concurrency 1 (low load) … 64
  (saturation): requests/s and p50/p99 latency;
* ``POST /tfhe/batch`` requests of B independent NAND gates at saturation: gates/s, compared
  with the batched library called directly (``ServerKey.evaluate_batch`` of B gates, same
  process count, same thread setting: all cores) measured in the same run; also in CPU time
  (``cpu_ratio``: the library's process CPU per call over the server's per request of B gates),
  which other load on a shared host does not skew the way it skews gates/s.

Targets (issue 13, this 2-core machine): at saturation the service delivers ≥ 80 % of the
library's gates/s on /tfhe/batch; at concurrency 1, p99 < 2 × one gate's compute time + the
queue delay. Prints a table, writes JSON and a PNG (throughput against p99 latency).

    .venv/bin/python benchmarks/bench_engine.py              # full grid (~6–8 min here)
    .venv/bin/python benchmarks/bench_engine.py --quick      # sizes 1, 32; delays 0, 1 (~2 min)
    BENCH_NO_FAST_PATH=1 .venv/bin/python benchmarks/bench_engine.py …  # sync jobs via the stream
    .venv/bin/python benchmarks/bench_engine.py --quick --baseline-python /work/main/.venv/bin/python
        # before/after at low load: two servers, single gates alternating between them

Needs PostgreSQL and Redis (``WAVIS_BENCH_DATABASE_URL``, default
postgresql://postgres@127.0.0.1:5432/postgres; ``WAVIS_BENCH_REDIS_URL``, default
redis://127.0.0.1:6379/14); a database ``wavis_bench_<hex>`` is created and dropped. The plot
needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from wavis.bench.machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("WAVIS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("WAVIS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PEPPER = "wavis-bench-pepper-" + "0" * 40
PRESET = "fast_128"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def proc_cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` (with its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[13])) / tick, (int(fields[12]) + int(fields[14])) / tick


def thread_cpu_s(pid: int, tid: int) -> float:
    """CPU seconds (user + system) of thread ``tid`` of process ``pid`` (the main thread: ``tid`` =
    ``pid``, the server's event loop; the gate itself runs on the compute pool's threads)."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split_stats(lat: list[float], compute: list[float]) -> dict:
    """p50/p99 of the gate's compute time as the server reports it (``compute_time_ms``: the
    pool hand-off and the evaluation) and of the rest of each request's latency (latency minus
    that: the service's own path, its round trips and the waits for a CPU), in ms."""
    if not compute or len(compute) != len(lat):
        return {}
    outside = [t - c for t, c in zip(lat, compute)]
    return {"compute_p50_ms": round(pct(compute, 50), 2), "compute_p99_ms": round(pct(compute, 99), 2),
            "outside_p50_ms": round(pct(outside, 50), 2), "outside_p99_ms": round(pct(outside, 99), 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(ct) -> str:
    from wavis import tfhe

    return base64.b64encode(tfhe.serialize.dumps(ct)).decode()


# --- the library baseline ----------------------------------------------------------------------

def library_gates_per_s(sk, cts, batch: int, seconds: float) -> tuple[float, float, float]:
    """(gates/s, wall ms per call, process CPU ms per call) of ``evaluate_batch`` on ``batch``
    NAND gates, all cores."""
    a = [cts[i % len(cts)] for i in range(batch)]
    b = [cts[(i + 1) % len(cts)] for i in range(batch)]
    sk.evaluate_batch(["NAND"] * batch, a, b)  # warm
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        sk.evaluate_batch(["NAND"] * batch, a, b)
        calls += 1
        el = time.perf_counter() - t0
        if el >= seconds and calls >= 3:
            break
    return calls * batch / el, el / calls * 1e3, (time.process_time() - c0) / calls * 1e3


# --- the service ---------------------------------------------------------------------------------

class Server:
    def __init__(self, db_url: str, prefix: str, data_dir: Path, max_size: int, delay_ms: float,
                 python: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        """``wavis serve`` on a free port; ``python``: the interpreter (its environment's WAVIS
        checkout runs: ``--baseline-python``), default this one."""
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAVIS_")}
        env.update(WAVIS_DATABASE_URL=db_url, WAVIS_REDIS_URL=REDIS, WAVIS_REDIS_PREFIX=prefix,
                   WAVIS_API_KEY_PEPPER=PEPPER, WAVIS_MASTER_KEY="11" * 32, WAVIS_DATA_DIR=str(data_dir),
                   WAVIS_LOG_LEVEL="WARNING", WAVIS_BATCH_MAX_SIZE=str(max_size),
                   WAVIS_BATCH_MAX_DELAY_MS=str(delay_ms), WAVIS_JOB_QUEUE_MAX="4096",
                   WAVIS_JOB_QUEUE_PER_ACCOUNT="4096",
                   WAVIS_ENGINE_FAST_PATH="0" if os.environ.get("BENCH_NO_FAST_PATH") else "1")
        env.update(extra_env or {})
        self.log = open(data_dir / f"serve-{max_size}-{delay_ms}{'-baseline' if python else ''}.log", "wb")
        self.proc = subprocess.Popen([python or sys.executable, *(["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []), "-m", "wavis.cli", "serve", "--port", str(self.port),
                                      "--log-level", "WARNING"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=data_dir)  # not this checkout: `-m` puts the cwd first on sys.path
        self.base = f"http://127.0.0.1:{self.port}/api/v1"

    async def ready(self, session) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("wavis serve exited; see its log")
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("wavis serve did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def closed_loop(session, url: str, headers: dict, bodies: list[dict], concurrency: int, seconds: float,
                      max_requests: int, server_pid: int | None = None) -> dict:
    """``concurrency`` clients, each posting its next request as soon as the previous answered,
    for ``seconds`` (and at most ``max_requests`` in all). Latencies of 200s only; other
    statuses counted. With ``server_pid``: the server process's CPU time per answered request
    (ms, user + system; other load on the host does not inflate it) and the 1-minute load
    average at the end."""
    lat: list[float] = []
    compute: list[float] = []
    errors: dict[int, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal sent
        i = k
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            t0 = time.perf_counter()
            async with session.post(url, json=bodies[i % len(bodies)], headers=headers) as r:
                raw = await r.read()
                if r.status == 200:
                    lat.append((time.perf_counter() - t0) * 1e3)
                    compute.append(float(json.loads(raw).get("compute_time_ms") or 0.0))
                else:
                    errors[r.status] = errors.get(r.status, 0) + 1
            i += concurrency

    cpu0 = proc_cpu_s(server_pid) if server_pid else None
    loop0 = thread_cpu_s(server_pid, server_pid) if server_pid else None
    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    el = time.perf_counter() - t0
    out = {"concurrency": concurrency, "requests": len(lat), "seconds": round(el, 3),
           "rps": round(len(lat) / el, 2), "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
           "mean_ms": round(statistics.fmean(lat), 2) if lat else None, "errors": errors, **split_stats(lat, compute)}
    if cpu0 is not None:
        cpu1, n = proc_cpu_s(server_pid), max(1, len(lat))
        out["server_cpu_ms_per_request"] = round((sum(cpu1) - sum(cpu0)) * 1e3 / n, 2)
        out["server_user_ms_per_request"] = round((cpu1[0] - cpu0[0]) * 1e3 / n, 2)
        out["server_sys_ms_per_request"] = round((cpu1[1] - cpu0[1]) * 1e3 / n, 2)
        # the event loop's thread alone: the server's Python per request outside the gate's compute
        out["server_loop_cpu_ms_per_request"] = round((thread_cpu_s(server_pid, server_pid) - loop0) * 1e3 / n, 2)
        out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return out


async def bench_config(args, db_url, prefix, data_dir, key, sk_b64, cts, max_size, delay_ms, batch_sizes):
    import aiohttp

    server = Server(db_url, prefix, data_dir, max_size, delay_ms,
                    extra_env=dict(kv.split("=", 1) for kv in args.this_env))
    out = {"max_size": max_size, "delay_ms": delay_ms, "gate": [], "batch": []}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                         timeout=aiohttp.ClientTimeout(total=120)) as s:
            await server.ready(s)
            h = {"Authorization": f"Bearer {key}"}
            async with s.post(server.base + "/tfhe/eval-session", json={"eval_key_b64": sk_b64}, headers=h) as r:
                sid = (await r.json())["session_id"]
            gate_bodies = [{"session_id": sid, "op": "NAND", "a": cts[i % len(cts)], "b": cts[(i + 1) % len(cts)]}
                           for i in range(64)]
            await closed_loop(s, server.base + "/tfhe/gate", h, gate_bodies, 2, 0.5, 20)  # warm: key load
            for c in args.concurrency:
                res = await closed_loop(s, server.base + "/tfhe/gate", h, gate_bodies, c, args.seconds, 20_000,
                                        server.proc.pid)
                out["gate"].append(res)
                print(f"  size {max_size:>3} delay {delay_ms:>3g} ms  gate  c={c:<3} {res['rps']:>8.1f} req/s  "
                      f"p50 {res['p50_ms']:>7.1f} ms  p99 {res['p99_ms']:>7.1f} ms  "
                      f"(outside the gate p50 {res.get('outside_p50_ms', float('nan')):.1f} p99 "
                      f"{res.get('outside_p99_ms', float('nan')):.1f})  "
                      f"server CPU {res['server_cpu_ms_per_request']:>6.1f} ms/req (sys {res['server_sys_ms_per_request']:.1f}, "
                      f"event loop {res['server_loop_cpu_ms_per_request']:.1f})  load {res['loadavg_1m']:.1f}  "
                      f"{res['errors'] or ''}", flush=True)
            for b in batch_sizes:
                bodies = [{"session_id": sid, "gates": [{"op": "NAND", "a": cts[(i + j) % len(cts)],
                                                         "b": cts[(i + j + 1) % len(cts)]} for j in range(b)]}
                          for i in range(4)]
                res = await closed_loop(s, server.base + "/tfhe/batch", h, bodies, args.batch_concurrency,
                                        args.seconds, 10_000, server.proc.pid)
                res["gates_per_request"] = b
                res["gates_per_s"] = round(res["rps"] * b, 1)
                out["batch"].append(res)
                print(f"  size {max_size:>3} delay {delay_ms:>3g} ms  batch B={b:<4} {res['gates_per_s']:>8.1f} "
                      f"gates/s  p50 {res['p50_ms']:>7.1f} ms  p99 {res['p99_ms']:>7.1f} ms", flush=True)
    finally:
        server.stop()
    return out


async def ab_config(args, db_url, prefix, data_dir, key, sk_b64, cts, max_size, delay_ms) -> dict:
    """Low load, before/after: this checkout's server and ``--baseline-python``'s (another
    checkout, e.g. main's) side by side on one database (each its own Redis prefix), one client
    sending single gates to them in alternation (the order swapped every round), so both see
    concurrency 1 under the same host load at the same moments."""
    import aiohttp

    servers = {"this": Server(db_url, prefix + "a:", data_dir, max_size, delay_ms,
                              extra_env=dict(kv.split("=", 1) for kv in args.this_env)),
               "baseline": Server(db_url, prefix + "b:", data_dir, max_size, delay_ms, args.baseline_python,
                                  dict(kv.split("=", 1) for kv in args.baseline_env))}
    lat: dict[str, list[float]] = {k: [] for k in servers}
    compute: dict[str, list[float]] = {k: [] for k in servers}
    errors: dict[str, dict[int, int]] = {k: {} for k in servers}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            h = {"Authorization": f"Bearer {key}"}
            bodies = {}
            for name, server in servers.items():
                await server.ready(s)
                async with s.post(server.base + "/tfhe/eval-session", json={"eval_key_b64": sk_b64}, headers=h) as r:
                    sid = (await r.json())["session_id"]
                bodies[name] = [{"session_id": sid, "op": "NAND", "a": cts[i % len(cts)],
                                 "b": cts[(i + 1) % len(cts)]} for i in range(64)]
                await closed_loop(s, server.base + "/tfhe/gate", h, bodies[name], 2, 0.5, 20)  # warm: key load
            cpu0 = {k: proc_cpu_s(v.proc.pid) for k, v in servers.items()}
            loop0 = {k: thread_cpu_s(v.proc.pid, v.proc.pid) for k, v in servers.items()}
            deadline, i = time.perf_counter() + args.seconds, 0
            while time.perf_counter() < deadline:
                for name in (("this", "baseline") if i % 2 == 0 else ("baseline", "this")):
                    t0 = time.perf_counter()
                    async with s.post(servers[name].base + "/tfhe/gate", json=bodies[name][i % 64], headers=h) as r:
                        raw = await r.read()
                        if r.status == 200:
                            lat[name].append((time.perf_counter() - t0) * 1e3)
                            compute[name].append(float(json.loads(raw).get("compute_time_ms") or 0.0))
                        else:
                            errors[name][r.status] = errors[name].get(r.status, 0) + 1
                i += 1
            out = {"max_size": max_size, "delay_ms": delay_ms, "loadavg_1m": round(os.getloadavg()[0], 2)}
            for name, server in servers.items():
                cpu1, n = proc_cpu_s(server.proc.pid), max(1, len(lat[name]))
                out[name] = {"requests": len(lat[name]), "p50_ms": round(pct(lat[name], 50), 2),
                             "p90_ms": round(pct(lat[name], 90), 2), "p99_ms": round(pct(lat[name], 99), 2),
                             "mean_ms": round(statistics.fmean(lat[name]), 2) if lat[name] else None,
                             "server_cpu_ms_per_request": round((sum(cpu1) - sum(cpu0[name])) * 1e3 / n, 2),
                             "server_loop_cpu_ms_per_request": round(
                                 (thread_cpu_s(server.proc.pid, server.proc.pid) - loop0[name]) * 1e3 / n, 2),
                             "errors": errors[name], **split_stats(lat[name], compute[name])}
            print(f"  size {max_size:>3} delay {delay_ms:>3g} ms  c=1 alternating  " + "  ".join(
                f"{k}: p50 {v['p50_ms']:.1f} p99 {v['p99_ms']:.1f} ms (outside the gate p50 "
                f"{v.get('outside_p50_ms', float('nan')):.1f} p99 {v.get('outside_p99_ms', float('nan')):.1f}) "
                f"CPU {v['server_cpu_ms_per_request']:.1f} ms/req "
                f"(loop {v['server_loop_cpu_ms_per_request']:.1f}) "
                f"(n={v['requests']})" for k, v in ((k, out[k]) for k in servers)) + f"  load {out['loadavg_1m']:.1f}",
                flush=True)
            return out
    finally:
        for server in servers.values():
            server.stop()


async def main_async(args) -> dict:
    import asyncpg

    from wavis import tfhe

    name = f"wavis_bench_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(PG)
    db_url = urlunsplit(parts._replace(path="/" + name))
    prefix = f"wavis_bench_{secrets.token_hex(4)}:"
    try:
        from wavis.service import db as service_db
        from wavis.service import repo
        from wavis.service.access import Role

        conn = await asyncpg.connect(db_url)
        await service_db.migrate(conn)
        new = await repo.create_account(conn, PEPPER.encode(), email=None, plan="enterprise",
                                        role=Role.DEVELOPER, environment="test")
        await conn.close()

        ck, sk = tfhe.keygen(PRESET, seed=2024)
        sk.prepare()
        raw = [ck.encrypt(bool(i % 2)) for i in range(16)]
        cts = [b64(c) for c in raw]
        sk_b64 = base64.b64encode(tfhe.serialize.dumps(sk)).decode()

        sizes = args.sizes or ([1, 32] if args.quick else [1, 8, 32, 128])
        delays = args.delays or ([0.0, 1.0] if args.quick else [0.0, 1.0, 5.0])
        batch_sizes = args.batch_sizes or ([32] if args.quick else [8, 32, 128])
        print(f"library baseline ({PRESET}, evaluate_batch, all cores):", flush=True)
        library = {}
        for b in ([1] if args.baseline_python else sorted(set(sizes) | set(batch_sizes) | {1})):  # 1: the target's gate
            gps, ms, cpu_ms = library_gates_per_s(sk, raw, b, args.seconds / 2)
            library[b] = {"gates_per_s": round(gps, 1), "ms_per_call": round(ms, 3), "cpu_ms_per_call": round(cpu_ms, 3),
                          "loadavg_1m": round(os.getloadavg()[0], 2)}
            print(f"  B={b:<4} {gps:>8.1f} gates/s  {ms:>8.2f} ms per call (CPU {cpu_ms:.2f} ms)  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)

        if args.baseline_python:
            ab = []
            with tempfile.TemporaryDirectory() as tmp:
                for size in sizes:
                    for delay in delays:
                        r = await ab_config(args, db_url, prefix, Path(tmp), new.api_key, sk_b64, cts, size, delay)
                        ab.append(r)
            # the gate's time again after the runs (the host's load drifts): the target uses the mean
            gps, ms, cpu_ms = library_gates_per_s(sk, raw, 1, args.seconds / 2)
            library["1_after"] = {"gates_per_s": round(gps, 1), "ms_per_call": round(ms, 3),
                                  "cpu_ms_per_call": round(cpu_ms, 3), "loadavg_1m": round(os.getloadavg()[0], 2)}
            print(f"  B=1 again  {gps:>8.1f} gates/s  {ms:>8.2f} ms per call (CPU {cpu_ms:.2f} ms)", flush=True)
            gate_ms = (library[1]["ms_per_call"] + ms) / 2
            for r in ab:
                r["low_load_p99_target_ms"] = round(2 * gate_ms + r["delay_ms"], 2)
                for k in ("this", "baseline"):
                    r[k]["p99_ok"] = bool(r[k]["p99_ms"] < r["low_load_p99_target_ms"])
                print(f"  size {r['max_size']:>3} delay {r['delay_ms']:>3g} ms  target {r['low_load_p99_target_ms']:.1f} ms"
                      f"  p99 this {r['this']['p99_ms']:.1f}  baseline {r['baseline']['p99_ms']:.1f}", flush=True)
            from wavis.backend import cpu as cpu_backend

            return {"preset": PRESET, "mode": "ab_low_load", "baseline_python": args.baseline_python,
                    "this_env": args.this_env, "baseline_env": args.baseline_env,
                    "machine": platform.machine(), "cpu_model": cpu_model(), "simd_path": cpu_backend.simd_path(),
                    "cpus": os.cpu_count(), "command": " ".join(sys.argv), "seconds_per_point": args.seconds,
                    "library": library, "ab": ab}
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for size in sizes:
                for delay in delays:
                    bs = batch_sizes if delay == delays[min(1, len(delays) - 1)] else []
                    runs.append(await bench_config(args, db_url, prefix, Path(tmp), new.api_key, sk_b64, cts,
                                                   size, delay, bs))
        # the 80 % target: /tfhe/batch at saturation vs the library on the same B
        checks = []
        one_gate_ms = library[1]["ms_per_call"]
        for r in runs:
            for b in r["batch"]:
                lib = library[b["gates_per_request"]]["gates_per_s"]
                # the same comparison in CPU time, which the host's other load does not skew: the
                # library's process CPU per call of B gates over the server's per request of B gates
                lib_cpu = library[b["gates_per_request"]]["cpu_ms_per_call"]
                checks.append({"max_size": r["max_size"], "delay_ms": r["delay_ms"], "B": b["gates_per_request"],
                               "service_gates_per_s": b["gates_per_s"], "library_gates_per_s": lib,
                               "ratio": round(b["gates_per_s"] / lib, 3),
                               "cpu_ratio": round(lib_cpu / b["server_cpu_ms_per_request"], 3)})
            low = next((g for g in r["gate"] if g["concurrency"] == 1), None)
            if low is not None:
                r["low_load_p99_target_ms"] = round(2 * one_gate_ms + r["delay_ms"], 2)
                r["low_load_p99_ok"] = bool(low["p99_ms"] < r["low_load_p99_target_ms"])
        from wavis.backend import cpu as cpu_backend

        return {"preset": PRESET, "machine": platform.machine(), "cpu_model": cpu_model(),
                "simd_path": cpu_backend.simd_path(), "cpus": os.cpu_count(),
                "command": " ".join(sys.argv), "this_env": args.this_env,
                "python": platform.python_version(), "seconds_per_point": args.seconds, "library": library,
                "runs": runs, "batch_vs_library": checks}
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


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {0.0: "o", 1.0: "s", 5.0: "^"}
    styles = {0.0: "-", 1.0: "--", 5.0: ":"}
    colors = {1: "tab:red", 8: "tab:orange", 32: "tab:green", 128: "tab:blue"}
    for r in result["runs"]:
        xs = [g["rps"] for g in r["gate"]]
        ys = [g["p99_ms"] for g in r["gate"]]
        ax.plot(xs, ys, marker=markers.get(r["delay_ms"], "x"), ls=styles.get(r["delay_ms"], "-"),
                color=colors.get(r["max_size"]), label=f"batch ≤ {r['max_size']}, delay {r['delay_ms']:g} ms")
    lib1 = result["library"].get(1, result["library"].get("1"))
    if lib1:
        ax.axvline(lib1["gates_per_s"], color="grey", ls=":", label="library, one gate per call")
    ax.set_xlabel("single-gate requests / s (closed loop, concurrency 1 … 64)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"WAVIS engine: TFHE {result['preset']} gates, {result['cpus']} CPUs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per load point (default 4)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--batch-concurrency", type=int, default=4)
    ap.add_argument("--sizes", type=int, nargs="+", help="WAVIS_BATCH_MAX_SIZE values (default by --quick)")
    ap.add_argument("--delays", type=float, nargs="+", help="WAVIS_BATCH_MAX_DELAY_MS values")
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="gates per /tfhe/batch request")
    ap.add_argument("--baseline-python", help="before/after at low load: also start `wavis serve` with this "
                    "interpreter (another checkout's venv, e.g. /work/main/.venv/bin/python) and alternate single "
                    "gates between the two servers (c=1; no /tfhe/batch, no plot)")
    ap.add_argument("--baseline-env", action="append", default=[], metavar="WAVIS_X=VALUE",
                    help="a setting of the --baseline-python server only (repeatable), e.g. WAVIS_EVENT_LOOP=asyncio "
                         "with this checkout's python as the baseline")
    ap.add_argument("--this-env", action="append", default=[], metavar="WAVIS_X=VALUE",
                    help="a setting of this checkout's server only (repeatable; with --baseline-python: an A/B of "
                         "one setting, e.g. --this-env WAVIS_ENGINE_INLINE_GATES=1 against the baseline's default)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine_cpu.json")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from --out's JSON")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.baseline_python:
        return
    print("\n/tfhe/batch at saturation vs the batched library (same B):")
    for c in result["batch_vs_library"]:
        print(f"  size {c['max_size']:>3} delay {c['delay_ms']:>3g} ms  B={c['B']:<4} service {c['service_gates_per_s']:>8.1f}"
              f"  library {c['library_gates_per_s']:>8.1f} gates/s  ratio {c['ratio']:.2f}  (in CPU time {c['cpu_ratio']:.2f})")
    if not args.no_plot:
        plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
