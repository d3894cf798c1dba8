"""Kernel A/B for primes >= 2^50 on an AVX2 host (docs/ring.md "Primes >= 2^50 on the avx2 path"):
the avx2 path against the portable path (the scalar code the avx2 path ran for these primes
before simd2::mulmod62_4), same process, rounds interleaved, CPU time (time.process_time),
1 thread; 49/50-bit primes as the control. Every row also checks both paths' outputs are equal.

    WAVIS_THREADS=1 .venv/bin/python benchmarks/bench_wide_primes.py [N] [OUT.json]
"""
import os, sys, time, json, statistics
os.environ.setdefault("WAVIS_THREADS", "1")
import numpy as np
from wavis import _core

def cpu_ms(fn, reps):
    fn()
    c = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - c) / reps * 1e3

REPS = 20
def main(N=16384, rounds=6):
    rng = np.random.default_rng(1)
    res = {}
    for bits_q, bits_p, label in ((60, 61, "60/61-bit"), (49, 50, "49/50-bit (< 2^50 control)")):
        qs = []
        for b in [bits_q] * 4 + [bits_p] * 2:
            qs += _core.generate_ntt_primes(b, 1, N, exclude=qs)
        ctx = _core.RnsContext(N, qs)
        L = len(qs)
        idx = list(range(L))
        qcol = np.array(qs, dtype=np.uint64)[:, None]
        a = (rng.integers(0, 2**63, (L, N), dtype=np.uint64) % qcol).astype(np.uint64)
        b = (rng.integers(0, 2**63, (L, N), dtype=np.uint64) % qcol).astype(np.uint64)
        out = np.empty_like(a)
        iq, ip, digits = [0, 1, 2, 3], [4, 5], [(0, 1), (1, 2), (2, 4)]
        key = (rng.integers(0, 2**63, (3, 2, L, N), dtype=np.uint64) % qcol).astype(np.uint64)
        exts = ctx.ks_mod_up(a[:4].copy(), iq, ip, digits)
        ops = {
            "mul (6 rows)": lambda: ctx.mul(a, b, out, idx),
            "mul_add (6 rows)": lambda: (out.__setitem__(slice(None), b), ctx.mul_add(a, b, out, idx)),
            "ks_inner, 3 digits, 6 rows": lambda: ctx.ks_inner(exts, key, iq, ip, 1, None),
            "ks_inner + automorphism": lambda: ctx.ks_inner(exts, key, iq, ip, 5, None),
            "key_switch_ext": lambda: ctx.key_switch_ext(a[:4].copy(), key, iq, ip, digits),
        }
        for name, fn in ops.items():
            per = {"portable": [], "avx2": []}
            outs = {}
            for r in range(rounds):
                for p in (("portable", "avx2") if r % 2 == 0 else ("avx2", "portable")):
                    _core._set_simd_path(p)
                    per[p].append(cpu_ms(fn, REPS))
                    o = fn()
                    outs[p] = (o if isinstance(o, np.ndarray) else out).copy()
            same = np.array_equal(outs["portable"], outs["avx2"])
            row = {p: statistics.median(v) for p, v in per.items()}
            row["min_max"] = {p: (min(v), max(v)) for p, v in per.items()}
            row["speedup"] = row["portable"] / row["avx2"]
            row["bit_identical"] = bool(same)
            res[f"{label}: {name}"] = row
            print(f"{label:28s} {name:28s} portable {row['portable']:8.3f} ms  avx2 {row['avx2']:8.3f} ms  x{row['speedup']:.2f}  identical={same}", flush=True)
    _core._set_simd_path("avx2")
    return res

if __name__ == "__main__":
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
    r = main(N)
    r["_meta"] = {"N": N, "threads": 1, "clock": "process_time", "load": os.getloadavg(), "path_default": _core.simd_path()}
    if len(sys.argv) > 2:
        json.dump(r, open(sys.argv[2], "w"), indent=1)
