#!/usr/bin/env python3
"""WAVIS quickstart: encrypted add and multiply through the REST service.

Keys are made here; the server only ever sees the public/evaluation keys and ciphertexts.

    ./dev serve &                       # the server (any --port)
    .venv/bin/python examples/quickstart.py [--url URL] [--api-key wvs_…] [--poly-degree 16384]

The server is --url, else WAVIS_URL, else the running `wavis serve` (each server records where it
listens: wavis.client.discovery), else http://127.0.0.1:8080.

Exits non-zero if either result is off by more than 1e-5 from NumPy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np

from wavis.ckks import CkksParameters
from wavis.client import ApiError, AsyncClient, ConnectionFailedError, KeyPair
from wavis.client.discovery import default_url
from wavis.errors import InsufficientSecurityError

TOLERANCE = 1e-5


def params_that_fit(poly_degree: int, scale_bits: int = 40, security: str = "128-bit") -> CkksParameters:
    """The deepest parameters of this ring degree and scale that meet the security level."""
    base = {"poly_degree": poly_degree, "scale_bits": scale_bits, "security_level": security}
    try:
        return CkksParameters.from_dict({**base, "max_depth": 24})
    except InsufficientSecurityError as exc:
        depth = exc.details["max_depth"]
        if depth < 1:
            raise SystemExit(f"poly_degree {poly_degree} cannot multiply at {security} with scale_bits {scale_bits}")
        return CkksParameters.from_dict({**base, "max_depth": depth})


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="server URL (default: WAVIS_URL, else the running "
                                                "`wavis serve`, else http://127.0.0.1:8080)")
    ap.add_argument("--api-key", default=None, help="an API key; default: get a trial key from the server")
    ap.add_argument("--poly-degree", type=int, default=8192, choices=[8192, 16384])
    ap.add_argument("--n", type=int, default=4096, help="vector length (≤ poly_degree/2)")
    args = ap.parse_args()
    if not 1 <= args.n <= args.poly_degree // 2:
        ap.error(f"--n must be in 1..{args.poly_degree // 2} (the slot count of poly_degree {args.poly_degree})")

    t0 = time.perf_counter()
    params = params_that_fit(args.poly_degree)
    keys = KeyPair.generate(params)
    print(f"params: {params.to_dict()}  slots={params.slot_count}  keygen {time.perf_counter() - t0:.2f}s")

    rng = np.random.default_rng()
    x = rng.uniform(-1, 1, args.n)
    y = rng.uniform(-1, 1, args.n)

    url = args.url or default_url()
    print(f"server URL: {url}")
    async with AsyncClient(url, api_key=args.api_key) as client:
        try:
            health = await client.health()
            print(f"server: {health['status']} (version {health['version']}, backend {health['backend']})")
            if args.api_key is None:
                tk = await client.create_temp_key()
                print(f"trial key until {tk['expires_at']} ({tk['ops_limit']} operations)")
            key_id = await client.upload_keys(keys)
            print(f"uploaded keys: {key_id}")
            a = await client.upload_ciphertext(key_id, keys.encrypt(x))
            b = await client.upload_ciphertext(key_id, keys.encrypt(y))
            print(f"uploaded ciphertexts: {a.ciphertext_id} {b.ciphertext_id} (level {a.level})")
            added = await client.add(key_id, a.ciphertext_id, b.ciphertext_id)
            multiplied = await client.multiply(key_id, a.ciphertext_id, b.ciphertext_id)
        except ConnectionFailedError as exc:
            print(f"error: {exc.message}; start it with ./dev serve, or pass --url", file=sys.stderr)
            return 1
        except ApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    sum_err = float(np.max(np.abs(keys.decrypt(added.ciphertext).real[: args.n] - (x + y))))
    mul_err = float(np.max(np.abs(keys.decrypt(multiplied.ciphertext).real[: args.n] - x * y)))
    for name, r, err in (("add", added, sum_err), ("multiply", multiplied, mul_err)):
        m = r.meta
        print(f"{name:9s} max abs error {err:.3e}  level {m['level']}  compute {m['compute_time_ms']:.1f} ms  "
              f"noise budget {m['noise_budget_remaining']:.0f}%")
    ok = sum_err <= TOLERANCE and mul_err <= TOLERANCE
    print("OK" if ok else f"FAIL: error above {TOLERANCE}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
