"""The harness's suites: ntt, ckks, bootstrap, tfhe, service, gpu.

Each suite is ``fn(h: Harness, budget: Budget) -> (rows, note)`` and says what it measures in
its docstring. Parameters per mode live in :data:`PLANS` (``quick``: one size each, one round,
budgets summing under 5 minutes on 2 cores; ``full``: every size, 3 rounds).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import hwbound
from .runner import Budget, Worker, WorkerError, child_env, comparison_rows, interleave
from .schema import make_row, set_bound, stats

# The anchors' parameters (issue 21; benchmarks/bench_ckks.py): 128-bit, dnum as OpenFHE's digits.
CKKS_CONFIGS = {
    "n14": {"N": 16384, "depth": 10, "scale_bits": 30, "first_bits": 50, "dnum": 11},
    "n16": {"N": 65536, "depth": 20, "scale_bits": 40, "first_bits": 60, "dnum": 3},
    # n16's old shape (60-bit q_0 and 61-bit special primes, scale 40, dnum 3) at N = 2^14: the
    # wide-prime kernels without a big-memory slot (--ckks-configs n14w; in no plan). "special_bits"
    # pins the special-prime size (default: CkksParameters', below 2^50 where it fits, issue 21).
    "n14w": {"N": 16384, "depth": 4, "scale_bits": 40, "first_bits": 60, "dnum": 3, "special_bits": 61},
}
CKKS_OPS = ["encode", "encrypt", "decrypt_decode", "add", "multiply_relin_rescale", "rotate", "hoisted_rotations_8"]

PLANS = {
    "quick": {
        # the bootstrap's budget covers every library's key generation, in parallel (~80 s for two on
        # the loaded 2-core AVX2 host: WAVIS's 25 keys of n32768, 1.4 GB; OpenFHE's at dnum 8)
        "budgets": {"ntt": 10, "ckks": 50, "bootstrap": 170, "tfhe": 30, "service": 35, "gpu": 120},
        "rounds": 1, "ckks_reps": 3, "ckks_configs": ["n14"], "ntt_sizes": [16384], "ntt_bits": [50],
        "ntt_limbs": [], "ckks_scaling": [],
        # OpenFHE at the preset's ring, slots, security and secret (sparse-secret encapsulation, h = 32):
        # q_0 60 bits, one 50-bit prime size above it (FLEXIBLEAUTO), 2 levels after the bootstrap,
        # CoeffsToSlots/SlotsToCoeffs one level each ([1, 1]: its default [3, 3], and [2, 2], put
        # log2 QP over the 128-bit bound at N = 2^15 with 50-bit primes, which 40-bit primes avoid
        # but bootstrap to 5.6 bits), dnum 8 (15 primes: 16 digits do not divide them, 15 needs ~4.5 GB)
        "bootstrap": {"preset": "n32768", "slots": 16,
                      "openfhe": {"N": 32768, "slots": 16, "levels_after": 2, "level_budget": [1, 1],
                                  "scale_mod_bits": 50, "first_mod_bits": 60, "dnum": 8}, "native": True},
        "tfhe_presets": ["standard_128"], "tfhe_reps": 8, "tfhe_batches": [16], "tfhe_threads": [1],
        "service": {"concurrency": [1, 8], "seconds": 2, "sizes": [32], "delays": [1.0], "batch_sizes": [32]},
    },
    "full": {
        "budgets": {"ntt": 120, "ckks": 1500, "bootstrap": 2400, "tfhe": 420, "service": 600, "gpu": 480},
        "rounds": 3, "ckks_reps": 5, "ckks_configs": ["n14", "n16"], "ntt_sizes": [4096, 8192, 16384, 32768, 65536],
        "ntt_bits": [50, 61], "ntt_limbs": [1, 2, 4, 8, 16, 32],
        # WAVIS alone, one special prime (dnum = limbs): time vs ring degree, and vs limbs at N = 2^14
        "ckks_scaling": [{"N": n, "depth": 2, "scale_bits": 40, "first_bits": 60, "dnum": 3}
                         for n in (8192, 16384, 32768, 65536)]
                        + [{"N": 16384, "depth": d, "scale_bits": 30, "first_bits": 50, "dnum": d + 1} for d in (2, 5, 10)],
        "bootstrap": {"preset": "n65536", "slots": None,
                      "openfhe": {"N": 65536, "slots": 32768, "levels_after": 9, "level_budget": [3, 3],
                                  "scale_mod_bits": 53, "first_mod_bits": 60, "dnum": 5},
                      # one OpenFHE key set at a time: the wheel's peaks at 13.6 GiB here, two do not fit in 23 GiB
                      "native": False},
        "tfhe_presets": ["fast_128", "standard_128", "conservative_128"], "tfhe_reps": 20,
        "tfhe_batches": [8, 32, 128], "tfhe_threads": [1, 2],
        "service": {"concurrency": [1, 4, 16, 64], "seconds": 4, "sizes": None, "delays": None, "batch_sizes": None},
    },
}

OPENFHE_LABEL = "OpenFHE {v} (PyPI wheel, no SIMD)"
NATIVE = "openfhe-native"  # OpenFHE + Intel HEXL built by `wavis bench setup --openfhe-src …` (wavis.bench.native)
TENSEAL_LABEL = "TenSEAL {v} (SEAL)"


# ------------------------------------------------------------------------------------------ ntt
def suite_ntt(h, budget: Budget):
    """Forward and inverse negacyclic NTT of one limb (µs), against the bound max(2·N·8 bytes /
    bandwidth, N/2·log2 N modular multiplies / throughput); full: N = 2^12…2^16, 50- and 61-bit
    primes, and µs per limb of multi-limb calls vs the number of limbs (thread pool)."""
    from wavis.backend import cpu as cpu_backend

    plan, rows = h.plan, []
    for n in plan["ntt_sizes"]:
        for bits in plan["ntt_bits"]:
            if not budget.allows(2):
                break
            q = cpu_backend.generate_ntt_primes(bits, 1, n)
            ctx = cpu_backend.CpuBackend().ring_context(n, q)
            a = np.ascontiguousarray(np.random.default_rng(0).integers(0, q[0], (1, n), dtype=np.uint64))
            nbytes, mm = hwbound.ntt_counts(n)
            for name, fn in (("ntt_forward", ctx.ntt), ("ntt_inverse", ctx.intt)):
                blocks, cpu = _blocks(lambda: fn(a, [0]), reps=max(20, 2_000_000 // (n * 8)))
                row = make_row("ntt", name, stats(blocks)["median"], "us", params={"N": n, "prime_bits": bits, "limbs": 1},
                               stats={**stats(blocks), "spread_over": "blocks"}, cpu=stats(cpu),
                               check={"ok": True, "bits": None, "detail": "exactness tested by tests/test_ntt*.py"},
                               samples=blocks)
                b = hwbound.bound(h.hw, nbytes, mm, bits)
                rows.append(set_bound(row, b["seconds"] * 1e6, **b))
    for limbs in plan["ntt_limbs"]:
        if not budget.allows(2):
            break
        n = 16384
        q = cpu_backend.generate_ntt_primes(50, limbs, n)
        ctx = cpu_backend.CpuBackend().ring_context(n, q)
        a = np.stack([np.random.default_rng(i).integers(0, m, n, dtype=np.uint64) for i, m in enumerate(q)])
        idx = list(range(limbs))
        blocks, cpu = _blocks(lambda: ctx.ntt(a, idx), reps=max(5, 200 // limbs))
        per = [b / limbs for b in blocks]
        nbytes, mm = hwbound.ntt_counts(n)
        row = make_row("ntt", "ntt_forward_per_limb", stats(per)["median"], "us",
                       params={"N": n, "prime_bits": 50, "limbs": limbs, "threads": h.threads},
                       stats={**stats(per), "spread_over": "blocks"}, cpu=stats([c / limbs for c in cpu]), samples=per)
        b = hwbound.bound(h.hw, nbytes, mm, 50)
        rows.append(set_bound(row, b["seconds"] * 1e6, **b))
    return rows, f"threads={h.threads}"


def _blocks(fn, reps: int, blocks: int = 5) -> tuple[list[float], list[float]]:
    """µs per call over ``blocks`` blocks of ``reps`` calls (wall and process CPU)."""
    fn()
    wall, cpu = [], []
    for _ in range(blocks):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(reps):
            fn()
        wall.append((time.perf_counter() - t) / reps * 1e6)
        cpu.append((time.process_time() - c) / reps * 1e6)
    return wall, cpu


# ----------------------------------------------------------------------------------------- ckks
def _ref_meta(h, lib: str, info: dict | None, status: str) -> dict:
    v = (info or {}).get("version", "?")
    if lib == NATIVE:
        from .native import describe

        return {"label": describe(h.native_manifest()), "status": status, "deviations": {}}
    label = (OPENFHE_LABEL if lib == "openfhe" else TENSEAL_LABEL).format(v=v)
    return {"label": label, "status": status, "deviations": {}}


def _start_native(h, kind: str, cfg: dict, workers: dict, status: dict, env: dict) -> None:
    """The native OpenFHE + HEXL worker, where `wavis bench setup` built it (else no column)."""
    if h.ref_status(NATIVE) != "ok":
        return
    from .native import GLIBC_TUNABLES

    r = _start(h, NATIVE, [str(h.native_worker()), kind, json.dumps(cfg)], dict(env, GLIBC_TUNABLES=GLIBC_TUNABLES))
    if isinstance(r, str):
        status[NATIVE] = r
    else:
        workers[NATIVE] = r


def _native_deviations(h, info: dict) -> list[str]:
    from .native import describe

    return [f"{describe(h.native_manifest())}; glibc malloc tunables of the anchors (mmap/trim thresholds); "
            f"special primes chosen by OpenFHE ({info.get('special_bits', '?')} bits, log2 QP = {info.get('log_qp', '?')})"]


def _start(h, lib: str, argv: list[str], env: dict) -> Worker | str:
    """A started worker, or why not."""
    try:
        return Worker(lib, argv, env=env, timeout=900)
    except OSError as e:
        return f"failed to start: {e}"


def _extra_wavis(h, kind: str, cfg: dict, threads: int) -> tuple[dict[str, Worker], dict[str, str], dict[str, dict]]:
    """The extra WAVIS columns of ``--baseline`` and ``--simd-also``: (workers, failures, ref metas).

    ``baseline``: the other checkout's own interpreter runs this checkout's worker
    (benchmarks/baseline_worker.py) on its ``wavis`` build; TFHE gets today's preset fields so
    both builds run the same parameters. ``wavis_<path>``: this checkout with ``WAVIS_SIMD=<path>``."""
    workers, status, metas = {}, {}, {}
    if h.baseline is not None:
        bcfg = dict(cfg)
        if kind == "tfhe":
            from wavis.tfhe.params import get_preset

            p = get_preset(cfg["preset"])
            bcfg["tfhe_fields"] = {f: (float(v) if isinstance(v, float) else v) for f, v in vars(p).items()
                                   if f in _TFHE_FIELDS}
        py = h.baseline / ".venv" / "bin" / "python"
        env = child_env(threads)
        env.pop("WAVIS_SIMD", None)  # the baseline picks its own path (an old build may not know the variable)
        r = _start(h, "baseline", [str(py), str(h.bench_dir / "baseline_worker.py"), kind, json.dumps(bcfg)], env)
        if isinstance(r, str):
            status["baseline"] = r
        else:
            workers["baseline"] = r
        metas["baseline"] = {"label": f"WAVIS {h.baseline_label} (baseline build)", "status": "?", "deviations": {}}
    for path in h.simd_also:
        lib = f"wavis_{path}"
        r = _start(h, lib, [sys.executable, "-m", "wavis.bench.worker", kind, json.dumps(cfg)],
                   child_env(threads, WAVIS_SIMD=path))
        if isinstance(r, str):
            status[lib] = r
        else:
            workers[lib] = r
        metas[lib] = {"label": f"WAVIS, WAVIS_SIMD={path}", "status": "?", "deviations": {}}
    return workers, status, metas


_TFHE_FIELDS = ("name", "preset_id", "lwe_dimension", "glwe_dimension", "polynomial_size", "pbs_base_log", "pbs_level",
                "ks_base_log", "ks_level", "lwe_noise_std", "glwe_noise_std", "security_bits", "insecure")


def _extra_refs(workers: dict, status: dict, metas: dict) -> dict:
    """Ref metas of the extra WAVIS columns with their final status and the build's SIMD path."""
    out = {}
    for lib, meta in metas.items():
        m = dict(meta, status=status.get(lib, "?"))
        if lib in workers:
            sp = workers[lib].info.get("simd_path")
            if sp:
                m["label"] += f", SIMD path {sp}"
        out[lib] = m
    return out


def _ready_all(workers: dict, budget: Budget, log) -> dict[str, str]:
    """Wait for every worker (they generate keys in parallel); returns {lib: status}."""
    status = {}
    for lib, w in list(workers.items()):
        try:
            w.wait_ready(timeout=max(60.0, budget.left() + 120))
            status[lib] = "ok"
            log(f"    {lib}: ready in {w.setup_s:.1f} s {json.dumps(w.info)[:200]}")
        except WorkerError as e:
            status[lib] = f"failed: {str(e)[:300]}"
            log(f"    {lib}: {status[lib]}")
            w.close(kill=True)
            del workers[lib]
    return status


def suite_ckks(h, budget: Budget):
    """The anchors' CKKS operations (issue 21's table: encode, encrypt, decrypt+decode, add,
    multiply+relinearize+rescale, rotate, 8 hoisted rotations) on WAVIS, OpenFHE and TenSEAL,
    interleaved; rotate also against the key-switching bound. Full: also N = 2^16 and WAVIS's
    time vs ring degree and vs number of limbs."""
    plan, rows, notes = h.plan, [], []
    for cname in plan["ckks_configs"]:
        if not budget.allows(30):
            notes.append(f"{cname} cut by the budget")
            continue
        cfg = dict(CKKS_CONFIGS[cname], threads=h.threads, ops=CKKS_OPS)
        env = child_env(h.threads)
        workers: dict[str, Worker] = {}
        status: dict[str, str] = {}
        w = _start(h, "wavis", [sys.executable, "-m", "wavis.bench.worker", "ckks", json.dumps(cfg)], env)
        if isinstance(w, str):
            return rows, w
        workers["wavis"] = w
        for lib, script in (("openfhe", "openfhe_ckks.py"), ("tenseal", "tenseal_ckks.py")):
            st = h.ref_status(lib)
            if lib == "tenseal" and cfg["N"] > 32768:
                # SEAL's 128-bit bound table (hestdparms.h, the HE Standard's) stops at N = 2^15: it
                # refuses larger rings ("encryption parameters are not set correctly")
                st = "not offered: SEAL's 128-bit table (HE Standard) stops at N = 2^15"
            if st != "ok":
                status[lib] = st
                continue
            r = _start(h, lib, [str(h.ref_python(lib)), str(h.bench_dir / script), "--serve", json.dumps(cfg)], env)
            if isinstance(r, str):
                status[lib] = r
            else:
                workers[lib] = r
        xw, xstatus, xmeta = _extra_wavis(h, "ckks", cfg, h.threads)
        workers.update(xw)
        status.update(xstatus)
        _start_native(h, "ckks", dict(cfg, security="128"), workers, status, env)
        h.log(f"  ckks {cname} {cfg['N']}: key generation ({', '.join(workers)}) ...")
        status.update(_ready_all(workers, budget, h.log))
        if "wavis" not in workers:
            return rows, "wavis worker failed: " + status.get("wavis", "?")
        winfo = workers["wavis"].info
        refs = {}
        for lib in ("openfhe", "tenseal"):
            refs[lib] = _ref_meta(h, lib, workers[lib].info if lib in workers else None, status.get(lib, "?"))
            if lib in workers:
                h.software[lib] = workers[lib].info.get("version")
        oinfo = workers["openfhe"].info if "openfhe" in workers else {}
        refs["openfhe"]["deviations"] = {"*": [
            f"special primes chosen by OpenFHE (the wheel does not expose P; its log2 Q = {oinfo.get('log_q', '?')}); "
            f"WAVIS: {len(winfo.get('special_bits', []))} x {max(winfo.get('special_bits', [0]) or [0])}-bit P, "
            f"log2 QP = {winfo.get('log_qp')}",
            "FIXEDMANUAL rescaling (WAVIS: canonical per-level scales)"]}
        refs["tenseal"]["deviations"] = {"*": ["one 60-bit special prime, no dnum (SEAL)"],
                                         "encrypt": ["TenSEAL's encrypt includes encode"]}
        refs.update(_extra_refs(workers, status, xmeta))
        if NATIVE in workers or NATIVE in status:
            ni = workers[NATIVE].info if NATIVE in workers else {}
            refs[NATIVE] = _ref_meta(h, NATIVE, ni, status.get(NATIVE, "?"))
            refs[NATIVE]["deviations"] = {"*": _native_deviations(h, ni) + ["FIXEDMANUAL rescaling (WAVIS: canonical per-level scales)"]}
            h.software["openfhe_native"] = refs[NATIVE]["label"]
        params = {**CKKS_CONFIGS[cname], "security": "128-bit", "threads": h.threads, "log_qp": winfo.get("log_qp")}
        data = interleave(workers, CKKS_OPS, plan["rounds"], plan["ckks_reps"], budget, log=h.log)
        crow = comparison_rows("ckks", data, params, refs)
        for row in crow:
            if row["name"] == "rotate" and row["value"]:
                nb, mm = hwbound.key_switch_counts(cfg["N"], winfo["limbs"], winfo["special_primes"], winfo["digits"])
                b = hwbound.bound(h.hw, nb, mm, min(winfo["prime_bits"]))  # the faster rate: a lower bound
                set_bound(row, b["seconds"] * 1e3, **b, what="key switching (ModUp, inner product, ModDown)")
        rows += crow
        for w in workers.values():
            w.close()
    for cfg in plan["ckks_scaling"]:  # WAVIS alone: time vs ring degree and vs limbs
        if not budget.allows(20):
            notes.append("scaling rows cut by the budget")
            break
        c = dict(cfg, threads=h.threads, ops=["multiply_relin_rescale", "rotate"])
        w = _start(h, "wavis", [sys.executable, "-m", "wavis.bench.worker", "ckks", json.dumps(c)], child_env(h.threads))
        if isinstance(w, str):
            break
        try:
            w.wait_ready(timeout=max(60.0, budget.left()))
        except WorkerError as e:
            notes.append(str(e)[:200])
            continue
        data = interleave({"wavis": w}, c["ops"], plan["rounds"], plan["ckks_reps"], budget, log=h.log)
        for row in comparison_rows("ckks", data, {**cfg, "limbs": w.info.get("limbs"), "threads": h.threads}, {}):
            row["name"] = "scaling_" + row["name"]
            rows.append(row)
        w.close()
    return rows, "; ".join(notes)


# ------------------------------------------------------------------------------------ bootstrap
def suite_bootstrap(h, budget: Budget):
    """One CKKS bootstrap on WAVIS, OpenFHE's EvalBootstrap (PyPI wheel) and, where built,
    OpenFHE + HEXL, interleaved, each output's precision checked (≥ 8 bits) before its time
    counts. Quick: a 16-slot sparse bootstrap of the 128-bit ``n32768`` preset against OpenFHE at
    N = 2^15, 16 slots, 128-bit, the same secret (sparse-secret encapsulation, h = 32); full:
    the ``n65536`` preset, full slots. OpenFHE has one prime size above q_0 and picks its own
    special primes; every deviation from the preset is written into the row."""
    bp = h.plan["bootstrap"]
    cfg = {"preset": bp["preset"], "slots": bp["slots"], "check_bits": 8}
    env = child_env(h.threads)
    workers: dict[str, Worker] = {}
    w = _start(h, "wavis", [sys.executable, "-m", "wavis.bench.worker", "bootstrap", json.dumps(cfg)], env)
    if isinstance(w, str):
        return [], w
    workers["wavis"] = w
    status: dict[str, str] = {}
    ocfg = dict(bp["openfhe"], threads=h.threads, check_bits=8)
    st = h.ref_status("openfhe")
    if st == "ok":
        r = _start(h, "openfhe", [str(h.ref_python("openfhe")), str(h.bench_dir / "openfhe_bootstrap.py"), "--serve",
                                  json.dumps(ocfg)], env)
        if isinstance(r, str):
            status["openfhe"] = r
        else:
            workers["openfhe"] = r
    else:
        status["openfhe"] = st
    if bp.get("native"):
        _start_native(h, "bootstrap", dict(ocfg, security="128"), workers, status, env)
    h.log(f"  bootstrap {bp['preset']} slots={bp['slots']}: key generation ({', '.join(workers)}) ...")
    status.update(_ready_all(workers, budget, h.log))
    if "wavis" not in workers:
        for w in workers.values():
            w.close()
        return [], "wavis worker failed: " + status.get("wavis", "?")
    wi = workers["wavis"].info
    refs = {}
    for lib in ("openfhe", NATIVE):
        if lib == NATIVE and lib not in workers and lib not in status:
            continue  # not built here: no column
        oi = workers[lib].info if lib in workers else {}
        refs[lib] = _ref_meta(h, lib, oi or None, status.get(lib, "?"))
        refs[lib]["deviations"] = {"*": bootstrap_deviations(bp["preset"], wi, ocfg, oi)
                                   + (_native_deviations(h, oi) if lib == NATIVE else [])}
        if lib in workers:
            refs[lib]["keygen_s"] = oi.get("keygen_s")
    params = {"preset": bp["preset"], "N": wi.get("N"), "slots": wi.get("slots"), "levels_after": wi.get("levels_after"),
              "threads": h.threads, "security": "128-bit", "secret": wi.get("secret")}
    data = interleave(workers, ["bootstrap"], h.plan["rounds"], 1, budget, log=h.log)
    rows = comparison_rows("bootstrap", data, params, refs)
    for r in rows:
        r["key_bytes"] = wi.get("key_bytes")
        r["keygen_s"] = {"wavis": round(workers["wavis"].setup_s, 1),
                         **{lib: refs[lib].get("keygen_s") for lib in refs}}
    for w in workers.values():
        w.close()
    return rows, ""


def bootstrap_deviations(preset: str, wi: dict, ocfg: dict, oi: dict) -> list[str]:
    """How OpenFHE's bootstrap parameters differ from the WAVIS preset's (the row's record)."""
    from wavis.ckks.presets import BOOTSTRAP_PRESETS

    p = BOOTSTRAP_PRESETS[preset]
    wchain = (f"q0 {p.first_mod_bits}, {p.max_depth} user x {p.scale_bits}, SlotsToCoeffs {list(p.stc_bits)}, "
              f"EvalMod {len(p.evalmod_bits)} x {p.evalmod_bits[0]}, CoeffsToSlots {list(p.cts_bits)}, "
              f"P {p.special_mod_bits}-bit primes, dnum {p.dnum}")
    ochain = (f"q0 {ocfg.get('first_mod_bits', 60)}, every other prime {ocfg.get('scale_mod_bits')} bits (FLEXIBLEAUTO: "
              f"one size), level budget {ocfg.get('level_budget')} (CoeffsToSlots, SlotsToCoeffs), "
              f"bootstrap depth {oi.get('boot_depth', '?')}, {ocfg.get('levels_after')} levels after, "
              f"dnum {ocfg.get('dnum')}, P chosen by OpenFHE" + (f" ({oi['special_bits']} bits)" if oi.get("special_bits") else ""))
    out = [f"chain: WAVIS {wchain}; OpenFHE {ochain}",
           f"secret: both uniform ternary for the user, sparse-secret encapsulation h = 32 inside the bootstrap "
           f"(WAVIS K = {p.eval_mod_k}, r = {p.double_angle}, degree {p.cheb_degree}; OpenFHE SPARSE_ENCAPSULATED, "
           f"its own K and polynomial)"]
    out.append(f"inputs: WAVIS uniform complex in [-1, 1]^2; OpenFHE {oi.get('inputs', 'real')} in [-1, 1] (at this "
               f"setting OpenFHE's EvalBootstrap of uniform complex inputs came back with 1.0 bits mean, measured; "
               f"the operations run are the same for real and complex slots)")
    if oi.get("log_qp"):
        out.append(f"log2 QP: OpenFHE {oi['log_qp']}")
    return out


# ----------------------------------------------------------------------------------------- tfhe
def suite_tfhe(h, budget: Budget):
    """One NAND gate (gate bootstrapping) on WAVIS presets and OpenFHE binfhe STD128 (GINX),
    interleaved, against the bound server-key bytes / bandwidth; WAVIS batches of B gates
    (gates/s) vs batch size and threads. OpenFHE has no identical parameter set: STD128 is its
    128-bit Boolean set (the deviation is recorded)."""
    plan, rows = h.plan, []
    refs_status = h.ref_status("openfhe")
    for pi, preset in enumerate(plan["tfhe_presets"]):
        if not budget.allows(10):
            break
        cfg = {"preset": preset, "batches": plan["tfhe_batches"], "threads": 1}
        workers = {}
        w = _start(h, "wavis", [sys.executable, "-m", "wavis.bench.worker", "tfhe", json.dumps(cfg)], child_env(1))
        if isinstance(w, str):
            return rows, w
        workers["wavis"] = w
        status = {}
        if refs_status == "ok":
            r = _start(h, "openfhe", [str(h.ref_python("openfhe")), str(h.bench_dir / "openfhe_binfhe_gate.py"),
                                      "--serve", json.dumps({"paramset": "STD128", "method": "GINX"})], child_env(1))
            workers["openfhe"] = r if not isinstance(r, str) else None
            if isinstance(r, str):
                status["openfhe"] = r
                del workers["openfhe"]
        else:
            status["openfhe"] = refs_status
        xw, xstatus, xmeta = _extra_wavis(h, "tfhe", {**cfg, "batches": []}, 1)
        workers.update(xw)
        status.update(xstatus)
        h.log(f"  tfhe {preset}: key generation ({', '.join(workers)}) ...")
        status.update(_ready_all(workers, budget, h.log))
        if "wavis" not in workers:
            return rows, status.get("wavis", "wavis worker failed")
        wi = workers["wavis"].info
        refs = {"openfhe": _ref_meta(h, "openfhe", workers["openfhe"].info if "openfhe" in workers else None,
                                     status.get("openfhe", "?"))}
        oi = workers["openfhe"].info if "openfhe" in workers else {}
        if oi.get("version"):
            h.software["openfhe"] = oi["version"]
        refs["openfhe"]["deviations"] = {"*": [
            f"OpenFHE STD128/GINX (n={oi.get('n', '?')}, N={oi.get('N', '?')}) vs WAVIS {preset} (n={wi['n']}, "
            f"k={wi['k']}, N={wi['N']}): no common parameter set; both 128-bit Boolean sets"]}
        refs.update(_extra_refs(workers, status, xmeta))
        params = {"preset": preset, "n": wi["n"], "k": wi["k"], "N": wi["N"], "threads": 1}
        data = interleave(workers, ["nand_gate"], plan["rounds"], plan["tfhe_reps"], budget, log=h.log)
        for row in comparison_rows("tfhe", data, params, refs):
            nb = hwbound.blind_rotation_bytes(wi["server_key_bytes"], 1, wi["n"])
            b = hwbound.bound(h.hw, nb, None)
            set_bound(row, b["seconds"] * 1e3, **b, what="gate bootstrapping: server key read once per gate",
                      compute="not modelled (double-precision FFT, no modular multiplies)")
            rows.append(row)
        for lib in [x for x in workers if x != "wavis"]:  # the batch rows below are WAVIS's alone
            workers.pop(lib).close()
        for threads in plan["tfhe_threads"]:
            if not budget.allows(5):
                break
            wk = workers["wavis"]
            if threads != 1:  # a second WAVIS worker with a bigger pool
                c2 = dict(cfg, threads=threads)
                wk = _start(h, "wavis", [sys.executable, "-m", "wavis.bench.worker", "tfhe", json.dumps(c2)],
                            child_env(threads))
                try:
                    wk.wait_ready(timeout=max(60.0, budget.left()))
                except WorkerError:
                    break
            ops = [f"nand_batch_{m}" for m in plan["tfhe_batches"]]
            data = interleave({"wavis": wk}, ops, plan["rounds"], 2 if h.mode == "quick" else 3, budget, log=h.log)
            for row in comparison_rows("tfhe", data, {}, {}):
                m = int(row["name"].rsplit("_", 1)[1])
                ms = row["value"]
                if not ms:
                    continue
                st = row["stats"]
                gps = make_row("tfhe", "nand_batch_gates_per_s", m / ms * 1e3, "gates/s", better="higher",
                               params={**params, "batch": m, "threads": threads},
                               stats={"median": m / st["median"] * 1e3, "min": m / st["max"] * 1e3,
                                      "max": m / st["min"] * 1e3, "n": st["n"], "spread_over": st["spread_over"]},
                               check=row["check"], samples=[m / s * 1e3 if s else None for s in row["samples"]])
                nb = hwbound.blind_rotation_bytes(wi["server_key_bytes"], m, wi["n"])
                b = hwbound.bound(h.hw, nb, None)
                set_bound(gps, 1.0 / b["seconds"] * threads, **b, what="server key read once per batch, per thread")
                rows.append(gps)
            if wk is not workers["wavis"]:
                wk.close()
        workers["wavis"].close()
    return rows, ""


# -------------------------------------------------------------------------------------- service
def suite_service(h, budget: Budget):
    """Service throughput vs concurrency: benchmarks/bench_engine.py (a real ``wavis serve``
    over PostgreSQL and Redis, closed-loop clients posting /tfhe/gate and /tfhe/batch), read
    back as rows: requests/s and p99 per concurrency, /tfhe/batch gates/s vs the library's."""
    script = h.bench_dir / "bench_engine.py"
    if not script.exists():
        return [], "skipped: benchmarks/bench_engine.py not found"
    why = _services_down()
    if why:
        return [], f"skipped: {why}"
    sp = h.plan["service"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "engine.json"
        argv = [sys.executable, str(script), "--seconds", str(sp["seconds"]), "--out", str(out), "--no-plot",
                "--concurrency", *map(str, sp["concurrency"])]
        for flag, key in (("--sizes", "sizes"), ("--delays", "delays"), ("--batch-sizes", "batch_sizes")):
            if sp.get(key):
                argv += [flag, *map(str, sp[key])]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=max(30.0, budget.left() + 30),
                               env=child_env(h.threads))
        except subprocess.TimeoutExpired:
            return [], "bench_engine.py ran past the budget"
        if r.returncode != 0 or not out.exists():
            return [], "bench_engine.py failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:300]
        res = json.loads(out.read_text())
    rows = []
    for run in res["runs"]:
        base = {"preset": res["preset"], "max_batch": run["max_size"], "delay_ms": run["delay_ms"], "threads": h.threads}
        for g in run["gate"]:
            errs = g.get("errors") or {}
            chk = {"ok": not errs, "bits": None, "detail": f"{g['requests']} answers 200" + (f", errors {errs}" if errs else "")}
            rows.append(make_row("service", "gate_requests_per_s", g["rps"], "req/s", better="higher",
                                 params={**base, "concurrency": g["concurrency"]}, check=chk,
                                 stats={"median": g["rps"], "min": g["rps"], "max": g["rps"], "n": 1,
                                        "spread_over": "one load point"},
                                 p50_ms=g["p50_ms"], p99_ms=g["p99_ms"]))
        for b in run["batch"]:
            lib = res["library"].get(str(b["gates_per_request"]), res["library"].get(b["gates_per_request"], {}))
            rows.append(make_row("service", "batch_gates_per_s", b["gates_per_s"], "gates/s", better="higher",
                                 params={**base, "batch": b["gates_per_request"], "concurrency": 4},  # bench_engine --batch-concurrency
                                 stats={"median": b["gates_per_s"], "min": b["gates_per_s"], "max": b["gates_per_s"],
                                        "n": 1, "spread_over": "one load point"},
                                 check={"ok": True, "bits": None, "detail": "answers 200"},
                                 library_gates_per_s=lib.get("gates_per_s"),
                                 service_over_library=(b["gates_per_s"] / lib["gates_per_s"]) if lib.get("gates_per_s") else None,
                                 p99_ms=b["p99_ms"]))
    return rows, f"{sp['seconds']} s per load point"


def _services_down() -> str | None:
    import os
    import socket
    from urllib.parse import urlsplit

    for env, default in (("WAVIS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                         ("WAVIS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")):
        u = urlsplit(os.environ.get(env, default))
        try:
            socket.create_connection((u.hostname or "127.0.0.1", u.port or 0), timeout=2).close()
        except OSError:
            return f"{u.scheme} at {u.hostname}:{u.port} not reachable (set {env})"
    try:
        import aiohttp  # noqa: F401
        import asyncpg  # noqa: F401
    except ImportError:
        return "the service extra is not installed (pip install -e '.[service]')"
    return None


# ------------------------------------------------------------------------------------------ gpu
def suite_gpu(h, budget: Budget):
    """benchmarks/bench_gpu.py on a CUDA device (the device check runs the same script); its
    document is already in this schema, its rows are taken as they are."""
    probe = subprocess.run([sys.executable, "-c", "import cupy; print(cupy.cuda.runtime.getDeviceCount())"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or not probe.stdout.strip().isdigit() or int(probe.stdout.strip()) < 1:
        return [], "skipped: no CUDA device (or CuPy not installed); the device check runs this suite"
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, str(h.bench_dir / "bench_gpu.py"), "--out", tmp, "--budget",
                str(int(max(30, budget.left() - 10)))] + (["--quick"] if h.mode == "quick" else [])
        subprocess.run(argv, timeout=budget.left() + 60, env=child_env(h.threads))
        p = Path(tmp) / "bench.json"
        if not p.exists():
            return [], "bench_gpu.py wrote no bench.json"
        doc = json.loads(p.read_text())
    h.doc["machine"]["gpu"] = doc.get("machine", {}).get("gpu")
    return doc.get("rows", []), ""


SUITES = {"ntt": suite_ntt, "ckks": suite_ckks, "bootstrap": suite_bootstrap, "tfhe": suite_tfhe,
          "service": suite_service, "gpu": suite_gpu}
