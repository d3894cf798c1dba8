"""Time TenSEAL (Microsoft SEAL) CKKS operations; run by bench_ckks.py in benchmarks/.venv-tenseal.

Usage: benchmarks/.venv-tenseal/bin/python benchmarks/tenseal_ckks.py '{"N":16384,"depth":10,
       "scale_bits":30,"first_bits":50,"reps":5,"threads":1}'
SEAL's key switching uses one special prime (like dnum = L+1). Prints one JSON object.
Above N = 16384 the matrix-vector rows are skipped: TenSEAL's matmul takes minutes per call there
and its Galois keys (all powers of two, one special prime) need many GiB.
"""

import json
import sys
import time

import numpy as np
import tenseal as ts

cfg = json.loads(sys.argv[1])


def timeit(fn, reps):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def main():
    n, depth, sb, fb = cfg["N"], cfg["depth"], cfg["scale_bits"], cfg["first_bits"]
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=n,
                     coeff_mod_bit_sizes=[fb] + [sb] * depth + [max(fb, 60)], n_threads=cfg.get("threads", 1))
    ctx.global_scale = 2.0**sb
    do_matvec = n <= 16384
    if do_matvec:
        ctx.generate_galois_keys()
    ctx.generate_relin_keys()
    reps = cfg["reps"]
    slots = n // 2
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    cx, cy = ts.ckks_vector(ctx, x.tolist()), ts.ckks_vector(ctx, y.tolist())
    out = {
        "encrypt": timeit(lambda: ts.ckks_vector(ctx, x.tolist()), reps),
        "decrypt": timeit(lambda: cx.decrypt(), reps),
        "add": timeit(lambda: cx + cy, reps),
        "multiply_relin_rescale": timeit(lambda: cx * cy, reps),
    }
    for d in (64, 256) if do_matvec else ():
        m = rng.uniform(-1, 1, (d, d))
        v = ts.ckks_vector(ctx, x[:d].tolist())
        out[f"matvec_{d}x{d}"] = timeit(lambda: v.matmul(m.T.tolist()), max(1, reps // 2))
    coeffs = (rng.uniform(-1, 1, 16) / 16).tolist()
    out["poly_degree15"] = timeit(lambda: cx.polyval(coeffs), max(1, reps // 2))
    got = np.array((cx * cy).decrypt())
    out["precision_bits_mult"] = float(-np.log2(np.max(np.abs(got - x * y))))
    print(json.dumps(out))


main()
