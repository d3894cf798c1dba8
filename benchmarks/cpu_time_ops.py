"""CPU time (not wall time) of the hot CKKS and TFHE operations, single thread: for before/after
comparisons on a loaded machine, where wall times swing 2x but a single-threaded operation's
CPU time does not.

Usage:
    WAVIS_THREADS=1 .venv/bin/python benchmarks/cpu_time_ops.py [--reps 15]

Prints one JSON object: per operation the median CPU ms (``time.process_time``) and the minimum
wall ms. CKKS parameters are bench_ckks.py's N=16384 configuration; TFHE single gates via
``ServerKey.gate`` (threads=1). Uses only public API that predates the backend seam (issue 11),
so the same script times older commits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()

    from wavis import tfhe
    from wavis.ckks import CkksParameters, Encoder, Encryptor, Evaluator, KeyGenerator

    p = CkksParameters(poly_degree=16384, scale_bits=30, max_depth=10, first_mod_bits=50, dnum=11)
    kg = KeyGenerator(p, seed=bytes(32))
    ev = Evaluator(p, kg.evaluation_keys(galois_steps=[1]))
    enc = Encoder(p)
    ct = Encryptor(p, kg.public_key(), seed=bytes(range(32))).encrypt(
        enc.encode(np.random.default_rng(1).uniform(-1, 1, p.slot_count)))
    m = ev.multiply(ct, ct, rescale=False)
    ops = {"ckks_add": lambda: ev.add(ct, ct), "ckks_multiply_relin_rescale": lambda: ev.multiply(ct, ct),
           "ckks_rotate": lambda: ev.rotate(ct, 1), "ckks_rescale": lambda: ev.rescale(m)}
    for preset in ("fast_128", "standard_128"):
        ck, sk = tfhe.keygen(preset, seed=b"b" * 32)
        sk.prepare()
        a, b = ck.encrypt(True), ck.encrypt(False)
        ops[f"tfhe_nand_{preset}"] = lambda sk=sk, a=a, b=b: sk.gate("NAND", a, b)
        ops[f"tfhe_mux_{preset}"] = lambda sk=sk, a=a, b=b: sk.gate("MUX", a, b, a)
    out = {}
    for name, f in ops.items():
        f()
        walls, cpus = [], []
        for _ in range(args.reps):
            w, c = time.perf_counter(), time.process_time()
            f()
            cpus.append(time.process_time() - c)
            walls.append(time.perf_counter() - w)
        out[name] = {"cpu_median_ms": round(1e3 * statistics.median(cpus), 3),
                     "wall_min_ms": round(1e3 * min(walls), 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
