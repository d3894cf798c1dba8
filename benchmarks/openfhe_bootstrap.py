"""OpenFHE EvalBootstrap timing and precision (run by benchmarks/bench_bootstrap.py in the
Python 3.10 venv benchmarks/.venv-openfhe; the PyPI wheel has no SIMD/HEXL acceleration).

Usage: benchmarks/.venv-openfhe/bin/python benchmarks/openfhe_bootstrap.py '{"N":65536,"slots":32768,
       "threads":2,"levels_after":9,"reps":2}'
Settings chosen to match WAVIS's n65536 preset: ring 2^16, level budget [3, 3] (CoeffsToSlots,
SlotsToCoeffs), 9 levels available after bootstrap, FLEXIBLEAUTO, firstModSize 60 and
scaleModSize 50 (OpenFHE uses one prime size for the whole chain; its example's 59 bits with 9
levels after bootstrap exceed the 128-bit bound at 2^16 and OpenFHE then demands 2^17), secret
SPARSE_ENCAPSULATED when the wheel has it (else UNIFORM_TERNARY), HEStd_128_classic.
Prints one JSON object.

With ``--serve`` (before the JSON) it runs as a worker of the harness (wavis.bench; protocol in
wavis/bench/protocol.py): op bootstrap, each output decrypted and its precision checked.
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


def setup():
    budget = cfg.get("level_budget", [3, 3])
    p = o.CCParamsCKKSRNS()
    dist = getattr(o.SecretKeyDist, "SPARSE_ENCAPSULATED", None) or o.SecretKeyDist.UNIFORM_TERNARY
    p.SetSecretKeyDist(dist)
    p.SetSecurityLevel(o.SecurityLevel.HEStd_128_classic)
    p.SetRingDim(cfg["N"])
    p.SetScalingTechnique(o.ScalingTechnique.FLEXIBLEAUTO)
    p.SetScalingModSize(cfg.get("scale_mod_bits", 50))
    p.SetFirstModSize(60)
    depth = cfg["levels_after"] + o.CryptoContext.GetBootstrapDepth(budget, dist)
    p.SetMultiplicativeDepth(depth)
    p.SetKeySwitchTechnique(o.KeySwitchTechnique.HYBRID)
    p.SetNumLargeDigits(cfg.get("dnum", 5))  # fewer digits make P too large for the 2^16 bound
    cc = o.GenCryptoContext(p)
    for f in (o.PKESchemeFeature.PKE, o.PKESchemeFeature.KEYSWITCH, o.PKESchemeFeature.LEVELEDSHE,
              o.PKESchemeFeature.ADVANCEDSHE, o.PKESchemeFeature.FHE):
        cc.Enable(f)
    slots = cfg["slots"]
    t = time.perf_counter()
    cc.EvalBootstrapSetup(budget, [0, 0], slots)
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    cc.EvalBootstrapKeyGen(kp.secretKey, slots)
    keygen = time.perf_counter() - t
    return cc, kp, depth, dist, budget, slots, keygen


def make_worker(_cfg):
    from protocol import error_bits

    cc, kp, depth, dist, budget, slots, keygen = setup()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, slots) + 1j * rng.uniform(-1, 1, slots)
    ct = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(x.tolist(), 1, depth - 1, None, slots))
    mb = float(cfg.get("check_bits", 8))

    def check(out):
        res = cc.Decrypt(out, kp.secretKey)
        res.SetLength(slots)
        err = np.maximum(np.abs(np.array(res.GetCKKSPackedValue()) - x), 2.0**-60)
        mean, low = float(np.mean(-np.log2(err))), error_bits(float(np.max(err)))
        return low >= mb, low, f"precision mean {mean:.1f} / min {low:.1f} bits"

    info = {"library": "openfhe", "version": getattr(o, "__version__", "?"), "build": "PyPI wheel (no SIMD)",
            "secret": str(dist), "level_budget": budget, "depth": depth, "ring_dim": cc.GetRingDimension(),
            "scale_mod_bits": cfg.get("scale_mod_bits", 50), "dnum": cfg.get("dnum", 5), "keygen_s": round(keygen, 1)}
    return {"info": info, "ops": {"bootstrap": (lambda: cc.EvalBootstrap(ct), check)}}


def main():
    cc, kp, depth, dist, budget, slots, keygen = setup()
    rng = np.random.default_rng(1)
    times, means, mins = [], [], []
    for _ in range(cfg.get("reps", 2) + 1):
        x = (rng.uniform(-1, 1, slots) + 1j * rng.uniform(-1, 1, slots)).tolist()
        pt = cc.MakeCKKSPackedPlaintext(x, 1, depth - 1, None, slots)
        ct = cc.Encrypt(kp.publicKey, pt)
        t = time.perf_counter()
        out = cc.EvalBootstrap(ct)
        times.append(time.perf_counter() - t)
        res = cc.Decrypt(out, kp.secretKey)
        res.SetLength(slots)
        got = np.array(res.GetCKKSPackedValue())
        err = np.maximum(np.abs(got - np.array(x)), 2.0**-60)
        means.append(float(np.mean(-np.log2(err))))
        mins.append(float(-np.log2(np.max(err))))
    warm = times[1:] or times
    print(json.dumps(dict(openfhe=o.__version__ if hasattr(o, "__version__") else "?", secret=str(dist),
                          level_budget=budget, depth=depth, levels_after=out.GetLevel() if False else cfg["levels_after"],
                          ring_dim=cc.GetRingDimension(), keygen_s=keygen, bootstrap_s=min(warm),
                          mean_bootstrap_s=sum(warm) / len(warm), precision_mean_bits=min(means),
                          precision_min_bits=min(mins))))


if __name__ == "__main__":
    if "--serve" in sys.argv:
        from protocol import serve

        serve(make_worker)
    else:
        main()
