"""A/B of two builds of the C++ core (``wavis/_core*.so``) on the per-limb negacyclic NTT: each
build runs in its own process, the builds alternate round by round (as benchmarks/core_ab.py),
and each row keeps the best batch mean over all rounds (a shared host only ever adds time).

    .venv/bin/python benchmarks/ntt_ab.py OLD.so NEW.so [--rounds 3] [--logn 14 16] [--bits 49 60]
                                          [--paths ifma avx512 avx2 portable] [--out F.json]

Rows: µs per limb (one limb, 1 thread, ``RnsContext.ntt`` / ``.intt`` from Python, so about
0.5 µs of call overhead is included) for each SIMD path, N = 2^logn and prime size; NEW/OLD.
Copy a build aside first (``cp .venv/lib/python3.11/site-packages/wavis/_core*.so /tmp/old.so``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("wavis._core", sys.argv[1])
m = importlib.util.module_from_spec(spec); sys.modules["wavis._core"] = m; spec.loader.exec_module(m)
import numpy as np
cfg = json.loads(sys.argv[2]); out = {}
for path in cfg["paths"]:
    if path not in m.simd_paths():
        continue
    m._set_simd_path(path)
    for logn in cfg["logn"]:
        N = 1 << logn
        for bits in cfg["bits"]:
            q = m.generate_ntt_primes(bits, 1, N)
            ctx = m.RnsContext(N, q)
            a = np.random.default_rng(0).integers(0, q[0], (1, N), dtype=np.uint64)
            reps = max(4, (1 << 22) // (N * (8 if path == "portable" else 1)))
            for name, f in (("fwd", lambda: ctx.ntt(a, [0])), ("inv", lambda: ctx.intt(a, [0]))):
                f(); best = float("inf")
                for _ in range(7):
                    t = time.perf_counter()
                    for _ in range(reps):
                        f()
                    best = min(best, (time.perf_counter() - t) / reps)
                out[f"{path} N=2^{logn} {bits}-bit {name}"] = best * 1e6
print(json.dumps(out))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--logn", type=int, nargs="+", default=[14, 16])
    ap.add_argument("--bits", type=int, nargs="+", default=[49, 60])
    ap.add_argument("--paths", nargs="+", default=["ifma", "avx512", "avx2", "portable"])
    ap.add_argument("--out", help="also write the rounds and ratios as JSON")
    a = ap.parse_args()
    cfg = json.dumps(dict(paths=a.paths, logn=a.logn, bits=a.bits))
    env = dict(os.environ, WAVIS_THREADS="1")
    res: dict[str, list[dict]] = {a.old: [], a.new: []}
    for r in range(a.rounds):
        for so in ((a.old, a.new) if r % 2 == 0 else (a.new, a.old)):
            p = subprocess.run([sys.executable, "-c", CHILD, so, cfg], capture_output=True, text=True, env=env,
                               cwd=ROOT, check=True)
            res[so].append(json.loads(p.stdout.strip().splitlines()[-1]))
    rows = {}
    print(f"per-limb NTT, 1 thread, best over {a.rounds} interleaved rounds; load {os.getloadavg()}")
    print(f"{'row':<34} {'old µs':>9} {'new µs':>9} {'new/old':>8}")
    for k in res[a.old][0]:
        o = min(x[k] for x in res[a.old])
        n = min(x[k] for x in res[a.new])
        rows[k] = {"old_us": o, "new_us": n, "ratio": n / o}
        print(f"{k:<34} {o:>9.2f} {n:>9.2f} {n / o:>8.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"old": a.old, "new": a.new, "rounds": a.rounds, "load_end": os.getloadavg()[0],
                                           "rows": rows, "raw": {"old": res[a.old], "new": res[a.new]}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
