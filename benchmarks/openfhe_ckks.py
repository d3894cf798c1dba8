"""Time OpenFHE CKKS operations (run by benchmarks/bench_ckks.py in its own Python 3.10 venv).

Usage: benchmarks/.venv-openfhe/bin/python benchmarks/openfhe_ckks.py '{"N":16384,"depth":10,
       "scale_bits":30,"first_bits":50,"dnum":11,"reps":5,"threads":1}'
Prints one JSON object {op: ms, ..., "precision_bits_mult": b, "log_qp": bits}.
"""

import json
import os
import sys
import time

cfg = json.loads(sys.argv[1])
os.environ["OMP_NUM_THREADS"] = str(cfg.get("threads", 1))
import numpy as np  # noqa: E402
import openfhe as o  # noqa: E402


def timeit(fn, reps):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def main():
    p = o.CCParamsCKKSRNS()
    p.SetMultiplicativeDepth(cfg["depth"])
    p.SetScalingModSize(cfg["scale_bits"])
    p.SetFirstModSize(cfg["first_bits"])
    p.SetRingDim(cfg["N"])
    p.SetBatchSize(cfg["N"] // 2)
    p.SetSecurityLevel(o.SecurityLevel.HEStd_128_classic)
    p.SetKeySwitchTechnique(o.KeySwitchTechnique.HYBRID)
    p.SetNumLargeDigits(cfg["dnum"])
    p.SetScalingTechnique(o.ScalingTechnique.FIXEDMANUAL)
    cc = o.GenCryptoContext(p)
    for f in (o.PKESchemeFeature.PKE, o.PKESchemeFeature.KEYSWITCH, o.PKESchemeFeature.LEVELEDSHE,
              o.PKESchemeFeature.ADVANCEDSHE):
        cc.Enable(f)
    reps = cfg["reps"]
    slots = cfg["N"] // 2
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    steps = [1, 2, 3, 4, 5, 6, 7, 8]
    mm = {64: 64, 256: 256}
    bsgs = set(steps)
    for d in mm:
        b = int(np.ceil(np.sqrt(2 * d - 1)))
        bsgs |= set(range(1, b)) | {(-(d - 1) + g * b) % slots for g in range(int(np.ceil((2 * d - 1) / b)))}
    bsgs.discard(0)
    cc.EvalRotateKeyGen(kp.secretKey, sorted(bsgs))
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, slots)
    y = rng.uniform(-1, 1, slots)
    px, py = cc.MakeCKKSPackedPlaintext(x.tolist()), cc.MakeCKKSPackedPlaintext(y.tolist())
    cx, cy = cc.Encrypt(kp.publicKey, px), cc.Encrypt(kp.publicKey, py)
    out = {}
    out["encrypt"] = timeit(lambda: cc.Encrypt(kp.publicKey, px), reps)
    out["decrypt"] = timeit(lambda: cc.Decrypt(kp.secretKey, cx), reps)
    out["add"] = timeit(lambda: cc.EvalAdd(cx, cy), reps)

    def mult():
        return cc.Rescale(cc.EvalMult(cx, cy))

    out["multiply_relin_rescale"] = timeit(mult, reps)
    out["rotate"] = timeit(lambda: cc.EvalRotate(cx, 1), reps)

    def hoisted():
        pre = cc.EvalFastRotationPrecompute(cx)
        return [cc.EvalFastRotation(cx, s, cc.GetCyclotomicOrder(), pre) for s in steps]

    out["hoisted_rotations_8"] = timeit(hoisted, reps)
    for d in mm:
        m = rng.uniform(-1, 1, (d, d))
        diag_pts = {}
        b = int(np.ceil(np.sqrt(2 * d - 1)))
        span = 2 * d - 1
        base = -(d - 1)

        def matvec():
            diag_pts.clear()  # encode the diagonals in every call, as wavis does (a request brings its matrix)
            baby = {0: cx}
            pre = cc.EvalFastRotationPrecompute(cx)
            for j in range(1, b):
                baby[j] = cc.EvalFastRotation(cx, j, cc.GetCyclotomicOrder(), pre)
            total = None
            for g in range(int(np.ceil(span / b))):
                t = base + g * b
                inner = None
                for j in range(b):
                    if g * b + j >= span:
                        break
                    k = t + j
                    key = (g, j)
                    if key not in diag_pts:
                        rows = np.arange(d)
                        diag = np.zeros(slots)
                        cols = rows + k
                        ok = (cols >= 0) & (cols < d)
                        diag[rows[ok]] = m[rows[ok], cols[ok]]
                        diag_pts[key] = cc.MakeCKKSPackedPlaintext(np.roll(diag, t).tolist())
                    term = cc.EvalMult(baby[j], diag_pts[key])
                    inner = term if inner is None else cc.EvalAdd(inner, term)
                if t % slots:
                    inner = cc.EvalRotate(inner, t)
                total = inner if total is None else cc.EvalAdd(total, inner)
            return cc.Rescale(total)

        out[f"matvec_{d}x{d}"] = timeit(matvec, max(1, reps // 2))
    coeffs = (rng.uniform(-1, 1, 16) / 16).tolist()
    out["poly_degree15"] = timeit(lambda: cc.EvalPoly(cx, coeffs), max(1, reps // 2))
    # precision after one multiply+rescale
    res = cc.Decrypt(kp.secretKey, mult())
    res.SetLength(slots)
    got = np.array(res.GetRealPackedValue())
    out["precision_bits_mult"] = float(-np.log2(np.max(np.abs(got - x * y))))
    out["log_qp"] = None
    print(json.dumps(out))


main()
