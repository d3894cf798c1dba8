"""CPU kernels per SIMD path: CKKS hot operations, NTT per limb, TFHE single gate, one thread.

Usage:
    .venv/bin/python benchmarks/bench_simd_paths.py [--paths ifma avx512 avx2 portable] [--rounds 3]
        [--N 16384] [--reps 5] [--gates 20] [--baseline DIR [--baseline-path PATH]] [--clock wall|cpu]
        [--out FILE.json]

Each round runs every path once, each in its own process with ``WAVIS_SIMD=<path>`` and
``WAVIS_THREADS=1`` (paths interleaved round by round, so a noisy shared machine shows up as
spread, not as a bias against one path), and prints the medians over the rounds. Without
``--paths`` it runs every path the CPU supports (``wavis._core.simd_paths()``); a build that
predates the runtime dispatch (no ``simd_paths``) runs once as ``default``. ``--baseline DIR``
adds another build (a directory holding its ``wavis`` package, e.g. a copy made before a change)
to every round, run first, as the column ``baseline``: before/after, back to back
(``--baseline-path`` forces its SIMD path, e.g. ``avx2``). ``--clock cpu`` times with the
process's CPU time (``time.process_time``; the runs are single-threaded) instead of wall time:
on a loaded machine wall times swing, CPU times much less.

Rows (ms unless named): CKKS at the bench_ckks.py parameters (encrypt incl. encode, decrypt
incl. decode, add, multiply+relinearize+rescale, rotate, rescale), forward+inverse NTT of one
limb in µs for a 49-bit prime (IFMA-eligible) and a 60-bit prime, and the TFHE fast_128 NAND
gate median (single gate) and per gate in a batch of 16.
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
ROOT = HERE.parent


def measure(cfg: dict) -> dict:
    import numpy as np

    from wavis import _core

    out: dict = {"path": _core.simd_path() if hasattr(_core, "simd_path") else "default"}

    clock = time.process_time if cfg.get("clock") == "cpu" else time.perf_counter

    def t(f, n):
        f()
        s = clock()
        for _ in range(n):
            f()
        return (clock() - s) / n * 1e3

    N = cfg["N"]
    for bits in (49, 60):
        q = _core.generate_ntt_primes(bits, 1, N)
        ctx = _core.RnsContext(N, q)
        a = np.random.default_rng(bits).integers(0, q[0], size=(1, N), dtype=np.uint64)

        def ntt_pair(a=a, ctx=ctx):
            ctx.ntt(a, [0])
            ctx.intt(a, [0])

        out[f"ntt_pair_{bits}bit_us"] = 1e3 * t(ntt_pair, 200)

    sys.path.insert(0, str(HERE))
    from bench_ckks import CONFIGS

    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator

    c = CONFIGS[N]
    p = CkksParameters(poly_degree=N, scale_bits=c["scale_bits"], max_depth=c["depth"],
                       first_mod_bits=c["first_bits"], dnum=c["dnum"])
    kg = KeyGenerator(p)
    ev = Evaluator(p, kg.evaluation_keys(galois_steps=[1]))
    enc, e, d = Encoder(p), Encryptor(p, kg.public_key()), Decryptor(p, kg.secret_key)
    x = np.random.default_rng(1).uniform(-1, 1, p.slot_count)
    ct = e.encrypt(enc.encode(x))
    m = ev.multiply(ct, ct, rescale=False)
    reps = cfg["reps"]
    out.update({"encrypt": t(lambda: e.encrypt(enc.encode(x)), reps),
                "decrypt": t(lambda: enc.decode(d.decrypt(ct)), reps),
                "add": t(lambda: ev.add(ct, ct), max(20, reps)),
                "multiply_relin_rescale": t(lambda: ev.multiply(ct, ct), reps),
                "rotate": t(lambda: ev.rotate(ct, 1), reps),
                "rescale": t(lambda: ev.rescale(m), reps)})

    from wavis import tfhe

    ck, sk = tfhe.keygen("fast_128", seed=bytes(32))
    sk.prepare()
    g0, g1 = ck.encrypt(True), ck.encrypt(False)
    sk.gate("NAND", g0, g1)
    lat = []
    for _ in range(cfg["gates"]):
        s = clock()
        sk.gate("NAND", g0, g1)
        lat.append(1e3 * (clock() - s))
    out["tfhe_fast128_gate"] = statistics.median(lat)
    rng = np.random.default_rng(0)
    A, B = ck.encrypt(rng.random(16) > 0.5), ck.encrypt(rng.random(16) > 0.5)
    s = clock()
    sk.evaluate_batch("NAND", A, B, threads=1)
    out["tfhe_fast128_batch16_per_gate"] = 1e3 * (clock() - s) / 16
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", nargs="*", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--N", type=int, default=16384, choices=[16384, 65536])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--gates", type=int, default=20)
    ap.add_argument("--baseline", default=None, help="directory holding another build's wavis package")
    ap.add_argument("--baseline-path", default=None, help="WAVIS_SIMD for the baseline build (default: its best)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = dict(os.environ, WAVIS_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("WAVIS_SIMD", None)
    paths = args.paths
    if paths is None:
        probe = subprocess.run([sys.executable, __file__, "--_paths"],
                               capture_output=True, text=True, env=env, check=True, cwd="/")
        paths = probe.stdout.split()
    runs = [(p, None) for p in paths]
    if args.baseline:
        runs.insert(0, (args.baseline_path or "default", args.baseline))
    cfg = {"N": args.N, "reps": args.reps, "gates": args.gates, "clock": args.clock}
    rows: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for path, build in runs:
            penv = dict(env)
            if path != "default":
                penv["WAVIS_SIMD"] = path
            if build:
                penv["WAVIS_BENCH_PYTHONPATH"] = build
            p = subprocess.run([sys.executable, __file__, "--_measure", json.dumps(cfg)], capture_output=True,
                               text=True, env=penv, cwd="/")
            if p.returncode:
                sys.exit(f"path {path}: {p.stderr.strip()[-2000:]}")
            v = json.loads(p.stdout.strip().splitlines()[-1])
            label = "baseline" if build else v["path"]
            v.pop("path", None)
            print(f"round {r} {label}: " + "  ".join(f"{k} {x:.2f}" for k, x in v.items()), flush=True)
            for k, x in v.items():
                rows.setdefault(label, {}).setdefault(k, []).append(x)
    keys = list(next(iter(rows.values())))
    print(f"\nmedians over {args.rounds} rounds, 1 thread, N={args.N}, {args.clock} time (ms; NTT pair in µs)")
    print(f"{'':32s}" + "".join(f"{label:>12s}" for label in rows))
    for k in keys:
        print(f"{k:32s}" + "".join(f"{statistics.median(rows[label][k]):12.2f}" for label in rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"config": cfg, "loadavg": os.getloadavg(),
                                              "medians": {lb: {k: statistics.median(v) for k, v in r.items()}
                                                          for lb, r in rows.items()}, "rounds": rows}, indent=1))


def use_pythonpath() -> None:
    """Import wavis from WAVIS_BENCH_PYTHONPATH, bypassing the editable install's import hook."""
    pp = os.environ.get("WAVIS_BENCH_PYTHONPATH")
    if pp:
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
        sys.path.insert(0, pp)


if __name__ == "__main__":
    use_pythonpath()
    if len(sys.argv) > 2 and sys.argv[1] == "--_measure":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_paths":
        from wavis import _core

        print(" ".join(_core.simd_paths()) if hasattr(_core, "simd_paths") else "default")
    else:
        main()
