"""Soak test of the HTTP service (issue 14): the real ``wavis serve`` with its embedded,
supervised PostgreSQL and Redis on loopback, under mixed traffic for a fixed time.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--workers 8] [--out benchmarks/results/soak]

Traffic (closed loop: ``--workers`` clients, each sending its next request when the last one
answered — the machine's sustainable rate): upload a ciphertext 30 %, read one 25 %, compute
add 15 %, multiply 10 %, delete one 5 %, ``/health`` 10 %, list keys 5 %. Ciphertexts live
``--ttl`` seconds (the sweeper deletes them) and stay ``--cache-ttl`` seconds in Redis, so the
store and the cache stay bounded.

Every ``--interval`` seconds it records requests, errors by status, p50/p99 latency of that
interval and the memory of the server, PostgreSQL (PSS summed over the postmaster and its
backends, so shared buffers count once) and Redis. Writes ``<out>.json`` and ``<out>.png``
(matplotlib) and prints a summary: totals, error rate, 5xx count, latency, and whether memory
levelled off (the last fifth's mean against the second fifth's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(server_pid: int, data_dir: Path) -> dict[str, float]:
    """MiB: server RSS, PostgreSQL PSS (all processes on the data dir), Redis RSS."""
    import psutil

    out = {"server": 0.0, "postgres": 0.0, "redis": 0.0}
    try:
        out["server"] = psutil.Process(server_pid).memory_info().rss / 2**20
    except psutil.Error:
        pass
    target = str(data_dir.resolve())
    for p in psutil.process_iter(["name", "cmdline", "cwd"]):
        try:
            name = p.info["name"] or ""
            if name == "postgres" and p.info["cwd"] == target + "/postgres":
                out["postgres"] += p.memory_full_info().pss / 2**20
            elif "redis" in name and target in " ".join(p.info["cmdline"] or []):
                out["redis"] += p.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out


class Stats:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.status: dict[int, int] = {}

    def add(self, status: int, seconds: float) -> None:
        self.lat.append(seconds)
        self.status[status] = self.status.get(status, 0) + 1


async def run(args) -> dict:
    import aiohttp

    from wavis import serialize
    from wavis.client import KeyPair

    tmp = Path(tempfile.mkdtemp(prefix="wavis-soak-"))
    data_dir = tmp / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVIS_")}
    env.update(WAVIS_CIPHERTEXT_TTL_S=str(args.ttl), WAVIS_CIPHERTEXT_CACHE_TTL_S=str(args.cache_ttl),
               WAVIS_SWEEP_INTERVAL_S="10", WAVIS_LOG_LEVEL="WARNING")
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "wavis.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir)], env=env, stdout=log, stderr=subprocess.STDOUT)
    samples: list[dict] = []
    totals = Stats()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            for _ in range(300):
                try:
                    async with s.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            out = subprocess.run([sys.executable, "-m", "wavis.cli", "admin", "create-account", "--email",
                                  "soak@example.com", "--plan", "enterprise", "--json", "--data-dir", str(data_dir)],
                                 env=env, capture_output=True, text=True, timeout=120, check=True)
            h = {"Authorization": f"Bearer {json.loads(out.stdout)['api_key']}"}
            pair = KeyPair.generate({"poly_degree": args.poly_degree, "scale_bits": 40, "max_depth": 2})
            async with s.post(base + "/api/v1/keys/upload", json=pair.upload_body(), headers=h) as r:
                assert r.status == 200, await r.text()
                key_id = (await r.json())["key_id"]
            bodies = [{"key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt([i / 7])))}
                      for i in range(8)]
            live: list[str] = []
            interval = Stats()
            stop_at = time.monotonic() + args.duration

            async def call(method: str, path: str, **kw) -> tuple[int, dict | None]:
                t0 = time.perf_counter()
                try:
                    async with s.request(method, base + path, headers=h, **kw) as r:
                        data = await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status, data = 0, b""
                dt = time.perf_counter() - t0
                interval.add(status, dt)
                totals.add(status, dt)
                if status in (200, 201) and data[:1] == b"{":
                    return status, json.loads(data)
                return status, None

            async def worker(w: int) -> None:
                rng = random.Random(w)
                while time.monotonic() < stop_at:
                    x = rng.random()
                    if x < 0.30 or len(live) < 4:
                        st, body = await call("POST", "/api/v1/ciphertexts", json=rng.choice(bodies))
                        if body:
                            live.append(body["ciphertext_id"])
                    elif x < 0.55:
                        await call("GET", f"/api/v1/ciphertexts/{rng.choice(live[-200:])}")
                    elif x < 0.70:
                        a = rng.choice(live[-200:])
                        st, body = await call("POST", "/api/v1/compute/add",
                                              json={"key_id": key_id, "ciphertext_ids": [a, a]})
                        if body:
                            live.append(body["result_ciphertext_id"])
                    elif x < 0.80:
                        a, b = rng.choice(bodies[:1]), None
                        st, body = await call("POST", "/api/v1/ciphertexts", json=a)
                        if body:
                            b = body["ciphertext_id"]
                            st, body = await call("POST", "/api/v1/compute/multiply",
                                                  json={"key_id": key_id, "ciphertext_ids": [b, b]})
                    elif x < 0.85:
                        if len(live) > 50:
                            await call("DELETE", f"/api/v1/ciphertexts/{live.pop(rng.randrange(len(live) - 20))}")
                    elif x < 0.95:
                        await call("GET", "/api/v1/health")
                    else:
                        await call("GET", "/api/v1/keys")
                    if len(live) > 2000:
                        del live[:1000]

            async def sampler() -> None:
                nonlocal interval
                t_start = time.monotonic()
                while time.monotonic() < stop_at:
                    await asyncio.sleep(args.interval)
                    cur, interval = interval, Stats()
                    lat = sorted(cur.lat) or [0.0]
                    mem = await asyncio.to_thread(memory, proc.pid, data_dir)
                    samples.append({
                        "t": round(time.monotonic() - t_start, 1), "requests": len(cur.lat),
                        "rps": round(len(cur.lat) / args.interval, 1),
                        "errors": sum(n for st, n in cur.status.items() if st >= 400 or st == 0),
                        "5xx": sum(n for st, n in cur.status.items() if st >= 500 or st == 0),
                        "p50_ms": round(1e3 * lat[len(lat) // 2], 2), "p99_ms": round(1e3 * lat[int(len(lat) * 0.99)], 2),
                        "status": {str(k): v for k, v in sorted(cur.status.items())},
                        "mem_mib": {k: round(v, 1) for k, v in mem.items()},
                    })
                    last = samples[-1]
                    print(f"t={last['t']:6.0f}s rps={last['rps']:6.1f} err={last['errors']:3d} "
                          f"p50={last['p50_ms']:7.1f}ms p99={last['p99_ms']:7.1f}ms server={mem['server']:6.0f}MiB "
                          f"pg={mem['postgres']:6.0f}MiB redis={mem['redis']:5.0f}MiB", flush=True)

            await asyncio.gather(sampler(), *(worker(w) for w in range(args.workers)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        leftovers = memory(0, data_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    lat = sorted(totals.lat) or [0.0]
    n = len(samples)
    fifth = max(1, n // 5)

    def mean(key: str, part: list[dict]) -> float:
        return statistics.fmean(x["mem_mib"][key] for x in part) if part else 0.0

    levelled = {k: {"second_fifth": round(mean(k, samples[fifth:2 * fifth]), 1),
                    "last_fifth": round(mean(k, samples[-fifth:]), 1)} for k in ("server", "postgres", "redis")}
    summary = {
        "duration_s": args.duration, "workers": args.workers, "poly_degree": args.poly_degree,
        "requests": len(totals.lat), "rps": round(len(totals.lat) / args.duration, 1),
        "status": {str(k): v for k, v in sorted(totals.status.items())},
        "error_rate": round(sum(v for k, v in totals.status.items() if k >= 400 or k == 0) / max(1, len(lat)), 5),
        "5xx": sum(v for k, v in totals.status.items() if k >= 500 or k == 0),
        "p50_ms": round(1e3 * lat[len(lat) // 2], 2), "p99_ms": round(1e3 * lat[int(len(lat) * 0.99)], 2),
        "memory_mib": levelled, "processes_left_after_sigterm": {k: v for k, v in leftovers.items() if v},
    }
    return {"summary": summary, "samples": samples}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = [x["t"] for x in s]
    fig, ax = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    ax[0].plot(t, [x["rps"] for x in s], label="requests/s")
    ax[0].plot(t, [x["errors"] / max(1e-9, x["requests"]) * 100 for x in s], label="errors %")
    ax[0].plot(t, [x["5xx"] for x in s], label="5xx (count)")
    ax[0].legend(); ax[0].set_ylabel("rate")
    ax[1].plot(t, [x["p50_ms"] for x in s], label="p50")
    ax[1].plot(t, [x["p99_ms"] for x in s], label="p99")
    ax[1].legend(); ax[1].set_ylabel("latency (ms)")
    for k in ("server", "postgres", "redis"):
        ax[2].plot(t, [x["mem_mib"][k] for x in s], label=k + (" (PSS)" if k == "postgres" else " (RSS)"))
    ax[2].legend(); ax[2].set_ylabel("memory (MiB)"); ax[2].set_xlabel("time (s)")
    sm = result["summary"]
    fig.suptitle(f"wavis soak: {sm['requests']} requests, {sm['rps']} req/s, {sm['5xx']} x 5xx, "
                 f"p50 {sm['p50_ms']} ms, p99 {sm['p99_ms']} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--ttl", type=int, default=240, help="ciphertext TTL in seconds (the sweeper deletes them)")
    ap.add_argument("--cache-ttl", type=int, default=60, help="seconds a blob stays in the Redis cache")
    ap.add_argument("--poly-degree", type=int, default=8192)
    ap.add_argument("--out", default="benchmarks/results/soak")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(json.dumps(result["summary"], indent=1))
    return 0 if result["summary"]["5xx"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
