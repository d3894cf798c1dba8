"""Time TenSEAL (Microsoft SEAL) CKKS operations; run by bench_ckks.py in benchmarks/.venv-tenseal.

Usage: benchmarks/.venv-tenseal/bin/python benchmarks/tenseal_ckks.py '{"N":16384,"depth":10,
       "scale_bits":30,"first_bits":50,"reps":5,"threads":1}'
SEAL's key switching uses one special prime (like dnum = L+1). Prints one JSON object.
Above N = 16384 the matrix-vector rows are skipped: TenSEAL's matmul takes minutes per call there
and its Galois keys (all powers of two, one special prime) need many GiB.

With ``--serve`` (before the JSON) it runs as a worker of the harness (wavis.bench, protocol in
wavis/bench/protocol.py): encrypt (TenSEAL encodes inside), decrypt_decode, add,
multiply_relin_rescale (TenSEAL relinearizes and rescales automatically); each output checked.
TenSEAL exposes no single rotation of a CKKSVector, so rotate rows have no TenSEAL column.
"""

import json
import sys
import time

import os

import numpy as np
import tenseal as ts

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "wavis", "bench"))

cfg = json.loads(sys.argv[-1])


def timeit(fn, reps):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def context():
    n, depth, sb, fb = cfg["N"], cfg["depth"], cfg["scale_bits"], cfg["first_bits"]
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=n,
                     coeff_mod_bit_sizes=[fb] + [sb] * depth + [max(fb, 60)], n_threads=cfg.get("threads", 1))
    ctx.global_scale = 2.0**sb
    return ctx


def make_worker(cfg):
    from protocol import error_bits

    ctx = context()
    ctx.generate_relin_keys()
    slots = cfg["N"] // 2
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    xl = x.tolist()
    cx, cy = ts.ckks_vector(ctx, xl), ts.ckks_vector(ctx, y.tolist())
    mb = float(cfg.get("check_bits", 8))

    def chk(decode, want):
        def check(out):
            bits = error_bits(float(np.max(np.abs(np.asarray(decode(out)) - want))))
            return bits >= mb, bits, f"{bits:.1f} bits (need {mb:g})"
        return check

    dec = lambda v: v.decrypt()  # noqa: E731
    ops = {
        "encrypt": (lambda: ts.ckks_vector(ctx, xl), chk(dec, x)),
        "decrypt_decode": (lambda: cx.decrypt(), chk(lambda v: v, x)),
        "add": (lambda: cx + cy, chk(dec, x + y)),
        "multiply_relin_rescale": (lambda: cx * cy, chk(dec, x * y)),
    }
    info = {"library": "tenseal", "version": getattr(ts, "__version__", "?"), "build": "PyPI wheel (Microsoft SEAL)",
            "secret": "uniform ternary",
            "key_switching": "one special prime of max(first_bits, 60) bits (SEAL: dnum = number of primes)",
            "encrypt_includes_encode": True}
    return {"info": info, "ops": {k: v for k, v in ops.items() if k in cfg.get("ops", ops)}}


def main():
    ctx = context()
    n, sb = cfg["N"], cfg["scale_bits"]
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


if __name__ == "__main__":
    if "--serve" in sys.argv:
        from protocol import serve

        serve(make_worker)
    else:
        main()
