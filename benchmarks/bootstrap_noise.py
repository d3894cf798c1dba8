#!/usr/bin/env python3
"""Where the bits of a bootstrap go: each stage's own error as the slot error it alone leaves
(``wavis.ckks.bootstrap.diagnostics.stage_errors``; bits = mean over slots of −log2 |error|,
the figure bench_bootstrap.py reports end to end).

    .venv/bin/python benchmarks/bootstrap_noise.py --preset testing-n1024
    .venv/bin/python benchmarks/bootstrap_noise.py --like n65536 --poly-degree 8192   # same chain, small ring
    .venv/bin/python benchmarks/bootstrap_noise.py --like n65536 --poly-degree 8192 --kind constant

``--like P --poly-degree N`` copies preset P's chain (prime sizes, K, r, degree, h, headroom,
dnum) onto a non-secure ring of degree N (``security_level="testing"``): the noise of a stage
grows by about 1.5 bits per doubling of N (√2 from the slot count, 2 from the rounding terms
e·s of a dense secret), so N = 2^13 predicts N = 2^16 within a bit after subtracting 4.5 bits.
``--set key=value`` overrides any preset field (a Python literal, e.g. ``--set
sine_headroom_bits=12 --set "evalmod_bits=(60, 60, 60, 60, 60, 60, 60, 60)"``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import replace

import numpy as np


def register(like: str, poly_degree: int, overrides: dict) -> str:
    """Register a non-secure copy of preset ``like`` at ``poly_degree`` (process-local)."""
    from wavis.ckks.presets import BOOTSTRAP_PRESETS

    base = BOOTSTRAP_PRESETS[like]
    name = f"noise-{like}-n{poly_degree}"
    p = replace(base, name=name, poly_degree=poly_degree, security_level="testing", precision_bits=None, **overrides)
    p.check()
    BOOTSTRAP_PRESETS[name] = p
    return name


def run(preset: str, kind: str = "real", level: int = 0, seed: int = 1, headroom: int | None = None) -> dict:
    from wavis.ckks import CkksParameters, Encoder, Encryptor, KeyGenerator
    from wavis.ckks.bootstrap import Bootstrapper
    from wavis.ckks.bootstrap.diagnostics import stage_errors

    params = CkksParameters.bootstrappable(preset)
    n = params.slot_count
    t0 = time.perf_counter()
    kg = KeyGenerator(params, seed=bytes([seed]) * 32)
    plan = Bootstrapper.key_plan(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    keygen_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    if kind == "constant":  # all the mass in one coefficient: the sine's worst case (largest |ε|)
        x = np.full(n, 1.0 - 2.0**-10)
    else:
        x = rng.uniform(-1, 1, n) + (1j * rng.uniform(-1, 1, n) if kind == "complex" else 0)
    ct = Encryptor(params, kg.public_key()).encrypt(Encoder(params).encode(x, level=level))
    t0 = time.perf_counter()
    bs = Bootstrapper(params, evk, sine_headroom_bits=headroom)
    errors = stage_errors(bs, kg.secret_key, ct)
    return dict(preset=preset, poly_degree=params.poly_degree, kind=kind, level=level, keygen_s=round(keygen_s, 1),
                sine_headroom_bits=bs.sine_headroom_bits,
                diagnostic_s=round(time.perf_counter() - t0, 1),
                errors={k: ({a: round(b, 2) for a, b in v.items()} if isinstance(v, dict) else v)
                        for k, v in errors.items()},
                log2_scales=[round(float(np.log2(params.level_scale(lv))), 2) for lv in range(params.top_level + 1)],
                chain_bits=[q.bit_length() for q in params.moduli])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None)
    ap.add_argument("--like", default="n65536")
    ap.add_argument("--poly-degree", type=int, default=4096)
    ap.add_argument("--set", action="append", default=[], help="preset field override key=value (Python literal)")
    ap.add_argument("--kind", choices=["real", "complex", "constant"], default="real")
    ap.add_argument("--level", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--headroom", type=int, default=None,
                    help="the bootstrap's sine headroom k_n (default: the slot-count rule; pass the full-size "
                         "value, e.g. 12, to mimic N = 2^16 on a small ring)")
    args = ap.parse_args()
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = ast.literal_eval(v)
    name = args.preset or register(args.like, args.poly_degree, overrides)
    r = run(name, args.kind, args.level, args.seed, args.headroom)
    r["overrides"] = overrides
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
