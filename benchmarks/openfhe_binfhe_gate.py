"""Time OpenFHE binfhe gates (run by benchmarks/bench_tfhe.py in its own Python 3.10 venv).

Usage: benchmarks/.venv-openfhe/bin/python benchmarks/openfhe_binfhe_gate.py PARAMSET [METHOD] [REPS]
Prints one JSON object: paramset, method, ms_per_gate (NAND wall time, one thread with
OMP_NUM_THREADS=1), cpu_ms_per_gate (thread CPU time, robust to other load),
keygen_s, reps, correct.

       benchmarks/.venv-openfhe/bin/python benchmarks/openfhe_binfhe_gate.py --serve '{"paramset":"STD128","method":"GINX"}'
runs as a worker of the harness (wavis.bench; protocol in wavis/bench/protocol.py): op nand_gate,
each output decrypted and checked. Run it with OMP_NUM_THREADS=1.
"""

import json
import os
import sys
import time

import openfhe as ofhe

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "wavis", "bench"))


def make_worker(cfg):
    pset, method = cfg.get("paramset", "STD128"), cfg.get("method", "GINX")
    cc = ofhe.BinFHEContext()
    cc.GenerateBinFHEContext(getattr(ofhe.BINFHE_PARAMSET, pset), getattr(ofhe.BINFHE_METHOD, method))
    t0 = time.perf_counter()
    sk = cc.KeyGen()
    cc.BTKeyGen(sk)
    keygen_s = time.perf_counter() - t0
    a, b = cc.Encrypt(sk, 1), cc.Encrypt(sk, 0)

    def check(out):
        ok = cc.Decrypt(sk, out) == 1
        return ok, None, "NAND(1,0) decrypts to 1" if ok else "wrong bit"

    info = {"library": "openfhe", "version": getattr(ofhe, "__version__", "?"), "build": "PyPI wheel (no SIMD)",
            "paramset": pset, "method": method, "keygen_s": round(keygen_s, 2)}
    for name in ("Getn", "GetN", "Getq", "GetQ", "GetBeta"):  # LWE n, ring N, moduli, bootstrapping base
        try:
            info[name[3:]] = int(getattr(cc, name)())
        except Exception:
            pass
    return {"info": info, "ops": {"nand_gate": (lambda: cc.EvalBinGate(ofhe.NAND, a, b), check)}}


def main() -> None:
    pset = sys.argv[1] if len(sys.argv) > 1 else "STD128"
    method = sys.argv[2] if len(sys.argv) > 2 else "GINX"
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    cc = ofhe.BinFHEContext()
    cc.GenerateBinFHEContext(getattr(ofhe.BINFHE_PARAMSET, pset), getattr(ofhe.BINFHE_METHOD, method))
    t0 = time.perf_counter()
    sk = cc.KeyGen()
    cc.BTKeyGen(sk)
    keygen_s = time.perf_counter() - t0
    bits = [(i % 2, (i // 2) % 2) for i in range(reps)]
    pairs = [(cc.Encrypt(sk, x), cc.Encrypt(sk, y)) for x, y in bits]  # OpenFHE wants distinct inputs
    cc.EvalBinGate(ofhe.NAND, *pairs[0])  # warm-up
    ok = True
    dt = cpu = 0.0
    best = float("inf")
    for (x, y), (a, b) in zip(bits, pairs):
        t0, c0 = time.perf_counter(), time.thread_time()
        r = cc.EvalBinGate(ofhe.NAND, a, b)
        dt += time.perf_counter() - t0
        cpu += time.thread_time() - c0
        best = min(best, time.perf_counter() - t0)
        ok &= cc.Decrypt(sk, r) == 1 - (x & y)
    print(json.dumps({"paramset": pset, "method": method, "ms_per_gate": 1000 * dt / reps,
                      "cpu_ms_per_gate": 1000 * cpu / reps,
                      "min_ms_per_gate": 1000 * best,
                      "keygen_s": keygen_s, "reps": reps, "correct": bool(ok)}))


if __name__ == "__main__":
    if "--serve" in sys.argv:
        from protocol import serve

        serve(make_worker)
    else:
        main()
