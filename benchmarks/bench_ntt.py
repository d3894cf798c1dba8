"""Per-limb forward/inverse negacyclic NTT timings of the CPU core (wavis._core.RnsContext).

usage: python benchmarks/bench_ntt.py [--bits 55] [--limbs 8] [--repeat 200] [--json out.json] [--core SO]

Prints µs per limb for N = 2^12 .. 2^16: single limb (one thread), the portable scalar path
(WAVIS_SIMD off) and a multi-limb call (thread pool, WAVIS_THREADS). --core times another build of
the C++ core (a copied ``wavis/_core*.so``) under the same script; benchmarks/ntt_ab.py alternates
two builds round by round.
"""

from __future__ import annotations

import argparse
import json
import time

import importlib.util
import sys

import numpy as np


def best_of(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - t) / repeat)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=55)
    ap.add_argument("--limbs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--json")
    ap.add_argument("--core", help="path of a wavis/_core*.so build to time instead of the installed one")
    args = ap.parse_args()
    global _core
    if args.core:
        spec = importlib.util.spec_from_file_location("wavis._core", args.core)
        _core = importlib.util.module_from_spec(spec)
        sys.modules["wavis._core"] = _core
        spec.loader.exec_module(_core)
    else:
        from wavis import _core
    rows = []
    print(f"threads={_core.thread_count()}  prime bits={args.bits}  simd path={_core.simd_path()}")
    print(f"{'N':>6} {'fwd µs':>9} {'inv µs':>9} {'fwd scalar':>11} {'inv scalar':>11} {f'fwd x{args.limbs} µs/limb':>18}")
    for logn in range(12, 17):
        N = 1 << logn
        moduli = _core.generate_ntt_primes(args.bits, args.limbs, N)
        ctx = _core.RnsContext(N, moduli)
        rng = np.random.default_rng(0)
        a = np.stack([rng.integers(0, q, N, dtype=np.uint64) for q in moduli])
        one = np.ascontiguousarray(a[:1])
        rep = max(5, args.repeat * 4096 // N)
        fwd = best_of(lambda: ctx.ntt(one, [0]), rep)
        inv = best_of(lambda: ctx.intt(one, [0]), rep)
        prev = _core._set_simd_path("portable")
        try:
            fwd_s = best_of(lambda: ctx.ntt(one, [0]), rep)
            inv_s = best_of(lambda: ctx.intt(one, [0]), rep)
        finally:
            _core._set_simd_path(prev)
        idx = list(range(args.limbs))
        multi = best_of(lambda: ctx.ntt(a, idx), max(2, rep // args.limbs)) / args.limbs
        row = dict(N=N, fwd_us=fwd * 1e6, inv_us=inv * 1e6, fwd_scalar_us=fwd_s * 1e6,
                   inv_scalar_us=inv_s * 1e6, fwd_multi_us_per_limb=multi * 1e6)
        rows.append(row)
        print(f"{N:>6} {row['fwd_us']:>9.1f} {row['inv_us']:>9.1f} {row['fwd_scalar_us']:>11.1f} "
              f"{row['inv_scalar_us']:>11.1f} {row['fwd_multi_us_per_limb']:>18.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(threads=_core.thread_count(), bits=args.bits, simd_path=_core.simd_path(),
                           core=args.core or "installed", rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
