"""The harness's WAVIS worker run against another checkout's build (``wavis bench --baseline DIR``).

Usage (the harness starts it; by hand only for debugging)::

    DIR/.venv/bin/python benchmarks/baseline_worker.py KIND CFG_JSON

Runs *this* checkout's worker (``wavis/bench/worker.py``, ``wavis/bench/protocol.py``, loaded by
path) with the ``wavis`` package of the interpreter's own environment — an older build, which
may predate ``wavis.bench``. So the same operations and the same output checks time the old and
the new code, interleaved round by round by :func:`wavis.bench.runner.interleave`.

``CFG_JSON`` may carry ``"tfhe_fields"``: the TFHE parameter fields of this checkout's preset
(``TfheParameters`` field names), used instead of the old checkout's preset of the same name
when the presets changed in between (the old build then runs today's parameters).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

BENCH_PKG = Path(__file__).resolve().parents[1] / "wavis" / "bench"


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    kind, cfg = sys.argv[1], json.loads(sys.argv[2])
    import wavis  # the old checkout's package (its own .venv)

    if not hasattr(wavis, "bench"):  # the old tree has no harness: this checkout's protocol stands in
        sys.modules["wavis.bench"] = types.ModuleType("wavis.bench")
    _load("wavis.bench.protocol", BENCH_PKG / "protocol.py")
    fields = cfg.get("tfhe_fields")
    if kind == "tfhe" and fields:
        from wavis import tfhe
        from wavis.tfhe.params import TfheParameters

        keygen = tfhe.keygen

        import dataclasses

        known = {f.name for f in dataclasses.fields(TfheParameters)}

        def keygen_with_fields(preset=None, seed=None):
            return keygen(TfheParameters(**{k: v for k, v in fields.items() if k in known}), seed)

        tfhe.keygen = keygen_with_fields
    worker = _load("wavis_bench_worker_baseline", BENCH_PKG / "worker.py")
    make = worker.MAKERS[kind]

    def make_described(c: dict) -> dict:
        made = make(c)
        if not made["info"].get("simd_path"):
            made["info"]["simd_path"] = os.environ.get("WAVIS_BASELINE_SIMD") or describe_old_build()
        return made

    worker.serve(make_described)


def describe_old_build() -> str:
    """What an old build without ``simd_path()`` runs: before the runtime dispatch (issue 11),
    the ring/CKKS core chose AVX-512/IFMA kernels at run time (scalar otherwise) and TFHE its
    kernels at compile time (-march=native by default)."""
    import platform

    flags = ""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    if "avx512f" in flags.split():
        return "old build: ring/CKKS AVX-512 at run time; TFHE AVX-512 (-march=native)"
    tfhe = "AVX2+FMA" if {"avx2", "fma"} <= set(flags.split()) else "portable"
    return f"old build ({platform.machine()}): ring/CKKS scalar (no AVX-512 here); TFHE {tfhe} (-march=native)"


if __name__ == "__main__":
    main()
