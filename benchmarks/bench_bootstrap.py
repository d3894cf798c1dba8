#!/usr/bin/env python3
"""CKKS bootstrapping benchmark: latency per stage, amortised time per slot and precision
(mean / min bits over all slots, uniform [−1, 1] real inputs, and one complex run), for a bootstrap preset, at
1 and 2 threads; optionally OpenFHE's EvalBootstrap side by side, interleaved (its own Python
3.10 venv, see benchmarks/openfhe_bootstrap.py; the PyPI wheel is built without SIMD/HEXL).

    .venv/bin/python benchmarks/bench_bootstrap.py                          # n65536, full slots, 1 and 2 threads
    .venv/bin/python benchmarks/bench_bootstrap.py --preset testing-n1024 --threads 2
    .venv/bin/python benchmarks/bench_bootstrap.py --slots 1024 --threads 2  # sparse packing
    .venv/bin/python benchmarks/bench_bootstrap.py --openfhe                  # + benchmarks/openfhe_bootstrap.py
    .venv/bin/python benchmarks/bench_bootstrap.py --openfhe --openfhe-native /work/cache/openfhe-hexl/bin/openfhe_native_worker \
        --rounds 2 --out benchmarks/results/bootstrap_zen5_ifma.json         # + OpenFHE + HEXL, two interleaved rounds

Every configuration runs in a fresh subprocess with WAVIS_THREADS set (the C++ core reads it at
start); one library at a time (an N = 2^16 OpenFHE key set needs ~15 GB), in the order WAVIS,
OpenFHE wheel, OpenFHE native per thread count, and ``--rounds`` times over (interleaved
rounds). Results go to benchmarks/results/bootstrap_cpu.json (or ``--out``).
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


def bootstrap_setup(preset: str, slots: int | None = None, **bootstrapper_kw):
    """Key generation and a ``Bootstrapper`` for ``preset`` (sparse packing with ``slots``):
    exactly the keys ``Bootstrapper.key_plan`` names, generated on this process. Returns
    ``(params, plan, keygen_s, bs, encoder, decryptor, encryptor)``; ``keygen_s`` in seconds
    (wall). ``bootstrapper_kw`` goes to ``Bootstrapper`` (e.g. ``meta_bits``). Shared by this
    script and ``bootstrap_meta.py``."""
    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, KeyGenerator
    from wavis.ckks.bootstrap import Bootstrapper

    params = CkksParameters.bootstrappable(preset)
    plan = Bootstrapper.key_plan(params, slots)
    t = time.perf_counter()
    kg = KeyGenerator(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    keygen_s = time.perf_counter() - t
    bs = Bootstrapper(params, evk, slots=slots, **bootstrapper_kw)
    return (params, plan, keygen_s, bs, Encoder(params), Decryptor(params, kg.secret_key),
            Encryptor(params, kg.public_key()))


def one(preset: str, slots: int | None, reps: int, constant: bool = False) -> dict:
    """Run inside the subprocess: keygen, then ``reps`` + 1 bootstraps of real inputs (the first
    also encodes and caches the DFT diagonals) and one of complex inputs, with per-stage wall
    and CPU (user+sys of this process) times and the load average around each (``stages_cpu_s``: CPU time of each stage)."""
    import numpy as np

    from wavis.ckks.bootstrap import Bootstrapper

    params, plan, keygen_s, bs, enc, dec, encryptor = bootstrap_setup(preset, slots)
    n_slots = slots or params.slot_count
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
            b = bs if k == bs.sine_headroom_bits else Bootstrapper(params, bs.eval_keys, slots=slots, sine_headroom_bits=k)
            err = np.maximum(np.abs(enc.decode(dec.decrypt(b.bootstrap(ct))) - x), 2.0**-60)
            runs.append(dict(kind=f"constant k_n={k}", mean_bits=float(np.mean(-np.log2(err))),
                             min_bits=float(-np.log2(np.max(err)))))
    import resource

    resident = 0  # what the DFT factors keep (Bootstrapper.cache_bytes plans it; the service admits by it)
    for lt in bs._transforms["cts"] + bs._transforms["stc"]:  # noqa: SLF001
        resident += sum(d.nbytes for d in lt.diagonals.values())
        resident += sum(c.nbytes for _, c, _ in lt._coef_cache.values())  # noqa: SLF001
        resident += sum(np.asarray(p).nbytes for _, p in lt._pt_cache.values() if p is not None)  # noqa: SLF001
    from wavis.ckks.bootstrap import bootstrapper as _bsm  # the context's idle baby-rotation workspace

    resident += sum(w._buf.nbytes for w in _bsm._WORKSPACES.get(bs.ev.context, []) if w._buf is not None)  # noqa: SLF001
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
                effective_degree=bs.effective_degree, failure_log2=bs.failure_probability_log2(),
                dft_cache_bytes_planned=Bootstrapper.cache_bytes(params, slots), dft_cache_bytes_resident=resident,
                peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                simd_path=_simd_path())


def _simd_path() -> str:
    try:
        from wavis.backend.cpu import simd_path  # noqa: PLC0415

        return str(simd_path() if callable(simd_path) else simd_path)
    except Exception:  # noqa: BLE001 - older cores
        return os.environ.get("WAVIS_SIMD", "?")


def _cap(limit: int):
    """preexec_fn of an OpenFHE child: bad_alloc past ``limit`` bytes of address space; and if
    the host runs out first, the OOM killer takes this one."""

    def cap():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            Path("/proc/self/oom_score_adj").write_text("1000")
        except OSError:
            pass

    return cap


def native_openfhe(binary: str, cfg: dict, threads: int, reps: int, limit: int) -> dict:
    """OpenFHE built natively (+ Intel HEXL: ``wavis bench setup``) through its round-protocol
    worker (benchmarks/openfhe_native_worker.cpp): key generation, then one warm-up and ``reps``
    timed EvalBootstraps of one fresh ciphertext; the last output decrypted and its precision
    checked. Wall and process CPU (all threads) per bootstrap."""
    t = time.perf_counter()
    proc = subprocess.Popen([binary, "bootstrap", json.dumps(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_cap(limit),
                            env=dict(os.environ, OMP_NUM_THREADS=str(threads)))

    def read() -> dict:
        for line in proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError("the native worker ended: " + proc.stderr.read()[-2000:])

    try:
        ready = read()
        if not ready.get("ready"):
            raise RuntimeError(ready.get("error", "not ready"))
        proc.stdin.write(json.dumps({"op": "bootstrap", "reps": reps, "warmup": 1}) + "\n")
        proc.stdin.flush()
        res = read()
        proc.stdin.write(json.dumps({"quit": True}) + "\n")
        proc.stdin.flush()
        proc.wait(timeout=120)
    except Exception as e:  # noqa: BLE001 - a failed reference is a recorded result
        proc.kill()
        return {"error": f"{type(e).__name__}: {e}"}
    info = ready.get("info", {})
    return dict(build="native + Intel HEXL", info=info, threads=threads, wall_s=[m / 1e3 for m in res["ms"]],
                cpu_s=[m / 1e3 for m in res["cpu_ms"]], bootstrap_s=min(res["ms"]) / 1e3, check=res["check"],
                process_s=time.perf_counter() - t)


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
    ap.add_argument("--openfhe-native", default=None,
                    help="also OpenFHE built natively with Intel HEXL: the path of its openfhe_native_worker "
                         "(wavis bench setup; e.g. /work/cache/openfhe-hexl/bin/openfhe_native_worker)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything, interleaved (round by round)")
    ap.add_argument("--out", default=str(HERE / "results" / "bootstrap_cpu.json"))
    ap.add_argument("--tree", default=None,
                    help="run WAVIS from this checkout instead of this one (see --before), so that edits here "
                         "do not reach a long run")
    ap.add_argument("--before", default=None,
                    help="before/after: also run WAVIS from this checkout (the baseline), interleaved, same "
                         "configuration. It must hold the same C++ core build: copy this venv's "
                         "wavis/_core*.so into DIR/wavis (its Python runs with -S, DIR first on the path)")
    ap.add_argument("--summary", default=None, metavar="JSON",
                    help="print the markdown tables of a results file (docs/bootstrapping.md) and exit")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.summary:
        print(summary(json.loads(Path(args.summary).read_text())))
        return 0
    if args.child:
        cfg = json.loads(args.child)
        print(json.dumps(one(cfg["preset"], cfg["slots"], cfg["reps"], cfg.get("constant", False))))
        return 0
    results = []
    for rnd, th in [(r, t) for r in range(args.rounds) for t in args.threads]:
        cfg = dict(preset=args.preset, slots=args.slots, reps=args.reps, constant=args.constant)
        before = None
        if args.before:  # the same configuration on the baseline tree first (interleaved)
            before = _child(args.before, cfg, th)
            if before is None:
                return 1
            bb = before["best"]
            print(f"WAVIS before ({args.before}) threads={th}: bootstrap {bb['total_s']:.2f} s = "
                  + ", ".join(f"{k} {v:.2f}" for k, v in bb["stages_s"].items())
                  + f"; CPU {bb['cpu_s']:.2f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in bb["stages_cpu_s"].items())
                  + f"); precision real mean {before['precision_mean_bits']:.2f} / min {before['precision_min_bits']:.2f}",
                  flush=True)
        w = _child(args.tree, cfg, th)
        if w is None:
            return 1
        entry = {"threads": th, "round": rnd, "wavis": w, "host": _host()}
        if before is not None:
            entry["wavis_before"] = before
            entry["before_tree"], entry["tree"] = args.before, args.tree or str(HERE.parent)
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
                             reps=args.reps)
                cfg_o.update(json.loads(args.openfhe_config))  # e.g. {"levels_after": 9}
                limit = int(args.openfhe_mem_gib * 2**30)
                cap = _cap(limit)
                r = subprocess.run([str(py), str(HERE / "openfhe_bootstrap.py"), json.dumps(cfg_o)], preexec_fn=cap,
                                   env=dict(os.environ, OMP_NUM_THREADS=str(th)), capture_output=True, text=True)
                print(r.stderr[-3000:], file=sys.stderr, flush=True)
                entry["openfhe"] = (json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else
                                    f"exit {r.returncode} under a {args.openfhe_mem_gib} GiB address-space limit: "
                                    + r.stderr[-2000:])
                print(f"OpenFHE (PyPI wheel, no SIMD) threads={th}: " + json.dumps(
                    {k: v for k, v in entry["openfhe"].items() if k != "runs"} if isinstance(entry["openfhe"], dict)
                    else entry["openfhe"]), flush=True)
        if args.openfhe_native:
            cfg_n = dict(N=w["poly_degree"], slots=w["slots"], levels_after=w["levels_after"], scale_mod_bits=53,
                         first_mod_bits=60, dnum=5, level_budget=[3, 3], check_bits=8)
            cfg_n.update(json.loads(args.openfhe_config))
            entry["openfhe_native"] = native_openfhe(args.openfhe_native, cfg_n, th, args.reps,
                                                     int(args.openfhe_mem_gib * 2**30))
            print(f"OpenFHE native + HEXL threads={th}: " + json.dumps(
                {k: v for k, v in entry["openfhe_native"].items() if k != "info"}), flush=True)
        for r in w["runs"]:
            if r["kind"].startswith("constant"):
                print(f"  {r['kind']}: precision mean {r['mean_bits']:.1f} / min {r['min_bits']:.1f} bits", flush=True)
        results.append(entry)
        _save(Path(args.out), args, results)  # after every configuration: a killed run keeps what it measured
    return 0


def summary(data: dict) -> str:
    """Markdown tables of a results file: per configuration (preset, slots) and thread count,
    the median over rounds of each library's best warm bootstrap (wall) and the CPU seconds of
    that run, WAVIS's stages (CPU), the time per slot, precision, and the ratios WAVIS / OpenFHE
    (wheel: no SIMD; native: + Intel HEXL)."""
    import statistics as st

    def med(xs):
        xs = [x for x in xs if x is not None]
        return st.median(xs) if xs else None

    def wheel(o):
        if not isinstance(o, dict):
            return None, None, None, None
        warm = o["runs"][1:] or o["runs"]
        b = min(warm, key=lambda r: r["wall_s"])
        return b["wall_s"], b["cpu_s"], o["precision_mean_bits"], o["precision_min_bits"]

    def native(n):
        if not isinstance(n, dict) or "wall_s" not in n:
            return None, None, None
        i = min(range(len(n["wall_s"])), key=lambda k: n["wall_s"][k])
        return n["wall_s"][i], n["cpu_s"][i], n["check"]["bits"]

    def f(x, d=2):
        return "—" if x is None else f"{x:.{d}f}"

    def ratio(a, b):
        return "—" if a is None or b is None else f"{a / b:.2f}"

    groups: dict = {}
    for r in data["runs"]:
        groups.setdefault((r["wavis"]["preset"], r["wavis"]["slots"], r["threads"]), []).append(r)
    lines = ["| preset, slots | threads | library | bootstrap wall (median of rounds' best) | CPU of that run | "
             "ModRaise / CtS / EvalMod / StC CPU | per slot (wall) | precision mean / min | WAVIS ÷ this, wall / CPU | "
             "rounds, load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (preset, slots, th), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])):
        loads = [x for r in rs for x in r["wavis"]["best"]["load_avg"]]
        w_wall = med([r["wavis"]["best"]["total_s"] for r in rs])
        w_cpu = med([r["wavis"]["best"]["cpu_s"] for r in rs])
        stages = {k: med([r["wavis"]["best"]["stages_cpu_s"][k] for r in rs]) for k in rs[0]["wavis"]["best"]["stages_cpu_s"]}
        cols = {"WAVIS": (w_wall, w_cpu, med([r["wavis"]["precision_mean_bits"] for r in rs]),
                          med([r["wavis"]["precision_min_bits"] for r in rs]))}
        if any("wavis_before" in r for r in rs):
            bs = [r["wavis_before"] for r in rs if "wavis_before" in r]
            cols["WAVIS before"] = (med([b["best"]["total_s"] for b in bs]), med([b["best"]["cpu_s"] for b in bs]),
                                    med([b["precision_mean_bits"] for b in bs]), med([b["precision_min_bits"] for b in bs]))
            b_stages = {k: med([b["best"]["stages_cpu_s"][k] for b in bs]) for k in stages}
        ws = [wheel(r.get("openfhe")) for r in rs]
        if any(x[0] is not None for x in ws):
            cols["OpenFHE wheel (no SIMD)"] = tuple(med([x[i] for x in ws]) for i in range(4))
        ns = [native(r.get("openfhe_native")) for r in rs]
        if any(x[0] is not None for x in ns):
            cols["OpenFHE native + HEXL"] = (med([x[0] for x in ns]), med([x[1] for x in ns]), None,
                                             med([x[2] for x in ns]))
        for lib, (wall, cpu, mean, low) in cols.items():
            st_txt = " / ".join(f(stages[k]) for k in stages) if lib == "WAVIS" else (
                " / ".join(f(b_stages[k]) for k in stages) if lib == "WAVIS before" else "")
            per_slot = f"{wall / slots * 1e6:.0f} µs" if wall else "—"
            rat = "" if lib.startswith("WAVIS") else f"**{ratio(w_wall, wall)}** / {ratio(w_cpu, cpu)}"
            lines.append(f"| `{preset}`, {slots} | {th} | {lib} | {f(wall)} s | {f(cpu)} s | {st_txt} | {per_slot} | "
                         f"{f(mean, 1)} / {f(low, 1)} | {rat} | {len(rs)}, {min(loads):.1f}–{max(loads):.1f} |")
    return "\n".join(lines)


def _child(tree: str | None, cfg: dict, threads: int) -> dict | None:
    """One WAVIS configuration in a fresh process (WAVIS_THREADS set): this checkout, or
    ``tree`` (its own benchmarks/bench_bootstrap.py and wavis package, with this venv's
    site-packages but not its editable install: ``python -S``)."""
    import sysconfig

    env = dict(os.environ, WAVIS_THREADS=str(threads))
    if tree is None:
        cmd = [sys.executable, __file__, "--child", json.dumps(cfg)]
    else:
        env["PYTHONPATH"] = os.pathsep.join([tree, sysconfig.get_paths()["purelib"]])
        cmd = [sys.executable, "-S", str(Path(tree) / "benchmarks" / "bench_bootstrap.py"), "--child", json.dumps(cfg)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _save(out: Path, args, results: list) -> None:
    out.parent.mkdir(exist_ok=True)
    prev = json.loads(out.read_text()) if out.exists() else {"runs": []}
    prev["runs"] = [r for r in prev["runs"] if not (r["wavis"]["preset"] == args.preset
                                                    and r["wavis"]["slots"] == results[0]["wavis"]["slots"]
                                                    and r["threads"] in args.threads
                                                    and r.get("round", 0) < args.rounds)] + results
    prev["runs"] = list({(r["wavis"]["preset"], r["wavis"]["slots"], r["threads"], r.get("round", 0)): r
                         for r in prev["runs"]}.values())
    prev["command"] = " ".join(sys.argv)
    out.write_text(json.dumps(prev, indent=1))


def _host() -> dict:
    """The CPU (model name, family/model: ``wavis.bench.machine``) and the load average when a
    configuration ends."""
    from wavis.bench.machine import cpu_family_model, cpu_model

    info = {"load_avg": os.getloadavg(), "model_name": cpu_model()}
    fm = cpu_family_model()
    if fm:
        info["cpu_family"], info["model"] = (str(v) for v in fm)
    return info


if __name__ == "__main__":
    sys.exit(main())
