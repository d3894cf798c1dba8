#!/usr/bin/env python3
"""CKKS bootstrapping benchmark: latency per stage, amortised time per slot and precision
(mean / min bits over all slots, uniform [−1, 1] real inputs, and one complex run), for a bootstrap preset, at
1 and 2 threads; optionally OpenFHE's EvalBootstrap side by side, interleaved (its own Python
3.10 venv, see benchmarks/openfhe_bootstrap.py; the PyPI wheel is built without SIMD/HEXL).

    .venv/bin/python benchmarks/bench_bootstrap.py                          # n65536, full slots, 1 and 2 threads
    .venv/bin/python benchmarks/bench_bootstrap.py --preset testing-n1024 --threads 2
    .venv/bin/python benchmarks/bench_bootstrap.py --slots 1024 --threads 2  # sparse packing
    .venv/bin/python benchmarks/bench_bootstrap.py --openfhe                  # + benchmarks/openfhe_bootstrap.py

Every configuration runs in a fresh subprocess with WAVIS_THREADS set (the C++ core reads it at
start). Results go to benchmarks/results/bootstrap_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one(preset: str, slots: int | None, reps: int, constant: bool = False) -> dict:
    """Run inside the subprocess: keygen, then ``reps`` + 1 bootstraps of real inputs (the first
    also encodes and caches the DFT diagonals) and one of complex inputs, with per-stage wall
    and CPU (user+sys of this process) times and the load average around each (``stages_cpu_s``: CPU time of each stage)."""
    import numpy as np

    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, KeyGenerator
    from wavis.ckks.bootstrap import Bootstrapper

    params = CkksParameters.bootstrappable(preset)
    n_slots = slots or params.slot_count
    plan = Bootstrapper.key_plan(params, slots)
    t = time.perf_counter()
    kg = KeyGenerator(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    keygen_s = time.perf_counter() - t
    bs = Bootstrapper(params, evk, slots=slots)
    enc, dec = Encoder(params), Decryptor(params, kg.secret_key)
    encryptor = Encryptor(params, kg.public_key())
    rng = np.random.default_rng(1)
    runs = []
    for r in range(reps + 2):
        kind = "complex" if r == reps + 1 else "real"
        v = rng.uniform(-1, 1, n_slots) + (1j * rng.uniform(-1, 1, n_slots) if kind == "complex" else 0)
        x = np.tile(v, params.slot_count // n_slots)
        ct = encryptor.encrypt(enc.encode(x, level=0))
        stages, stages_cpu = {}, {}
        load0 = os.getloadavg()[0]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        bs.check_input(ct)

        def stage(name, fn):
            c, t = time.process_time(), time.perf_counter()
            out = fn()
            stages[name], stages_cpu[name] = time.perf_counter() - t, time.process_time() - c
            return out

        y = stage("mod_raise", lambda: bs.sub_sum(bs.mod_raise(ct)))
        parts = stage("coeffs_to_slots", lambda: bs.coeffs_to_slots(y))
        parts = stage("eval_mod", lambda: [bs.eval_mod(p) for p in parts])
        out = stage("slots_to_coeffs", lambda: bs.slots_to_coeffs(parts))
        total = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        err = np.maximum(np.abs(enc.decode(dec.decrypt(out)) - x), 2.0**-60)
        runs.append(dict(kind=kind, total_s=total, cpu_s=cpu, stages_s=stages, stages_cpu_s=stages_cpu,
                         load_avg=[load0, os.getloadavg()[0]],
                         mean_bits=float(np.mean(-np.log2(err))), min_bits=float(-np.log2(np.max(err)))))
    if constant:  # the sine's worst case: all the energy in one coefficient (docs: "Input contract")
        x = np.full(params.slot_count, 0.999)
        ct = encryptor.encrypt(enc.encode(x, level=0))
        for k in sorted({bs.sine_headroom_bits, 9, 6}, reverse=True):
            b = bs if k == bs.sine_headroom_bits else Bootstrapper(params, evk, slots=slots, sine_headroom_bits=k)
            err = np.maximum(np.abs(enc.decode(dec.decrypt(b.bootstrap(ct))) - x), 2.0**-60)
            runs.append(dict(kind=f"constant k_n={k}", mean_bits=float(np.mean(-np.log2(err))),
                             min_bits=float(-np.log2(np.max(err)))))
    real = [r for r in runs if r["kind"] == "real"]
    cplx = [r for r in runs if r["kind"] == "complex"]
    warm = real[1:] or real
    best = min(warm, key=lambda r: r["total_s"])
    return dict(preset=preset, poly_degree=params.poly_degree, slots=n_slots, levels_after=params.max_depth,
                keygen_s=keygen_s, key_bytes=plan.key_bytes, key_count=plan.key_count,
                first_run_s=runs[0]["total_s"], best=best,
                mean_total_s=sum(r["total_s"] for r in warm) / len(warm),
                per_slot_us=best["total_s"] / n_slots * 1e6,
                precision_mean_bits=min(r["mean_bits"] for r in real), precision_min_bits=min(r["min_bits"] for r in real),
                complex_mean_bits=cplx[0]["mean_bits"], complex_min_bits=cplx[0]["min_bits"], runs=runs,
                sine_headroom_bits=bs.sine_headroom_bits,
                effective_degree=bs.effective_degree, failure_log2=bs.failure_probability_log2())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="n65536")
    ap.add_argument("--slots", type=int, default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--constant", action="store_true",
                    help="also bootstrap a constant vector at the default headroom, k_n = 9 and k_n = 6")
    ap.add_argument("--openfhe", action="store_true", help="also run benchmarks/openfhe_bootstrap.py (interleaved)")
    ap.add_argument("--openfhe-python", default=os.environ.get("OPENFHE_PYTHON", "/work/refvenv/openfhe/bin/python"),
                    help="the Python 3.10 venv holding the PyPI openfhe wheel (outside the repository)")
    ap.add_argument("--openfhe-config", default="{}",
                    help='extra JSON for openfhe_bootstrap.py, e.g. \'{"scale_mod_bits": 59, "dnum": 7}\'')
    ap.add_argument("--openfhe-mem-gib", type=float, default=14.0,
                    help="address-space limit of the OpenFHE child (it fails with bad_alloc instead of "
                         "waking the OOM killer on a shared host)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        cfg = json.loads(args.child)
        print(json.dumps(one(cfg["preset"], cfg["slots"], cfg["reps"], cfg.get("constant", False))))
        return 0
    results = []
    for th in args.threads:
        cfg = dict(preset=args.preset, slots=args.slots, reps=args.reps, constant=args.constant)
        env = dict(os.environ, WAVIS_THREADS=str(th))
        r = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        w = json.loads(r.stdout.strip().splitlines()[-1])
        entry = {"threads": th, "wavis": w}
        b = w["best"]
        print(f"WAVIS {w['preset']} N={w['poly_degree']} slots={w['slots']} threads={th}: bootstrap "
              f"{b['total_s']:.2f} s (mean {w['mean_total_s']:.2f} s, first {w['first_run_s']:.2f} s) = "
              + ", ".join(f"{k} {v:.2f}" for k, v in b["stages_s"].items())
              + f"; CPU {b['cpu_s']:.2f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in b["stages_cpu_s"].items()) + ");"
              + f" load {b['load_avg'][0]:.1f}-{b['load_avg'][1]:.1f}; {w['per_slot_us']:.1f} µs/slot; "
              f"precision real mean {w['precision_mean_bits']:.1f} / min {w['precision_min_bits']:.1f} bits, complex "
              f"{w['complex_mean_bits']:.1f} / {w['complex_min_bits']:.1f}; keygen {w['keygen_s']:.1f} s, keys "
              f"{w['key_bytes'] / 1e9:.2f} GB",
              flush=True)
        if args.openfhe:
            py = Path(args.openfhe_python)
            if not py.exists():
                entry["openfhe"] = "not installed (see benchmarks/openfhe_bootstrap.py)"
            else:
                cfg_o = dict(N=w["poly_degree"], slots=w["slots"], threads=th, levels_after=w["levels_after"],
                             reps=args.reps, **json.loads(args.openfhe_config))
                limit = int(args.openfhe_mem_gib * 2**30)

                def cap():  # bad_alloc past the limit; and if the host runs out first, the OOM killer takes this one
                    import resource
                    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                    try:
                        Path("/proc/self/oom_score_adj").write_text("1000")
                    except OSError:
                        pass

                r = subprocess.run([str(py), str(HERE / "openfhe_bootstrap.py"), json.dumps(cfg_o)], preexec_fn=cap,
                                   env=dict(os.environ, OMP_NUM_THREADS=str(th)), capture_output=True, text=True)
                print(r.stderr[-3000:], file=sys.stderr, flush=True)
                entry["openfhe"] = (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else
                                    f"exit {r.returncode} under a {args.openfhe_mem_gib} GiB address-space limit: "
                                    + r.stderr[-2000:])
                print(f"OpenFHE (PyPI wheel, no SIMD) threads={th}: " + json.dumps(
                    {k: v for k, v in entry["openfhe"].items() if k != "runs"} if isinstance(entry["openfhe"], dict)
                    else entry["openfhe"]), flush=True)
        for r in w["runs"]:
            if r["kind"].startswith("constant"):
                print(f"  {r['kind']}: precision mean {r['mean_bits']:.1f} / min {r['min_bits']:.1f} bits", flush=True)
        results.append(entry)
    out = HERE / "results" / "bootstrap_cpu.json"
    out.parent.mkdir(exist_ok=True)
    prev = json.loads(out.read_text()) if out.exists() else {"runs": []}
    prev["runs"] = [r for r in prev["runs"] if not (r["wavis"]["preset"] == args.preset
                                                    and r["wavis"]["slots"] == results[0]["wavis"]["slots"]
                                                    and r["threads"] in args.threads)] + results
    out.write_text(json.dumps(prev, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
