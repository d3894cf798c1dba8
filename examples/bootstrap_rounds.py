#!/usr/bin/env python3
"""Acceptance run of CKKS bootstrapping: 20 sequential multiply + bootstrap rounds on a vector,
through the SDK against a real server, with a 128-bit bootstrappable key (preset ``n65536``).

Keys are made here (blind mode): the server only ever sees the public and evaluation keys,
which go up in chunks (POST /keys/upload, then POST /keys/{id}/galois-keys, one key-switching
key per chunk at N = 2^16). Each round multiplies the encrypted vector by an encrypted vector
of unit-modulus complex numbers (so the product stays in the declared range |x| ≤ 1) and
bootstraps the result; the client decrypts the last one and compares with NumPy.

    .venv/bin/python examples/bootstrap_rounds.py                       # embedded server (default)
    .venv/bin/python examples/bootstrap_rounds.py --url http://127.0.0.1:8080 --api-key wvs_…
    .venv/bin/python examples/bootstrap_rounds.py --preset testing-n1024  # the same in seconds

Without --url it starts ``wavis serve`` with its embedded PostgreSQL and Redis in a temporary
data directory and an account of plan "pro" (``wavis admin create-account``). Prints the key-set
size (before generation and uploaded), the time of every stage and the precision; exits
non-zero if the final mean precision is below --min-bits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from wavis.ckks import CkksParameters
from wavis.ckks.presets import BOOTSTRAP_PRESETS
from wavis.client import ApiError, AsyncClient, KeyPair


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_embedded(data_dir: Path, insecure: bool = False) -> tuple[subprocess.Popen, str, str]:
    """``wavis serve`` on a free port with embedded PostgreSQL/Redis (``insecure``: allow the
    ``testing`` presets); returns (process, url, api key)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("WAVIS_DATABASE_URL", "WAVIS_REDIS_URL", "WAVIS_API_KEY_PEPPER")}
    if insecure:
        env["WAVIS_ALLOW_INSECURE_PARAMS"] = "1"
    cmd = [sys.executable, "-m", "wavis.cli"]
    log = open(data_dir / "serve.log", "wb")
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--data-dir", str(data_dir / "data")],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"wavis serve exited: see {data_dir / 'serve.log'}")
        try:
            with urllib.request.urlopen(url + "/api/v1/health", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"wavis serve did not become healthy: see {data_dir / 'serve.log'}")
        time.sleep(0.5)
    out = subprocess.run([*cmd, "admin", "create-account", "--email", "bootstrap@example.com", "--plan", "pro",
                          "--json", "--data-dir", str(data_dir / "data")],
                         env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        proc.terminate()
        raise SystemExit(f"create-account failed: {out.stderr}")
    return proc, url, json.loads(out.stdout)["api_key"]


def bits(err: np.ndarray) -> tuple[float, float]:
    e = np.maximum(np.abs(err), 2.0**-60)
    return float(np.mean(-np.log2(e))), float(-np.log2(np.max(e)))


async def run(url: str, api_key: str, preset: str, rounds: int, min_bits: float) -> int:
    params = CkksParameters.bootstrappable(preset)
    n = params.slot_count
    plan = KeyPair.bootstrap_key_plan(params)
    print(f"preset {preset}: N={params.poly_degree}, {params.max_depth} user levels at 2^{params.scale_bits}, "
          f"log2(QP)={params.log_qp_bits:.0f}, security {params.security_level}")
    print(f"key plan: {len(plan.galois_steps)} rotations + conjugation + relinearization"
          f"{' + 2 encapsulation (h=%d)' % plan.encapsulation_hamming_weight if plan.encapsulation_hamming_weight else ''}"
          f" = {plan.key_count} keys, {plan.key_bytes / 1e6:.1f} MB serialized (computed before generation)")
    t = time.perf_counter()
    keys = KeyPair.generate(params, bootstrappable=True)
    print(f"keygen {time.perf_counter() - t:.1f} s")
    rng = np.random.default_rng()
    x = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    x /= np.maximum(1.0, np.abs(x))
    async with AsyncClient(url, api_key=api_key, timeout=3600) as client:
        t = time.perf_counter()
        key_id = await client.upload_keys(keys)
        meta = await client.get_key(key_id)
        print(f"uploaded keys {key_id} in {time.perf_counter() - t:.1f} s "
              f"({len(meta['galois_steps'])} rotation keys, conjugation {meta['conjugation']})")
        ct = await client.upload_ciphertext(key_id, keys.encrypt(x))
        cur, want = ct.ciphertext_id, x.copy()
        t_all = time.perf_counter()
        for r in range(rounds):
            w = np.exp(2j * np.pi * rng.uniform(size=n))
            wid = (await client.upload_ciphertext(key_id, keys.encrypt(w))).ciphertext_id
            t = time.perf_counter()
            prod = await client.multiply(key_id, cur, wid)
            boot = await client.compute("bootstrap", key_id, [prod.ciphertext_id])
            el = time.perf_counter() - t
            want = want * w
            m = boot.meta
            line = (f"round {r + 1:2d}: multiply {prod.meta['compute_time_ms']:.0f} ms, bootstrap "
                    f"{m['compute_time_ms'] / 1000:.2f} s (round trip {el:.2f} s), level {boot.level}, "
                    f"effective degree {m['bootstrap_effective_degree']}")
            if boot.ciphertext is not None:
                mean, low = bits(keys.decrypt(boot.ciphertext) - want)
                line += f", precision mean {mean:.1f} / min {low:.1f} bits"
            print(line, flush=True)
            cur = boot.ciphertext_id
        total = time.perf_counter() - t_all
        final = await client.get_ciphertext(cur, params)
    mean, low = bits(keys.decrypt(final) - want)
    print(f"{rounds} rounds in {total:.1f} s; final precision over all {n} slots: mean {mean:.1f} bits, "
          f"min {low:.1f} bits (expected per bootstrap: {BOOTSTRAP_PRESETS[preset].precision_bits} mean)")
    ok = mean >= min_bits
    print("OK" if ok else f"FAIL: mean precision below {min_bits} bits")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="a running server; default: start an embedded one")
    ap.add_argument("--api-key", default=None, help="API key for --url (plan with ≥ 50 operations)")
    ap.add_argument("--preset", default="n65536", choices=sorted(BOOTSTRAP_PRESETS))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--min-bits", type=float, default=12.0, help="required final mean precision (bits)")
    args = ap.parse_args()
    if args.url is not None:
        if args.api_key is None:
            ap.error("--url needs --api-key")
        return asyncio.run(run(args.url, args.api_key, args.preset, args.rounds, args.min_bits))
    with tempfile.TemporaryDirectory(prefix="wavis-bootstrap-") as tmp:
        insecure = BOOTSTRAP_PRESETS[args.preset].security_level == "testing"
        proc, url, key = start_embedded(Path(tmp), insecure)
        try:
            return asyncio.run(run(url, key, args.preset, args.rounds, args.min_bits))
        except ApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
