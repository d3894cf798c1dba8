"""Quick back-to-back check of the CKKS hot operations: wavis vs OpenFHE, same parameters, same minute.

Usage:
    .venv/bin/python benchmarks/ckks_quick.py [--N 16384|65536] [--threads 1] [--rounds 3] [--reps 5] [--poly-reps 1]

Each round times wavis (encrypt incl. encode, decrypt incl. decode, add, multiply+relinearize+rescale,
rotate, rescale, degree-15 polynomial as in bench_ckks.py) and then OpenFHE (benchmarks/.venv-openfhe, its own process) with the
parameters of benchmarks/bench_ckks.py; prints the per-round numbers and the medians, and the
wavis/OpenFHE ratio of the medians. Much faster than bench_ckks.py (no matvec/hoisting, few
Galois keys); meant for iterating on the kernels on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_ckks import CONFIGS  # noqa: E402

OPENFHE = r"""
import json, os, sys, time
cfg = json.loads(sys.argv[1]); os.environ["OMP_NUM_THREADS"] = str(cfg["threads"])
import openfhe as o
p = o.CCParamsCKKSRNS(); p.SetMultiplicativeDepth(cfg["depth"]); p.SetScalingModSize(cfg["scale_bits"])
p.SetFirstModSize(cfg["first_bits"]); p.SetRingDim(cfg["N"]); p.SetBatchSize(cfg["N"] // 2)
p.SetSecurityLevel(o.SecurityLevel.HEStd_128_classic); p.SetKeySwitchTechnique(o.KeySwitchTechnique.HYBRID)
p.SetNumLargeDigits(cfg["dnum"]); p.SetScalingTechnique(o.ScalingTechnique.FIXEDMANUAL)
cc = o.GenCryptoContext(p)
for f in (o.PKESchemeFeature.PKE, o.PKESchemeFeature.KEYSWITCH, o.PKESchemeFeature.LEVELEDSHE,
          o.PKESchemeFeature.ADVANCEDSHE): cc.Enable(f)
kp = cc.KeyGen(); cc.EvalMultKeyGen(kp.secretKey); cc.EvalRotateKeyGen(kp.secretKey, [1])
pt = cc.MakeCKKSPackedPlaintext([0.5] * (cfg["N"] // 2)); x = cc.Encrypt(kp.publicKey, pt)
def t(f, n=cfg["reps"]):
    f(); s = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - s) / n * 1e3
m = cc.EvalMult(x, x)
import numpy as np
coeffs = (np.random.default_rng(1).uniform(-1, 1, 16) / 16).tolist()
print(json.dumps({"encrypt": t(lambda: cc.Encrypt(kp.publicKey, pt)), "decrypt": t(lambda: cc.Decrypt(kp.secretKey, x)),
                  "add": t(lambda: cc.EvalAdd(x, x), max(20, cfg["reps"])),
                  "multiply_relin_rescale": t(lambda: cc.Rescale(cc.EvalMult(x, x))),
                  "rotate": t(lambda: cc.EvalRotate(x, 1)), "rescale": t(lambda: cc.Rescale(m)),
                  "poly_degree15": t(lambda: cc.EvalPoly(x, coeffs), cfg["poly_reps"])}))
"""


def wavis_times(cfg: dict, reps: int, poly_reps: int = 1) -> dict:
    import numpy as np

    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator

    p = CkksParameters(poly_degree=cfg["N"], scale_bits=cfg["scale_bits"], max_depth=cfg["depth"],
                       first_mod_bits=cfg["first_bits"], dnum=cfg["dnum"])
    kg = KeyGenerator(p)
    ev = Evaluator(p, kg.evaluation_keys(galois_steps=[1]))
    enc, e, d = Encoder(p), Encryptor(p, kg.public_key()), Decryptor(p, kg.secret_key)
    x = np.random.default_rng(1).uniform(-1, 1, p.slot_count)
    ct = e.encrypt(enc.encode(x))
    m = ev.multiply(ct, ct, rescale=False)

    from wavis.ckks.polynomial import evaluate_polynomial

    coeffs = np.random.default_rng(1).uniform(-1, 1, 16) / 16

    def t(f, n=reps):
        f()
        s = time.perf_counter()
        for _ in range(n):
            f()
        return (time.perf_counter() - s) / n * 1e3

    return {"encrypt": t(lambda: e.encrypt(enc.encode(x))), "decrypt": t(lambda: enc.decode(d.decrypt(ct))),
            "add": t(lambda: ev.add(ct, ct), max(20, reps)),
            "multiply_relin_rescale": t(lambda: ev.multiply(ct, ct)), "rotate": t(lambda: ev.rotate(ct, 1)),
            "rescale": t(lambda: ev.rescale(m)),
            "poly_degree15": t(lambda: evaluate_polynomial(ev, ct, coeffs), poly_reps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, default=16384, choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--poly-reps", type=int, default=1, help="repetitions of the degree-15 polynomial")
    args = ap.parse_args()
    cfg = dict(CONFIGS[args.N], reps=args.reps, threads=args.threads, poly_reps=args.poly_reps)
    env = dict(os.environ, WAVIS_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    env.pop("PYTHONPATH", None)
    ofpy = HERE / ".venv-openfhe" / "bin" / "python"
    rows: dict[str, list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        w = subprocess.run([sys.executable, __file__, "--_wavis", json.dumps(cfg)], capture_output=True, text=True,
                           env=env, check=True)
        wv = json.loads(w.stdout.strip().splitlines()[-1])
        o = subprocess.run([str(ofpy), "-c", OPENFHE, json.dumps(cfg)], capture_output=True, text=True, env=env,
                           check=True)
        ov = json.loads(o.stdout.strip().splitlines()[-1])
        print(f"round {r}: " + "  ".join(f"{k} {wv[k]:.1f}/{ov[k]:.1f}" for k in wv))
        for k in wv:
            rows.setdefault(k, []).append((wv[k], ov[k]))
    print(f"\nN={args.N} threads={args.threads}: medians over {args.rounds} rounds (ms)")
    print(f"{'operation':26s} {'wavis':>9s} {'OpenFHE':>9s} {'ratio':>7s}")
    for k, v in rows.items():
        a, b = statistics.median(x for x, _ in v), statistics.median(y for _, y in v)
        print(f"{k:26s} {a:9.2f} {b:9.2f} {a / b:7.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--_wavis":
        c = json.loads(sys.argv[2])
        print(json.dumps(wavis_times(c, c["reps"], c["poly_reps"])))
    else:
        main()
