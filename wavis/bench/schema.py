"""The results schema of the benchmark harness (``wavis-bench/1``), owned here.

One JSON document per run::

    {"schema": "wavis-bench/1", "created": ISO-8601 UTC, "command": str, "mode": "quick"|"full"|...,
     "machine": {"cpu_model", "simd_path", "simd_paths", "cores", "threads", "memory_gib", "host_class",
                 "loadavg_start", "loadavg_end", "gpu"},
     "software": {"wavis", "git_commit", "git_dirty", "python", "numpy", "openfhe", "tenseal", ...},
     "bound": {"memory_bandwidth_GBps", "mulmod_per_s": {"<=50": r, ">50": r}, "mulmod_path", "method"},
     "suites": {name: {"status": "ok"|"partial"|"skipped"|"failed", "seconds", "budget_s", "note"}},
     "rows": [row, ...]}

A row (one measured figure)::

    {"suite", "name", "unit", "better": "lower"|"higher", "params": {...},
     "value": the WAVIS median (the figure), "stats": {"median", "min", "max", "n", "spread_over"},
     "cpu": {"median"} (process CPU time, all threads, same unit) or absent,
     "check": {"ok", "bits", "detail"} (the output decrypted and checked),
     "samples": [per-round medians], "target", "target_op", "bound", "ratio_to_bound",
     "refs": {lib: {"label", "status", "stats", "cpu", "check", "ratio": {"median", "min", "max",
                    "rounds"}, "deviations": [str]}}}

``bound`` is ``{"value" (same unit as value), "limit": "memory"|"compute", "bytes", "mulmods",
"memory_s", "compute_s"}``; ``ratio_to_bound`` = value / bound value (1.0 = at the machine's
limit; for a higher-is-better unit, bound value / value). The GPU device check writes the same
document (rows with value, target, bound and ratio_to_bound).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

SCHEMA = "wavis-bench/1"
ROW_KEYS = ("suite", "name", "unit", "value")


def new_doc(command: str, mode: str, machine: dict, software: dict) -> dict:
    return {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command,
            "mode": mode, "machine": machine, "software": software, "bound": {}, "suites": {}, "rows": []}


def stats(values: list[float], spread_over: str = "rounds") -> dict | None:
    """Median, min, max and count of ``values`` (None when empty)."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v), "spread_over": spread_over}


def rel_spread(st: dict | None) -> float:
    """(max − min) / median of a stats dict (0 for a single sample)."""
    if not st or not st.get("median"):
        return 0.0
    return (st["max"] - st["min"]) / abs(st["median"])


def make_row(suite: str, name: str, value: float | None, unit: str, *, params: dict | None = None,
             better: str = "lower", **extra) -> dict:
    row = {"suite": suite, "name": name, "unit": unit, "better": better, "params": params or {}, "value": value,
           "target": None, "target_op": None, "bound": None, "ratio_to_bound": None, "refs": {}}
    row.update(extra)
    return row


def set_bound(row: dict, bound_value: float | None, **detail) -> dict:
    """Attach a hardware bound (same unit as the row) and the ratio to it."""
    if bound_value is None or not row.get("value"):
        return row
    row["bound"] = {"value": bound_value, **detail}
    row["ratio_to_bound"] = (row["value"] / bound_value if row.get("better", "lower") == "lower"
                             else bound_value / row["value"])
    return row


def row_key(row: dict) -> str:
    """Identity of a figure across runs: suite, name and parameters."""
    return json.dumps([row["suite"], row["name"], row.get("params", {})], sort_keys=True, default=str)


def validate(doc: dict) -> list[str]:
    """Problems with a document (empty when it follows the schema)."""
    errs = []
    if doc.get("schema") != SCHEMA:
        errs.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for k in ("created", "machine", "software", "rows", "suites"):
        if k not in doc:
            errs.append(f"missing {k!r}")
    for k in ("cpu_model", "simd_path", "cores", "host_class"):
        if k not in doc.get("machine", {}):
            errs.append(f"machine lacks {k!r}")
    if "git_commit" not in doc.get("software", {}):
        errs.append("software lacks 'git_commit'")
    for i, r in enumerate(doc.get("rows", [])):
        for k in ROW_KEYS:
            if k not in r:
                errs.append(f"row {i} lacks {k!r}")
        if r.get("better") not in ("lower", "higher"):
            errs.append(f"row {i}: better must be 'lower' or 'higher'")
        for lib, ref in r.get("refs", {}).items():
            if "status" not in ref:
                errs.append(f"row {i} ref {lib} lacks 'status'")
    return errs


def load(path: str | Path) -> dict:
    doc = json.loads(Path(path).read_text())
    errs = validate(doc)
    if errs:
        raise ValueError(f"{path}: not a {SCHEMA} document: " + "; ".join(errs[:5]))
    return doc


def dump(doc: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1, default=str) + "\n")
