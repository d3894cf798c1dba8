"""The worker side of the harness's round protocol (no imports outside the standard library).

Every library the harness measures — WAVIS itself and each reference library in its own
virtual environment — runs as one long-lived worker process, so that its keys are generated
once and the harness can interleave the libraries operation by operation, round by round.
Reference scripts in ``benchmarks/`` load this file by path (``sys.path`` gets this folder),
so it must not import ``wavis``.

Protocol (one JSON object per line; the worker's lines start with ``@@`` so that whatever a
library prints itself on stdout is ignored):

* worker → harness, once: ``{"ready": true, "info": {...}, "ops": [names]}`` or
  ``{"ready": false, "error": "..."}``;
* harness → worker: ``{"op": name, "reps": k, "warmup": w}`` (w untimed runs first) → worker: ``{"op": name, "ms": [k wall
  times], "cpu_ms": [k process CPU times, all threads], "check": {"ok": bool, "bits": b,
  "detail": str}}``. The output of the last repetition is decrypted and checked by the
  operation's own check function; the harness counts the times only when ``ok``.
* ``{"quit": true}`` or end of input ends the worker.

An operation is ``(run, check)``: ``run()`` returns the operation's output; ``check(out)``
returns ``(ok, bits, detail)`` where ``bits`` is −log2 of the maximum absolute error
(``None`` when the output is exact, e.g. a Boolean gate).
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback

PREFIX = "@@"


def emit(obj: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def error_bits(max_abs_error: float) -> float:
    """−log2 of a maximum absolute error (60 for an exact result)."""
    return 60.0 if max_abs_error <= 2.0**-60 else -math.log2(max_abs_error)


def run_op(run, check, reps: int, warmup: int = 0) -> dict:
    ms, cpu = [], []
    for _ in range(max(0, warmup)):
        run()
    out = None
    for _ in range(max(1, reps)):
        t, c = time.perf_counter(), time.process_time()
        out = run()
        ms.append(1e3 * (time.perf_counter() - t))
        cpu.append(1e3 * (time.process_time() - c))
    try:
        ok, bits, detail = check(out)
        chk = {"ok": bool(ok), "bits": None if bits is None else float(bits), "detail": str(detail)}
    except Exception as e:  # a failed check is a result, not a crash
        chk = {"ok": False, "bits": None, "detail": f"check raised {type(e).__name__}: {e}"}
    return {"ms": ms, "cpu_ms": cpu, "check": chk}


def serve(make) -> None:
    """Run the protocol: ``make(cfg)`` (cfg = JSON of the last argv) returns
    ``{"info": {...}, "ops": {name: (run, check)}}``; then answer requests from stdin."""
    try:
        cfg = json.loads(sys.argv[-1])
        state = make(cfg)
    except Exception as e:
        emit({"ready": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=6)})
        return
    ops = state["ops"]
    emit({"ready": True, "info": state.get("info", {}), "ops": sorted(ops)})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("quit"):
            break
        name = req.get("op")
        if name not in ops:
            emit({"op": name, "error": f"unknown operation {name!r}"})
            continue
        try:
            emit({"op": name, **run_op(*ops[name], int(req.get("reps", 1)), int(req.get("warmup", 0)))})
        except Exception as e:
            emit({"op": name, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=6)})
