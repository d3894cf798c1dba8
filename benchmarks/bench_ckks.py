"""CKKS benchmark: wavis vs OpenFHE (and TenSEAL where it has the operation), back to back on
the same machine with the same ring, depth, scale, first-prime size and dnum.

Usage:
    .venv/bin/python benchmarks/bench_ckks.py [--N 16384 65536] [--threads 1 2] [--reps 5]

Reference libraries run from their own virtual environments (never the main .venv):
    benchmarks/.venv-openfhe  (Python 3.10: ~/.pyenv/versions/3.10.*/bin/python -m venv …; pip install openfhe)
    benchmarks/.venv-tenseal  (Python 3.11: python3 -m venv …; pip install tenseal)
A missing one is reported and skipped. Prints a table (ms per operation and the ratio
wavis/OpenFHE) and writes benchmarks/results/ckks_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {  # 128-bit, depth ≥ 10, chosen so every library accepts them (log QP ≤ HE Standard bound)
    16384: {"N": 16384, "depth": 10, "scale_bits": 30, "first_bits": 50, "dnum": 11},
    65536: {"N": 65536, "depth": 20, "scale_bits": 40, "first_bits": 60, "dnum": 3},
}
OPS = ["encrypt", "decrypt", "add", "multiply_relin_rescale", "rotate", "hoisted_rotations_8",
       "matvec_64x64", "matvec_256x256", "poly_degree15"]


def timeit(fn, reps):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def run_wavis(cfg: dict, reps: int) -> dict:
    import numpy as np

    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
    from wavis.ckks.linalg import matmul, matmul_galois_steps
    from wavis.ckks.polynomial import evaluate_polynomial

    params = CkksParameters(poly_degree=cfg["N"], scale_bits=cfg["scale_bits"], max_depth=cfg["depth"],
                            security_level="128-bit", first_mod_bits=cfg["first_bits"], dnum=cfg["dnum"])
    slots = params.slot_count
    steps = set(range(1, 9))
    for d in (64, 256):
        steps |= set(matmul_galois_steps(d, d, slots))
    kg = KeyGenerator(params)
    evk = kg.evaluation_keys(galois_steps=sorted(steps))
    enc, encr, dec = Encoder(params), Encryptor(params, kg.public_key()), Decryptor(params, kg.secret_key)
    ev = Evaluator(params, evk)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    cx, cy = encr.encrypt(enc.encode(x)), encr.encrypt(enc.encode(y))
    out = {
        "encrypt": timeit(lambda: encr.encrypt(enc.encode(x)), reps),
        "decrypt": timeit(lambda: enc.decode(dec.decrypt(cx)), reps),
        "add": timeit(lambda: ev.add(cx, cy), reps),
        "multiply_relin_rescale": timeit(lambda: ev.multiply(cx, cy), reps),
        "rotate": timeit(lambda: ev.rotate(cx, 1), reps),
        "hoisted_rotations_8": timeit(lambda: ev.rotate_many(cx, range(1, 9)), reps),
    }
    for d in (64, 256):
        m = rng.uniform(-1, 1, (d, d))
        out[f"matvec_{d}x{d}"] = timeit(lambda: matmul(ev, m, cx), max(1, reps // 2))
    coeffs = rng.uniform(-1, 1, 16) / 16
    out["poly_degree15"] = timeit(lambda: evaluate_polynomial(ev, cx, coeffs), max(1, reps // 2))
    got = enc.decode(dec.decrypt(ev.multiply(cx, cy))).real
    out["precision_bits_mult"] = float(-np.log2(np.max(np.abs(got - x * y))))
    out["log_qp"] = round(params.log_qp_bits, 1)
    return out


def run_ref(venv: str, script: str, cfg: dict, reps: int, threads: int) -> dict | str:
    py = HERE / venv / "bin" / "python"
    if not py.exists():
        return f"not installed ({py})"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        r = subprocess.run([str(py), str(HERE / script), json.dumps(dict(cfg, reps=reps, threads=threads))],
                           capture_output=True, text=True, timeout=3000, env=env)
    except subprocess.TimeoutExpired:
        return "timed out"
    if r.returncode != 0:
        return "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:300]
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, nargs="+", default=[16384, 65536], choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "ckks_cpu.json"))
    args = ap.parse_args()
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": sys.version.split()[0]}, "runs": []}
    for n in args.N:
        cfg = CONFIGS[n]
        for th in args.threads:
            os.environ["WAVIS_THREADS"] = str(th)
            reps = args.reps if n <= 16384 else max(2, args.reps // 2)
            wav = subprocess.run([sys.executable, __file__, "--_wavis", json.dumps(dict(cfg, reps=reps))],
                                 capture_output=True, text=True, env=dict(os.environ, WAVIS_THREADS=str(th)))
            w = json.loads(wav.stdout.strip().splitlines()[-1]) if wav.returncode == 0 else {"error": wav.stderr[-500:]}
            of = run_ref(".venv-openfhe", "openfhe_ckks.py", cfg, reps, th)
            ts = run_ref(".venv-tenseal", "tenseal_ckks.py", cfg, reps, th)
            results["runs"].append({"config": cfg, "threads": th, "wavis": w, "openfhe": of, "tenseal": ts})
            print(f"\nN={n} depth={cfg['depth']} scale_bits={cfg['scale_bits']} dnum={cfg['dnum']} threads={th}")
            print(f"{'operation':26s} {'wavis ms':>10s} {'OpenFHE ms':>11s} {'TenSEAL ms':>11s} {'wavis/OpenFHE':>14s}")
            for op in OPS + ["precision_bits_mult"]:
                wv = w.get(op) if isinstance(w, dict) else None
                ov = of.get(op) if isinstance(of, dict) else None
                tv = ts.get(op) if isinstance(ts, dict) else None
                ratio = f"{wv / ov:.2f}" if wv and ov and op != "precision_bits_mult" else "-"
                fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
                print(f"{op:26s} {fmt(wv):>10s} {fmt(ov):>11s} {fmt(tv):>11s} {ratio:>14s}")
            for name, r in (("OpenFHE", of), ("TenSEAL", ts)):
                if isinstance(r, str):
                    print(f"  {name}: {r}")
            if "error" in w:
                print("  wavis failed:", w["error"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--_wavis":
        c = json.loads(sys.argv[2])
        print(json.dumps(run_wavis(c, c.pop("reps"))))
    else:
        main()
