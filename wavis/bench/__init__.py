"""The benchmark harness: ``wavis bench`` / ``python -m benchmarks`` / ``python -m wavis.bench``.

One command measures every layer — NTT, CKKS, CKKS bootstrapping, TFHE, the service and the
GPU backend — against OpenFHE and TenSEAL (each in its own virtual environment, set up by
``wavis bench setup``) and against the machine's own bound (memory bandwidth and modular-
multiply throughput measured on the spot, :mod:`wavis.bench.hwbound`), and writes:

* a table on the terminal (rich);
* ``benchmarks/results/bench-<mode>-<host>.json`` in the schema of :mod:`wavis.bench.schema`;
* PNG plots beside it (``…-ratios.png``, ``…-bound.png``, ``…-scaling.png``; matplotlib).

Subcommands::

    wavis bench [run] [--quick | --full] [--suites ntt,ckks,...] [--threads T] [--rounds R]
    wavis bench setup [--python310 PATH] [--force] [--only openfhe|tenseal]
                      [--openfhe-src D --openfhe-hexl-src D --hexl-src D --cpu-features-src D] [--cache D]
    wavis bench compare OLD.json NEW.json [--min-noise 0.05] [--cpu]   # exit 1 on a regression
    wavis bench readme [--readme README.md]                      # the README's performance section
    wavis bench plot RESULT.json

Method (docs/benchmarks.md): each library is one long-lived worker process
(:mod:`wavis.bench.protocol`); the harness runs the same operation on every library one
after the other, for every operation of a round, round after round; an output is decrypted
and checked before its time counts; a row gives the median and spread over rounds and the
per-round ratio WAVIS / other (median, min–max), with wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

SUITE_NAMES = ["ntt", "ckks", "bootstrap", "tfhe", "service", "gpu"]


def repo_root() -> Path:
    """The checkout holding benchmarks/ (the current directory's, else the package's)."""
    env = os.environ.get("WAVIS_BENCH_ROOT")
    if env:
        return Path(env).resolve()
    for base in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]):
        if (base / "benchmarks").is_dir() and (base / "wavis").is_dir():
            return base
    return Path.cwd()


class Harness:
    """The state of one run, handed to every suite."""

    def __init__(self, args, root: Path) -> None:
        from .suites import PLANS

        self.mode = "full" if args.full else "quick"
        self.plan = json.loads(json.dumps(PLANS[self.mode]))
        if args.rounds:
            self.plan["rounds"] = args.rounds
        if getattr(args, "ckks_configs", None):
            from .suites import CKKS_CONFIGS

            names = [c.strip() for c in args.ckks_configs.split(",") if c.strip()]
            bad = [c for c in names if c not in CKKS_CONFIGS]
            if bad:
                raise SystemExit(f"unknown CKKS config(s) {bad}; choose from {sorted(CKKS_CONFIGS)}")
            self.plan["ckks_configs"] = names
        self.threads = args.threads
        self.root = root
        self.bench_dir = root / "benchmarks"
        self.no_refs = args.no_refs
        from .native import default_cache

        self.native_cache = Path(args.native_cache) if getattr(args, "native_cache", None) else default_cache()
        self.quiet = args.quiet
        # extra WAVIS columns, interleaved with the others (suites ckks and tfhe)
        self.baseline = Path(args.baseline).resolve() if getattr(args, "baseline", None) else None
        self.baseline_label = getattr(args, "baseline_label", None) or (self.baseline.name if self.baseline else None)
        self.simd_also = [x.strip() for x in (getattr(args, "simd_also", None) or "").split(",") if x.strip()]
        self.software: dict = {}
        self.doc: dict = {}
        self.hw: dict = {}
        self._ref_status: dict = {}

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def ref_python(self, lib: str) -> Path:
        from .refenv import venv_python

        return venv_python(self.bench_dir, lib)

    def ref_status(self, lib: str) -> str:
        if self.no_refs:
            return "not run (--no-refs)"
        if lib not in self._ref_status:
            if lib == "openfhe-native":
                from . import native

                self._ref_status[lib] = native.status(self.native_cache)
            else:
                from .refenv import status

                self._ref_status[lib] = status(self.bench_dir, lib)
        return self._ref_status[lib]

    def native_worker(self) -> Path:
        """The OpenFHE + HEXL worker built by ``wavis bench setup --openfhe-src …``."""
        from . import native

        return native.worker_path(self.native_cache)

    def native_manifest(self) -> dict | None:
        from . import native

        return native.manifest(self.native_cache)


def heavy_suite(name: str, plan: dict) -> bool:
    """Whether a suite's working set may pass 4 GB: every bootstrap (n32768 keys are 1.4 GB per
    library, three libraries in parallel) and the CKKS suite once it holds an N = 2^16 set."""
    from .suites import CKKS_CONFIGS

    if name == "bootstrap":
        return True
    if name == "ckks":
        ns = [CKKS_CONFIGS[c]["N"] for c in plan.get("ckks_configs", [])] + [c["N"] for c in plan.get("ckks_scaling", [])]
        return max(ns, default=0) >= 65536
    return False


def _heavy_lock(path: str, name: str, h):
    """An exclusive flock on ``path`` held for a heavy suite (shared hosts: other memory-heavy jobs
    take the same lock), taken before the suite's budget starts; None for a light suite."""
    import fcntl

    if not heavy_suite(name, h.plan):
        return None
    f = open(path, "a")
    h.log(f"[{name}] waiting for {path} (memory-heavy suite) ...")
    t = time.monotonic()
    fcntl.flock(f, fcntl.LOCK_EX)
    h.log(f"[{name}] got {path} after {time.monotonic() - t:.0f} s")
    return f


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:60]


def run(args) -> int:
    os.environ.setdefault("WAVIS_THREADS", str(args.threads))  # before the core starts its pool
    from . import hwbound, report
    from .machine import loadavg, machine_info, software_info
    from .runner import Budget
    from .schema import dump, new_doc
    from .suites import SUITES

    root = repo_root()
    h = Harness(args, root)
    suites = [s.strip() for s in args.suites.split(",")] if args.suites else [
        s for s in SUITE_NAMES if not (h.mode == "quick" and s == "gpu")] + (["gpu"] if h.mode == "quick" else [])
    bad = [s for s in suites if s not in SUITES]
    if bad:
        print(f"unknown suite(s) {bad}; choose from {SUITE_NAMES}", file=sys.stderr)
        return 2
    cmd = "wavis bench " + " ".join(args.argv_text) if args.argv_text else "wavis bench"
    doc = new_doc(cmd, h.mode, machine_info(h.threads), software_info(root))
    h.doc, h.software = doc, doc["software"]
    t0 = time.monotonic()
    h.log(f"wavis bench ({h.mode}): {doc['machine']['host_class']}, threads {h.threads}, "
          f"load {doc['machine']['loadavg_start']}")
    h.log("measuring the machine's bound (memory bandwidth, modular multiplies) ...")
    h.hw = doc["bound"] = hwbound.measure(all_paths=h.mode == "full",
                                          bandwidth_mib=int(os.environ.get("WAVIS_BENCH_BW_MIB", "256")))
    h.log("  " + report.header_lines(doc)[-1])
    scale = args.budget_scale
    for name in suites:
        budget_s = h.plan["budgets"][name] * scale
        lock = _heavy_lock(args.heavy_lock, name, h) if args.heavy_lock else None
        b = Budget(budget_s)
        h.log(f"[{name}] (budget {budget_s:.0f} s)")
        t = time.monotonic()
        try:
            rows, note = SUITES[name](h, b)
            status = "skipped" if note.startswith("skipped") else ("partial" if b.exhausted else "ok")
            if not rows and status == "ok":  # nothing measured and not a deliberate skip
                status = "failed"
            if any(r.get("check") and not r["check"].get("ok") for r in rows):
                status = "failed"
            if rows and all(r.get("value") is None and r.get("error") for r in rows):
                status = "failed"  # every row's WAVIS figure is missing with an error (e.g. a worker died)
                note = "; ".join(filter(None, [note, rows[0]["error"][:200]]))
        except Exception as e:  # one suite's failure is recorded; the others run
            import traceback

            rows, note, status = [], f"{type(e).__name__}: {e}", "failed"
            h.log(traceback.format_exc(limit=5))
        finally:
            if lock is not None:
                lock.close()  # releases the flock
        doc["rows"] += rows
        doc["suites"][name] = {"status": status, "seconds": round(time.monotonic() - t, 1), "budget_s": budget_s,
                               "note": note}
        h.log(f"[{name}] {status} in {time.monotonic() - t:.0f} s {note}")
    doc["machine"]["loadavg_end"] = loadavg()
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    for lib in ("openfhe", "tenseal", "openfhe_native"):
        h.software.setdefault(lib, None)
    m = doc["machine"]
    host = "-".join(_slug(x) for x in (m["cpu_model"], m.get("cpu_id"), m["simd_path"]) if x)
    out = Path(args.out) if args.out else h.bench_dir / "results" / f"bench-{h.mode}-{host}.json"
    dump(doc, out)
    report.print_table(doc)
    pngs = []
    if not args.no_plots:
        try:
            pngs = report.plot(doc, out.with_suffix(""))
        except ImportError:
            h.log("matplotlib is not installed (pip install -e '.[bench]'): no plots")
    h.log(f"wrote {out}" + "".join(f"\nwrote {p}" for p in pngs) + f"\nin {doc['elapsed_s']:.0f} s")
    return 1 if any(s["status"] == "failed" for s in doc["suites"].values()) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wavis bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="run the suites (the default subcommand)")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one size per suite, one round, < 5 min on 2 cores (default)")
    mode.add_argument("--full", action="store_true", help="every size, 3 rounds, scaling sweeps")
    r.add_argument("--suites", help=f"comma-separated subset of {','.join(SUITE_NAMES)}")
    r.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    r.add_argument("--rounds", type=int, help="interleaved rounds (default: quick 1, full 3)")
    r.add_argument("--ckks-configs", metavar="NAMES",
                   help="comma-separated CKKS parameter sets of the ckks suite (n14, n16; default: the mode's)")
    r.add_argument("--budget-scale", type=float, default=1.0, help="multiply every suite's time budget")
    r.add_argument("--no-refs", action="store_true", help="WAVIS only (no OpenFHE/TenSEAL columns)")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--native-cache", help="the OpenFHE + HEXL build of `wavis bench setup --openfhe-src …` (default "
                                          "$WAVIS_BENCH_CACHE or ~/.cache/wavis/openfhe-hexl); used where built")
    r.add_argument("--out", help="result JSON (default benchmarks/results/bench-<mode>-<cpu>-<simd>.json)")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--baseline", metavar="DIR",
                   help="another checkout with its own .venv (e.g. an older commit's worktree): its WAVIS build runs "
                        "as the extra column 'baseline' in the ckks and tfhe suites, interleaved, same operations "
                        "and checks (benchmarks/baseline_worker.py); ratios WAVIS / baseline per round")
    r.add_argument("--baseline-label", help="the baseline's name in the table (default: DIR's name)")
    r.add_argument("--simd-also", metavar="PATHS",
                   help="comma-separated SIMD paths (e.g. portable): this checkout again with WAVIS_SIMD=PATH as "
                        "extra columns 'wavis_PATH' in the ckks and tfhe suites")
    r.add_argument("--heavy-lock", metavar="FILE",
                   help="hold an exclusive flock on FILE while a memory-heavy suite runs (bootstrap; ckks with "
                        "N=2^16), so a shared host's other heavy jobs wait for it and it for them")
    s = sub.add_parser("setup", help="create the reference environments (OpenFHE: Python 3.10; TenSEAL)")
    s.add_argument("--python310", help="a Python 3.10 interpreter for the OpenFHE wheel")
    s.add_argument("--only", choices=["openfhe", "tenseal"])
    s.add_argument("--force", action="store_true", help="rebuild even when the library imports")
    g = s.add_argument_group("OpenFHE + Intel HEXL from sources (../shared/anchors/README.md), built in a cache "
                             "outside the repository")
    g.add_argument("--openfhe-src", help="openfheorg/openfhe-development source tree (v1.5.1, cereal submodule present)")
    g.add_argument("--openfhe-hexl-src", help="openfheorg/openfhe-hexl source tree (v1.5.1.0, the overlay)")
    g.add_argument("--hexl-src", help="intel/hexl source tree (v1.2.5 or later)")
    g.add_argument("--cpu-features-src", help="google/cpu_features source tree (the commit HEXL pins)")
    g.add_argument("--cache", help="build cache (default $WAVIS_BENCH_CACHE or ~/.cache/wavis/openfhe-hexl)")
    g.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    g.add_argument("--anchors-cpp", help="the anchors' openfhe_ckks_bench.cpp, also built when given or found "
                                         "(default ../shared/anchors/openfhe_ckks_bench.cpp beside the checkout)")
    g.add_argument("--worker-only", action="store_true",
                   help="only recompile the native worker against an existing build in the cache")
    c = sub.add_parser("compare", help="flag regressions beyond the measured noise between two result files")
    c.add_argument("old")
    c.add_argument("new")
    c.add_argument("--min-noise", type=float, default=0.05, help="smallest relative noise assumed (default 0.05)")
    c.add_argument("--cpu", action="store_true", help="compare CPU-time medians (steadier on a loaded host)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    rd = sub.add_parser("readme", help="write the README's performance section from benchmarks/results")
    rd.add_argument("--readme", help="default: README.md of the checkout")
    rd.add_argument("--results", help="default: benchmarks/results of the checkout")
    pl = sub.add_parser("plot", help="draw the PNG plots of a result file")
    pl.add_argument("result")
    return p


def _setup(args, root: Path) -> int:
    """The reference venvs; with sources given, also the OpenFHE + HEXL build (wavis.bench.native)."""
    from . import native
    from .refenv import setup

    srcs = (args.openfhe_src, args.openfhe_hexl_src, args.hexl_src, args.cpu_features_src)
    if args.worker_only:
        cache = Path(args.cache) if args.cache else native.default_cache()
        try:
            print(f"built {native.build_worker(root, cache, anchors_cpp=args.anchors_cpp)}")
        except native.NativeBuildError as e:
            print(f"native worker: {e}", file=sys.stderr)
            return 1
        return 0
    rc = setup(root / "benchmarks", [args.only] if args.only else ["openfhe", "tenseal"], args.python310, args.force)
    if any(srcs):
        try:
            native.build(root, *srcs, cache=Path(args.cache) if args.cache else None, jobs=args.jobs, force=args.force,
                         anchors_cpp=args.anchors_cpp)
        except native.NativeBuildError as e:
            print(f"OpenFHE + HEXL: {e}", file=sys.stderr)
            rc |= 1
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "setup", "compare", "readme", "plot", "-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    root = repo_root()
    if args.cmd == "run":
        args.argv_text = argv[1:]
        return run(args)
    if args.cmd == "setup":
        return _setup(args, root)
    if args.cmd == "compare":
        from .compare import compare, print_comparison
        from .schema import load

        old, new = load(args.old), load(args.new)
        res = compare(old, new, args.min_noise, "cpu" if args.cpu else "wall")
        if args.json:
            print(json.dumps(res, indent=1, default=str))
        else:
            print_comparison(res, old, new)
        return 1 if res["regressions"] else 0
    if args.cmd == "readme":
        from .report import write_readme

        readme = Path(args.readme) if args.readme else root / "README.md"
        changed = write_readme(readme, Path(args.results) if args.results else root / "benchmarks" / "results", root)
        print(f"{readme}: {'updated' if changed else 'unchanged'}")
        return 0
    if args.cmd == "plot":
        from .report import plot
        from .schema import load

        for p in plot(load(args.result), Path(args.result).with_suffix("")):
            print(f"wrote {p}")
        return 0
    build_parser().print_help()
    return 2
