"""Time OpenFHE CKKS operations (run by benchmarks/bench_ckks.py in its own Python 3.10 venv).

Usage: benchmarks/.venv-openfhe/bin/python benchmarks/openfhe_ckks.py '{"N":16384,"depth":10,
       "scale_bits":30,"first_bits":50,"dnum":11,"reps":5,"threads":1}'
Prints one JSON object {op: ms, ..., "precision_bits_mult": b, "log_qp": bits}.

       benchmarks/.venv-openfhe/bin/python benchmarks/openfhe_ckks.py --serve '{...same keys...}'
runs as a worker of the harness (wavis.bench, protocol in wavis/bench/protocol.py): keys once,
then one operation per request, each output decrypted and checked.
"""

import json
import os
import sys
import time

cfg = json.loads(sys.argv[-1])
os.environ["OMP_NUM_THREADS"] = str(cfg.get("threads", 1))
import numpy as np  # noqa: E402
import openfhe as o  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "wavis", "bench"))


def timeit(fn, reps):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def context():
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
    return cc


def make_worker(cfg):
    """Worker ops (wavis.bench.worker's names): encode, encrypt (public key), decrypt_decode, add,
    multiply_relin_rescale, rotate (1), hoisted_rotations_8 (fast rotations 1..8)."""
    from protocol import error_bits

    cc = context()
    slots = cfg["N"] // 2
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    cc.EvalRotateKeyGen(kp.secretKey, list(range(1, 9)))
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    px = cc.MakeCKKSPackedPlaintext(x.tolist())
    cx, cy = cc.Encrypt(kp.publicKey, px), cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(y.tolist()))
    mb = float(cfg.get("check_bits", 8))
    m = cc.GetCyclotomicOrder()

    def real(ct):
        r = cc.Decrypt(kp.secretKey, ct)
        r.SetLength(slots)
        return np.array(r.GetRealPackedValue())

    def chk(decode, want):
        def check(out):
            bits = error_bits(float(np.max(np.abs(decode(out) - want))))
            return bits >= mb, bits, f"{bits:.1f} bits (need {mb:g})"
        return check

    def hoisted():
        pre = cc.EvalFastRotationPrecompute(cx)
        return {s: cc.EvalFastRotation(cx, s, m, pre) for s in range(1, 9)}

    def hoisted_check(out):
        bits = min(error_bits(float(np.max(np.abs(real(out[s]) - np.roll(x, -s))))) for s in range(1, 9))
        return bits >= mb, bits, f"{bits:.1f} bits over 8 rotations"

    ops = {
        "encode": (lambda: cc.MakeCKKSPackedPlaintext(x.tolist()), chk(lambda p: real(cc.Encrypt(kp.publicKey, p)), x)),
        "encrypt": (lambda: cc.Encrypt(kp.publicKey, px), chk(real, x)),
        "decrypt_decode": (lambda: real(cx), chk(lambda v: v, x)),
        "add": (lambda: cc.EvalAdd(cx, cy), chk(real, x + y)),
        "multiply_relin_rescale": (lambda: cc.Rescale(cc.EvalMult(cx, cy)), chk(real, x * y)),
        "rotate": (lambda: cc.EvalRotate(cx, 1), chk(real, np.roll(x, -1))),
        "hoisted_rotations_8": (hoisted, hoisted_check),
    }
    try:
        log_q = int(cc.GetModulus()).bit_length()
    except Exception:
        log_q = None
    info = {"library": "openfhe", "version": getattr(o, "__version__", "?"), "build": "PyPI wheel (no SIMD)",
            "log_q": log_q, "ring_dim": cc.GetRingDimension(), "secret": "uniform ternary",
            "key_switching": f"HYBRID, {cfg['dnum']} digits (special primes chosen by OpenFHE)",
            "scaling": "FIXEDMANUAL"}
    return {"info": info, "ops": {k: v for k, v in ops.items() if k in cfg.get("ops", ops)}}


def main():
    cc = context()
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


if __name__ == "__main__":
    if "--serve" in sys.argv:
        from protocol import serve

        serve(make_worker)
    else:
        main()
