"""Workers and interleaved rounds.

Each library runs as one worker process (:mod:`wavis.bench.protocol`). :func:`interleave` asks
every worker for the same operation one after the other, for each operation of a round, for
each round (the order of the libraries rotates every round), so that a slow phase of a shared
host hits every library alike. A figure counts only when the worker's check of its output
passed. Times are wall-clock milliseconds; the process CPU time (all threads) is kept beside
them, since wall time on a loaded host is an upper bound.
"""

from __future__ import annotations

import json
import os
import selectors
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from .protocol import PREFIX
from .schema import make_row, stats


class WorkerError(RuntimeError):
    pass


class Budget:
    """A suite's time budget (seconds of wall clock from its start)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.t0 = seconds, time.monotonic()
        self.exhausted = False

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)

    def allows(self, estimate: float = 0.0) -> bool:
        ok = self.left() > estimate
        if not ok:
            self.exhausted = True
        return ok


class Worker:
    """A library's worker process. ``ready`` holds its first message (info, ops)."""

    def __init__(self, lib: str, argv: list[str], env: dict | None = None, timeout: float = 600) -> None:
        self.lib = lib
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     text=True, env=env, bufsize=1)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.started = time.monotonic()
        self.ready: dict | None = None
        self.timeout = timeout

    def wait_ready(self, timeout: float | None = None) -> dict:
        if self.ready is None:
            self.ready = self._read(timeout or self.timeout)
            self.setup_s = time.monotonic() - self.started
            if not self.ready.get("ready"):
                raise WorkerError(f"{self.lib}: {self.ready.get('error')}")
        return self.ready

    @property
    def ops(self) -> list[str]:
        return (self.ready or {}).get("ops", [])

    @property
    def info(self) -> dict:
        return (self.ready or {}).get("info", {})

    def stderr_tail(self, n: int = 800) -> str:
        self._err.seek(0)
        return self._err.read()[-n:]

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close(kill=True)
                raise WorkerError(f"{self.lib}: no answer in {timeout:.0f} s")
            if not self._sel.select(timeout=min(left, 1.0)):
                if self.proc.poll() is not None:
                    raise WorkerError(f"{self.lib}: exited with {self.proc.returncode}: {self.stderr_tail()}")
                continue
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=5)
                raise WorkerError(f"{self.lib}: exited with {self.proc.returncode}: {self.stderr_tail()}")
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])

    def request(self, op: str, reps: int, warmup: int = 0, timeout: float | None = None) -> dict:
        self.wait_ready()
        self.proc.stdin.write(json.dumps({"op": op, "reps": reps, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout or self.timeout)

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            try:
                if not kill:
                    self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                    self.proc.stdin.flush()
                    self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._sel.close()
        self._err.close()


@dataclass
class Series:
    """One library's measurements of one operation."""

    rounds: list = field(default_factory=list)   # per-round median wall ms (None: failed round)
    cpu: list = field(default_factory=list)      # per-round median CPU ms
    reps: list = field(default_factory=list)     # every repetition's wall ms
    cpu_reps: list = field(default_factory=list)  # every repetition's CPU ms
    check: dict | None = None
    error: str | None = None

    def skip(self, error: str | None = None) -> None:
        if error:
            self.error = error[:500]
        self.rounds.append(None)
        self.cpu.append(None)


def interleave(workers: dict[str, Worker], ops: list[str], rounds: int, reps: int, budget: Budget,
               warmup: int = 1, log=print) -> dict[str, dict[str, Series]]:
    """Run ``ops`` on every worker that has them, interleaved; stops when the budget is spent."""
    data = {op: {lib: Series() for lib, w in workers.items() if op in w.ops} for op in ops}
    libs = list(workers)
    for r in range(rounds):
        order = libs[r % len(libs):] + libs[:r % len(libs)]
        for op in ops:
            for lib in order:
                if lib not in data[op]:
                    continue
                s = data[op][lib]
                if s.error or not budget.allows():
                    s.skip()
                    continue
                try:
                    res = workers[lib].request(op, reps, warmup if r == 0 else 0,
                                               timeout=max(30.0, budget.left() + 60))
                except WorkerError as e:
                    s.skip(str(e))
                    continue
                if "error" in res:
                    s.skip(res["error"])
                    continue
                s.check = res["check"]
                if not res["check"]["ok"]:  # a wrong output's time does not count
                    s.skip("check failed: " + res["check"]["detail"])
                    continue
                s.rounds.append(statistics.median(res["ms"]))
                s.cpu.append(statistics.median(res["cpu_ms"]))
                s.reps.extend(res["ms"])
                s.cpu_reps.extend(res["cpu_ms"])
            line = "  ".join(f"{lib} {data[op][lib].rounds[-1]:.2f}" if data[op][lib].rounds[-1] is not None
                             else f"{lib} -" for lib in libs if lib in data[op])
            log(f"    round {r + 1}/{rounds} {op}: {line} (ms)")
    return data


def _stats_of(s: Series, cpu: bool = False) -> dict | None:
    """Over rounds when there are two or more, else over the repetitions of the one round."""
    vals = [v for v in (s.cpu if cpu else s.rounds) if v is not None]
    if len(vals) >= 2:
        return stats(vals, "rounds")
    reps = s.cpu_reps if cpu else s.reps
    return stats(reps, "reps") if reps else None


def comparison_rows(suite: str, data: dict[str, dict[str, Series]], params: dict, refs: dict[str, dict],
                    unit: str = "ms") -> list[dict]:
    """Rows for interleaved measurements: WAVIS's figure, each reference's figure and the ratio
    WAVIS / reference per round (median, min, max), wall and CPU.

    ``refs``: {lib: {"label", "status", "deviations": {op or "*": [str]}}} for every reference
    the suite wanted (also the ones that are not installed, so the row says why it is empty)."""
    rows = []
    for op, per in data.items():
        w = per.get("wavis")
        if w is None:
            continue
        st = _stats_of(w)
        row = make_row(suite, op, st["median"] if st else None, unit, params=params, stats=st,
                       cpu=_stats_of(w, cpu=True), check=w.check, samples=w.rounds,
                       error=w.error)
        for lib, meta in refs.items():
            devs = list(meta.get("deviations", {}).get("*", [])) + list(meta.get("deviations", {}).get(op, []))
            ref = {"label": meta["label"], "status": meta["status"], "deviations": devs}
            s = per.get(lib)
            if meta["status"] != "ok":
                pass
            elif s is None:
                ref["status"] = "operation not offered"
            else:
                ref["stats"], ref["cpu"], ref["check"], ref["samples"] = _stats_of(s), _stats_of(s, True), s.check, s.rounds
                if s.error:
                    ref["status"] = s.error
                pairs = [(a, b) for a, b in zip(w.rounds, s.rounds) if a is not None and b is not None]
                if pairs:
                    rr = [a / b for a, b in pairs]
                    ref["ratio"] = {**stats(rr), "rounds": rr}
                cp = [a / b for a, b in zip(w.cpu, s.cpu) if a and b]
                if cp:
                    ref["cpu_ratio"] = stats(cp)
            row["refs"][lib] = ref
        rows.append(row)
    return rows


def child_env(threads: int, **extra) -> dict:
    env = dict(os.environ, WAVIS_THREADS=str(threads), OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env
