#!/usr/bin/env bash
# WAVIS device check: build, CUDA parity tests, GPU benchmarks — one run, no network, ~8 min.
#
#   benchmarks/device_check.sh OUTDIR
#
# Expects (on the GPU machine): Python 3.12 with CuPy, pybind11, scikit-build-core, pytest and
# hypothesis installed; cmake + a C++ compiler for the CPU core. Writes into OUTDIR:
#   profile.txt    where the GPU time goes (benchmarks/gpu_profile.py; also profile.json)
#   summary.json   every step's status, exit code and seconds, the device, the parity test counts
#                  and the benchmark figures (always written, also when a step fails)
#   logs.tgz       each step's .log, steps.tsv and pytest.xml (JUnit), in one archive (the device
#                  tool brings back at most 8 files); bench.json (the harness's results schema,
#                  wavis/bench/schema.py: rows with value, target, bound, ratio_to_bound) / bench.md
# Exit status: 0 when every step passed, 1 otherwise.
set -u
OUT=${1:?usage: benchmarks/device_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
TOTAL=${WAVIS_CHECK_BUDGET:-470}   # seconds for the whole check
START=$(date +%s)
STEPS="$OUT/steps.tsv"
: > "$STEPS"
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

left() { echo $(( TOTAL - ($(date +%s) - START) )); }

# step NAME TIMEOUT CMD...: run with a timeout, log to OUT/NAME.log, record status.
step() {
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 15 ]; then
    printf '%s\tskipped\t-\t0\n' "$name" >> "$STEPS"; echo "[check] $name: skipped (budget)"; return 1
  fi
  [ "$limit" -gt "$l" ] && limit=$l
  echo "[check] $name (limit ${limit}s) ..."
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local st=ok; [ $rc -ne 0 ] && st=failed; [ $rc -eq 124 ] && st=timeout
  printf '%s\t%s\t%s\t%s\n' "$name" "$st" "$rc" "$dt" >> "$STEPS"
  echo "[check] $name: $st (rc=$rc, ${dt}s)"; tail -n 5 "$OUT/$name.log" | sed 's/^/    /'
  return $rc
}

step device 30 bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv' || true
step install 240 "$PY" -m pip install --no-build-isolation --no-deps -e . || true
step import 60 "$PY" -c 'import sys, wavis, wavis.backend as b; assert "cupy" not in sys.modules; be = b.get("cuda"); print(be); import cupy; print("cupy", cupy.__version__)' || true
# Only the CUDA test files, only the device-marked tests; --noconftest keeps the service
# conftest (aiohttp, Postgres) out; -o addopts= drops the repo's default "-m 'not slow'".
step parity 200 "$PY" -m pytest -o addopts= -p no:cacheprovider --noconftest -m cuda -ra -q \
  --junitxml="$OUT/pytest.xml" tests/test_cuda_compile.py tests/test_cuda_parity.py tests/test_cuda_tfhe.py || true
BUDGET=$(( $(left) - 100 ))  # leave ~90 s for the profile
[ "$BUDGET" -lt 30 ] && BUDGET=30
step bench $(( BUDGET + 10 )) "$PY" benchmarks/bench_gpu.py --out "$OUT" --budget "$BUDGET" || true
# Where the time goes (per-primitive timings, cProfile of multiply/rotate/matmul, TFHE stages and
# block sizes): profile.txt / profile.json. Informational; runs only if the budget allows.
step profile 150 "$PY" benchmarks/gpu_profile.py --out "$OUT" || true

# summary.json (always)
"$PY" - "$OUT" "$STEPS" "$START" <<'EOF'
import json, os, re, sys, time
out, steps_file, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = {}
for line in open(steps_file):
    name, status, rc, secs = line.rstrip("\n").split("\t")
    steps[name] = {"status": status, "rc": None if rc == "-" else int(rc), "seconds": int(secs)}
def read(name, n=4000):
    p = os.path.join(out, name)
    try:
        return open(p, errors="replace").read()[-n:]
    except OSError:
        return None
summary = {"steps": steps, "elapsed_s": int(time.time()) - start, "device": read("device.log", 2000)}
log = read("parity.log", 20000) or ""
m = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", log)
summary["parity"] = {k: int(v) for v, k in m}
summary["parity_tail"] = log[-3000:]
try:
    summary["bench"] = json.load(open(os.path.join(out, "bench.json")))
except Exception as e:
    summary["bench"] = {"error": f"no bench.json: {e}"}
for name, st in steps.items():
    if st["status"] != "ok":
        st["log_tail"] = read(f"{name}.log", 3000)
summary["ok"] = all(s["status"] == "ok" for n, s in steps.items() if n != "profile") and summary["parity"].get("passed", 0) > 0 \
    and not summary["parity"].get("failed") and not summary["parity"].get("error") and not summary["parity"].get("errors")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2, default=str)
print(json.dumps({k: summary[k] for k in ("steps", "parity", "ok", "elapsed_s")}, indent=2))
EOF
# The device tool returns at most 8 files: fold the logs into one archive.
(cd "$OUT" && tar czf logs.tgz ./*.log steps.tsv $(ls pytest.xml 2>/dev/null) && rm -f ./*.log steps.tsv pytest.xml)
if [ -f "$OUT/bench.json" ]; then  # keep the table with the repo (only from a run that benchmarked)
  cp "$OUT/bench.md" "$ROOT/benchmarks/results/gpu-latest.md" 2>/dev/null || true
  cp "$OUT/summary.json" "$ROOT/benchmarks/results/gpu-latest.json" 2>/dev/null || true
  # the same schema as `wavis bench` (compare / readme read it); only when it is one
  grep -q '"schema": "wavis-bench/1"' "$OUT/bench.json" && cp "$OUT/bench.json" "$ROOT/benchmarks/results/bench-gpu-latest.json" 2>/dev/null || true
fi
grep -q '"ok": true' "$OUT/summary.json" && exit 0 || exit 1
