"""A/B of two builds of the C++ core (``wavis/_core*.so``) under the same Python code: each build
runs in its own process, the builds alternate round by round, and every operation is timed in
CPU time (``time.process_time``, 1 thread) with the minimum and the lower quartile over its
repetitions kept (robust on a shared host, where other jobs only ever add time).

    .venv/bin/python benchmarks/core_ab.py OLD.so NEW.so [--config n14] [--rounds 3] [--reps 30] [--out F.json]
        [--old-tree DIR] [--new-tree DIR]

Copy a build aside first, e.g. ``cp .venv/lib/python3.11/site-packages/wavis/_core*.so
/tmp/core_old.so`` before changing csrc/ and ``./dev env`` (compare stripped ``./dev env`` builds
with each other: a ``-g`` build of the same source timed differently here). WAVIS_SIMD selects the
path for both. ``--old-tree``/``--new-tree``: the Python package of that build comes from another
source tree (e.g. ``git archive main | tar -x -C /tmp/base``), for a change that spans the core
and its Python callers; by default both use this checkout's. Configs are the harness's (``wavis.bench.suites.CKKS_CONFIGS``); operations: the
ckks suite's multiply+relinearize+rescale, rotate by 1 and 8 hoisted rotations, on fixed seeds.
Prints per operation each build's minimum and lower-quartile CPU ms and NEW/OLD.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import importlib.util, json, sys, time
if sys.argv[4]:  # the wavis package of another source tree (not this checkout's editable install)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", type(f).__module__)]
    sys.path.insert(0, sys.argv[4])
spec = importlib.util.spec_from_file_location("wavis._core", sys.argv[1])
m = importlib.util.module_from_spec(spec); sys.modules["wavis._core"] = m; spec.loader.exec_module(m)
import numpy as np
from wavis.bench.suites import CKKS_CONFIGS
from wavis.ckks import CkksParameters, Encoder, Encryptor, Evaluator, KeyGenerator
cfg = CKKS_CONFIGS[sys.argv[2]]; reps = int(sys.argv[3])
p = CkksParameters(poly_degree=cfg["N"], scale_bits=cfg["scale_bits"], max_depth=cfg["depth"],
                   first_mod_bits=cfg["first_bits"], dnum=cfg["dnum"], special_mod_bits=cfg.get("special_bits"))
kg = KeyGenerator(p, seed=bytes(32)); ev = Evaluator(p, kg.evaluation_keys(galois_steps=list(range(1, 9))))
enc = Encoder(p); encr = Encryptor(p, kg.public_key(), seed=bytes(range(32)))
x = np.random.default_rng(1).uniform(-1, 1, p.slot_count)
cx, cy = encr.encrypt(enc.encode(x)), encr.encrypt(enc.encode(x))
ops = {"multiply_relin_rescale": lambda: ev.multiply(cx, cy), "rotate": lambda: ev.rotate(cx, 1),
       "hoisted_rotations_8": lambda: ev.rotate_many(cx, range(1, 9))}
out = {}
for name, f in ops.items():
    f(); ts = []
    for _ in range(reps if name != "hoisted_rotations_8" else max(3, reps // 6)):
        t = time.process_time(); f(); ts.append(time.process_time() - t)
    ts.sort(); out[name] = [ts[0] * 1e3, ts[len(ts) // 4] * 1e3]
import wavis
out["_tree"] = wavis.__file__
print(json.dumps(out))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--config", default="n14")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", help="also write the rounds and ratios as JSON")
    ap.add_argument("--old-tree", default="", help="source tree of OLD's Python package (default: this checkout)")
    ap.add_argument("--new-tree", default="", help="source tree of NEW's Python package (default: this checkout)")
    a = ap.parse_args()
    tree = {a.old: a.old_tree, a.new: a.new_tree}
    env = dict(os.environ, WAVIS_THREADS="1")
    res: dict[str, list[dict]] = {a.old: [], a.new: []}
    for r in range(a.rounds):
        for so in ((a.old, a.new) if r % 2 == 0 else (a.new, a.old)):
            p = subprocess.run([sys.executable, "-c", CHILD, so, a.config, str(a.reps), tree[so]], capture_output=True,
                               text=True, env=env, cwd=ROOT, check=True)
            row = json.loads(p.stdout.strip().splitlines()[-1])
            src = row.pop("_tree")
            if tree[so] and not src.startswith(str(Path(tree[so]).resolve())):
                raise SystemExit(f"{so}: the wavis package came from {src}, not {tree[so]}")
            res[so].append(row)
    summary = {"config": a.config, "simd": os.environ.get("WAVIS_SIMD", "default"), "load_end": os.getloadavg()[0],
               "old": a.old, "new": a.new, "old_tree": a.old_tree or str(ROOT), "new_tree": a.new_tree or str(ROOT),
               "rounds": {"old": res[a.old], "new": res[a.new]}, "ops": {}}
    print(f"config {a.config}, path {summary['simd']}, load {os.getloadavg()}")
    for op in res[a.old][0]:
        o = [min(x[op][k] for x in res[a.old]) for k in (0, 1)]
        n = [min(x[op][k] for x in res[a.new]) for k in (0, 1)]
        summary["ops"][op] = {"old_min_ms": o[0], "new_min_ms": n[0], "ratio_min": n[0] / o[0], "ratio_q25": n[1] / o[1]}
        print(f"{op}: old min {o[0]:.2f} q25 {o[1]:.2f} ms, new min {n[0]:.2f} q25 {n[1]:.2f} ms, "
              f"new/old {n[0] / o[0]:.3f} (q25 {n[1] / o[1]:.3f})")
    if a.out:
        Path(a.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
