"""Calibrate admission by cost (``wavis.service.ops``): run the real key generation / key
parsing / matmul for a few parameter sets, each in a fresh process, and compare the measured
peak RSS growth and CPU time with the registry's estimates.

    .venv/bin/python benchmarks/bench_admission.py [--quick] [--out benchmarks/results/admission.json]

The estimate should be >= the measurement (admission refuses what would not fit) without
being wildly above it (it would refuse what fits). Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
case = json.loads(sys.argv[1])
from wavis.service import ops, serverkeys, fhe
from wavis.service.settings import Limits
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
params = case["params"]
if case["op"] == "keygen":
    est = ops.keygen_cost(params, case["steps"])
    r0, c0 = rss(), cpu()
    gen = serverkeys.generate(params, list(range(1, case["steps"] + 1)), Limits(public_key=2**30, ciphertext_body_ceiling=2**30))
elif case["op"] == "upload":
    import subprocess
    gen = ("import json, sys; from wavis import serialize; from wavis.ckks import CkksParameters, KeyGenerator; "
           "p = CkksParameters.from_dict(json.loads(sys.argv[1])); kg = KeyGenerator(p); "
           "print(serialize.b64encode(serialize.dumps(kg.public_key()))); "
           "print(serialize.b64encode(serialize.dumps(kg.evaluation_keys(galois_steps=list(range(1, int(sys.argv[2]) + 1))))))")
    out = subprocess.run([sys.executable, "-c", gen, json.dumps(params), str(case["steps"])], capture_output=True,
                         text=True, check=True).stdout.split()  # keys made in another process: a clean RSS here
    pk, evk = out[0], out[1]
    p = fhe.build_params(params)
    est = ops.upload_cost(params, len(evk))
    r0, c0 = rss(), cpu()
    parsed = fhe.parse_key_upload(p.to_dict(), pk, evk, Limits(public_key=2**30, ciphertext_body_ceiling=2**30))
elif case["op"] == "matmul":
    from wavis.ckks import CkksParameters, KeyGenerator, Encoder, Encryptor, Evaluator
    from wavis.ckks.linalg import matmul, matmul_galois_steps
    p = CkksParameters.from_dict(params)
    rows = cols = case["dim"]
    kg = KeyGenerator(p)
    ev = Evaluator(p, kg.evaluation_keys(galois_steps=matmul_galois_steps(rows, cols, p.slot_count)))
    ct = Encryptor(p, kg.public_key()).encrypt(Encoder(p).encode(np.ones(cols)))
    m = np.random.default_rng(1).standard_normal((rows, cols))
    est = ops.matmul_cost(params, rows, cols)
    r0, c0 = rss(), cpu()
    matmul(ev, m, ct)
print(json.dumps({"est_bytes": est.bytes, "est_cpu_s": est.cpu_s, "rss_growth": rss() - r0, "cpu_s": cpu() - c0}))
"""

CASES = [
    {"op": "keygen", "params": {"poly_degree": 4096, "scale_bits": 25, "max_depth": 1, "first_mod_bits": 30,
                                "special_mod_bits": 40}, "steps": 8},
    {"op": "keygen", "params": {"poly_degree": 8192, "scale_bits": 40, "max_depth": 2}, "steps": 16},
    {"op": "keygen", "params": {"poly_degree": 16384, "scale_bits": 40, "max_depth": 6}, "steps": 16},
    {"op": "upload", "params": {"poly_degree": 8192, "scale_bits": 40, "max_depth": 2}, "steps": 16},
    {"op": "upload", "params": {"poly_degree": 16384, "scale_bits": 40, "max_depth": 6}, "steps": 16},
    {"op": "matmul", "params": {"poly_degree": 8192, "scale_bits": 40, "max_depth": 2}, "dim": 64},
    {"op": "matmul", "params": {"poly_degree": 16384, "scale_bits": 40, "max_depth": 4}, "dim": 128},
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest cases only")
    ap.add_argument("--out", default="benchmarks/results/admission.json")
    args = ap.parse_args()
    cases = CASES[:2] if args.quick else CASES
    rows = []
    print(f"{'case':<48} {'est MiB':>8} {'RSS+ MiB':>9} {'est CPU s':>10} {'CPU s':>7}")
    for case in cases:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True, text=True,
                             timeout=1800)
        if out.returncode != 0:
            print(case, out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["case"] = case
        rows.append(r)
        label = f"{case['op']} N={case['params']['poly_degree']} L={case['params']['max_depth']} " + \
                (f"steps={case['steps']}" if "steps" in case else f"{case['dim']}x{case['dim']}")
        print(f"{label:<48} {r['est_bytes'] / 2**20:8.1f} {r['rss_growth'] / 2**20:9.1f} "
              f"{r['est_cpu_s']:10.2f} {r['cpu_s']:7.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
