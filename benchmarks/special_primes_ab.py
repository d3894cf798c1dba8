"""Special-prime size A/B (issue 21, "IFMA on every limb"): the same CKKS anchor parameters with
special primes of ``--bits`` sizes (e.g. 61 = the plain AVX-512 path, 50 = IFMA, q < 2^50),
rounds interleaved, CPU time (``time.process_time``), in one process; plus the precision after
multiply and rotate (mean and minimum bits over all slots, inputs uniform in [-1, 1], the
bootstrapping issue's metric, ``wavis.ckks.bootstrap.diagnostics.precision_bits``).

    WAVIS_THREADS=1 .venv/bin/python benchmarks/special_primes_ab.py --configs n14,n16 --bits 61,50 \
        [--rounds 5] [--reps 3] [--security testing] [--out benchmarks/results/special_primes_ab.json]

Configs are the harness's (``wavis.bench.suites.CKKS_CONFIGS``). Prints one JSON object: per
config and size the log2(QP), special-prime count and sizes, precision, and per operation the
per-round CPU ms, their median, and the median of the per-round ratios to the first size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("WAVIS_THREADS", "1")

import numpy as np  # noqa: E402

from wavis.bench.suites import CKKS_CONFIGS  # noqa: E402
from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator  # noqa: E402
from wavis.ckks.bootstrap.diagnostics import precision_bits  # noqa: E402


def setup(cfg: dict, bits: int, security: str) -> dict:
    p = CkksParameters(poly_degree=cfg["N"], scale_bits=cfg["scale_bits"], max_depth=cfg["depth"],
                       first_mod_bits=cfg["first_bits"], dnum=cfg["dnum"], special_mod_bits=bits,
                       security_level=security)
    kg = KeyGenerator(p)
    ev = Evaluator(p, kg.evaluation_keys(galois_steps=list(range(1, 9))))
    enc, encr, dec = Encoder(p), Encryptor(p, kg.public_key()), Decryptor(p, kg.secret_key)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, p.slot_count), rng.uniform(-1, 1, p.slot_count)
    cx, cy = encr.encrypt(enc.encode(x)), encr.encrypt(enc.encode(y))

    def real(ct):
        return enc.decode(dec.decrypt(ct)).real

    prec = {"multiply": precision_bits(real(ev.multiply(cx, cy)) - x * y),
            "rotate": precision_bits(real(ev.rotate(cx, 1)) - np.roll(x, -1)),
            "fresh": precision_bits(real(cx) - x)}
    ops = {"multiply_relin_rescale": lambda: ev.multiply(cx, cy), "rotate": lambda: ev.rotate(cx, 1),
           "hoisted_rotations_8": lambda: ev.rotate_many(cx, range(1, 9))}
    info = {"log_qp": round(p.log_qp_bits, 1), "special_bits": [q.bit_length() for q in p.special_moduli],
            "limbs": len(p.moduli), "dnum": p.dnum,
            "precision": {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in prec.items()}}
    return {"ops": ops, "info": info}


def cpu_ms(fn, reps: int) -> float:
    fn()
    c = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - c) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="n14")
    ap.add_argument("--bits", default="61,50")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--security", default="128-bit",
                    help="'testing' times a chain the 128-bit bound refuses (say so next to its numbers)")
    ap.add_argument("--out")
    a = ap.parse_args()
    sizes = [int(b) for b in a.bits.split(",")]
    result = {"cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "),
              "threads": os.environ.get("WAVIS_THREADS"),
              "security": a.security, "load_start": os.getloadavg()[0], "configs": {}}
    for name in a.configs.split(","):
        cfg = CKKS_CONFIGS[name]
        setups = {b: setup(cfg, b, a.security) for b in sizes}
        times = {b: {op: [] for op in setups[b]["ops"]} for b in sizes}
        for r in range(a.rounds):
            for op in setups[sizes[0]]["ops"]:
                order = sizes if r % 2 == 0 else sizes[::-1]
                for b in order:
                    times[b][op].append(cpu_ms(setups[b]["ops"][op], a.reps))
        out = {}
        for b in sizes:
            row = {"info": setups[b]["info"], "ops": {}}
            for op, ts in times[b].items():
                ratios = [t / t0 for t, t0 in zip(ts, times[sizes[0]][op])]
                row["ops"][op] = {"cpu_ms": [round(t, 2) for t in ts], "median_ms": round(statistics.median(ts), 2),
                                  f"ratio_to_{sizes[0]}": round(statistics.median(ratios), 3),
                                  "ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)]}
            out[str(b)] = row
        result["configs"][name] = out
        del setups
    result["load_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
