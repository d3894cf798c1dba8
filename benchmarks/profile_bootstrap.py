#!/usr/bin/env python3
"""Where a bootstrap's time goes: per stage (ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs) and
per ring operation (every method of the CPU backend's ``RnsContext``), for one thread count.

For each operation: calls, wall time, process CPU time (all threads), CPU time of the calling
(Python) thread and minor page faults; per stage the remainder "(outside ring ops)" is the
Python-side work (allocation, copies, bookkeeping) between the native calls. With T threads,
``main ÷ cpu`` near 1/T means the operation's rows are split evenly over the pool; near 1 means
it ran on the calling thread alone (serial). On a loaded host compare CPU columns, not wall.

    WAVIS_THREADS=2 flock /work/locks/bigmem.lock .venv/bin/python benchmarks/profile_bootstrap.py \
        --reps 2 --out benchmarks/results/bootstrap_profile_2t.json

One process per thread count (the C++ pool reads WAVIS_THREADS at start). The first bootstrap
(encoding and caching the DFT diagonals) is not profiled; the last of ``--reps`` profiled runs is
reported (all are in the JSON).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STAGES = ("mod_raise", "coeffs_to_slots", "eval_mod", "slots_to_coeffs")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class OpProfiler:
    """Wraps every public method of the CPU ring context class; nested calls (a Python-level
    method calling native ones) count once, at the outermost call."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], list] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0])
        self.stage = "-"
        self._depth = 0

    def install(self) -> None:
        from wavis.backend.cpu import _core
        from wavis.backend.cpu.ring import CpuRingContext

        for name in dir(_core.RnsContext):
            if name.startswith("_"):
                continue
            fn = getattr(CpuRingContext, name)
            if callable(fn):
                setattr(CpuRingContext, name, self._wrap(name, fn))

    def _wrap(self, name: str, fn):
        def wrapped(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            w, c, tc, f = time.perf_counter(), time.process_time(), time.thread_time(), _faults()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                s = self.stats[(self.stage, name)]
                s[0] += 1
                s[1] += time.perf_counter() - w
                s[2] += time.process_time() - c
                s[3] += time.thread_time() - tc
                s[4] += _faults() - f

        return wrapped


def profile(preset: str, reps: int) -> dict:
    import numpy as np

    from bench_bootstrap import _simd_path, bootstrap_setup
    from wavis.backend.cpu import thread_count

    prof = OpProfiler()
    prof.install()
    params, _plan, _keygen_s, bs, enc, dec, encryptor = bootstrap_setup(preset)
    rng = np.random.default_rng(1)
    runs = []
    for r in range(reps + 1):
        x = rng.uniform(-1, 1, params.slot_count)
        ct = encryptor.encrypt(enc.encode(x, level=0))
        prof.stats.clear()
        stages = {}
        load0 = os.getloadavg()[0]

        def stage(name, fn):
            prof.stage = name
            w, c, tc, f = time.perf_counter(), time.process_time(), time.thread_time(), _faults()
            out = fn()
            stages[name] = dict(wall_s=time.perf_counter() - w, cpu_s=time.process_time() - c,
                                main_cpu_s=time.thread_time() - tc, faults=_faults() - f)
            return out

        bs.check_input(ct)
        y = stage("mod_raise", lambda: bs.sub_sum(bs.mod_raise(ct)))
        parts = stage("coeffs_to_slots", lambda: bs.coeffs_to_slots(y))
        parts = stage("eval_mod", lambda: [bs.eval_mod(p) for p in parts])
        out = stage("slots_to_coeffs", lambda: bs.slots_to_coeffs(parts))
        prof.stage = "-"
        err = np.maximum(np.abs(enc.decode(dec.decrypt(out)) - x), 2.0**-60)
        ops = {s: {} for s in STAGES}
        for (s, name), (n, w, c, tc, f) in prof.stats.items():
            if s in ops:
                ops[s][name] = dict(calls=n, wall_s=w, cpu_s=c, main_cpu_s=tc, faults=f)
        for s in STAGES:
            inside = {k: sum(v[k] for v in ops[s].values()) for k in ("wall_s", "cpu_s", "main_cpu_s", "faults")}
            ops[s]["(outside ring ops)"] = dict(calls=0, **{k: stages[s][k] - inside[k] for k in inside})
        if r:  # the first run encodes and caches the DFT factors
            runs.append(dict(stages=stages, ops=ops, load_avg=[load0, os.getloadavg()[0]],
                             mean_bits=float(np.mean(-np.log2(err))), min_bits=float(-np.log2(np.max(err)))))
    from wavis.bench.machine import cpu_family_model, cpu_model

    return dict(preset=preset, threads=int(thread_count()), simd_path=_simd_path(), cpu=cpu_model(),
                cpu_family_model=cpu_family_model(), runs=runs)


def summary(res: dict) -> str:
    run = res["runs"][-1]
    lines = [f"{res['preset']}, {res['threads']} thread(s), {res['simd_path']}, {res['cpu']} "
             f"(family/model {res['cpu_family_model']}), load {run['load_avg'][0]:.1f}-{run['load_avg'][1]:.1f}, "
             f"precision {run['mean_bits']:.2f}/{run['min_bits']:.2f} bits",
             f"{'stage':16s} {'op':20s} {'calls':>5s} {'wall s':>7s} {'cpu s':>7s} {'main s':>7s} {'main/cpu':>8s} {'faults':>7s}"]
    for s in STAGES:
        st = run["stages"][s]
        lines.append(f"{s:16s} {'TOTAL':20s} {'':5s} {st['wall_s']:7.3f} {st['cpu_s']:7.3f} {st['main_cpu_s']:7.3f} "
                     f"{st['main_cpu_s'] / max(st['cpu_s'], 1e-9):8.2f} {st['faults']:7d}")
        for name, v in sorted(run["ops"][s].items(), key=lambda kv: -kv[1]["cpu_s"]):
            if v["cpu_s"] < 0.005 and name != "(outside ring ops)":
                continue
            lines.append(f"{'':16s} {name:20s} {v['calls']:5d} {v['wall_s']:7.3f} {v['cpu_s']:7.3f} "
                         f"{v['main_cpu_s']:7.3f} {v['main_cpu_s'] / max(v['cpu_s'], 1e-9):8.2f} {v['faults']:7d}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="n65536")
    ap.add_argument("--reps", type=int, default=2, help="profiled bootstraps after the warm-up one")
    ap.add_argument("--out", default=None, help="JSON results (default: print only)")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    res = profile(args.preset, args.reps)
    text = summary(res)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
        out.with_suffix(".txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
