"""OpenFHE EvalBootstrap timing and precision, for the side-by-side in docs/bootstrapping.md.

Runs in its own Python 3.10 venv with the PyPI ``openfhe`` wheel (a build WITHOUT SIMD/HEXL
acceleration; label every figure "no SIMD"), never in the repository's venv:

    ~/.pyenv/versions/3.10.13/bin/python -m venv /work/refvenv/openfhe
    /work/refvenv/openfhe/bin/pip install openfhe numpy
    OMP_NUM_THREADS=2 /work/refvenv/openfhe/bin/python benchmarks/openfhe_bootstrap.py \\
        '{"N": 65536, "slots": 32768, "threads": 2, "levels_after": 9, "reps": 2}'

Settings chosen to match WAVIS's ``n65536`` preset (printed back in the JSON): ring 2^16, level
budget [3, 3] (CoeffsToSlots, SlotsToCoeffs), 9 levels available after bootstrap, FLEXIBLEAUTO,
firstModSize 60, secret SPARSE_ENCAPSULATED (h = 32 inside the bootstrap, as ours), HYBRID key
switching with dnum 5, HEStd_128_classic (``"security": "none"`` for quick checks on small
rings). scaleModSize 53 by default: OpenFHE uses one prime size for the whole chain, and at
N = 2^16 with 9 levels after bootstrap 53 is the largest the 128-bit bound admits with dnum 5
(54 needs N = 2^17; its recipe's 59 needs dnum ≥ 13, whose key set does not fit in this host's
memory beside the other jobs: ~2.3× the 13.6 GiB that dnum 5 peaks at); 50, OpenFHE's default,
is refused by EvalBootstrap at 2^16 ("Degree [10] must be less than or equal to the correction
factor [8]": firstModSize − scaleModSize must not exceed its correction factor).
Inputs: uniform [−1, 1] real (``"kind": "complex"`` for complex).
Prints one JSON object; progress and the peak RSS after each key-generation step go to stderr
(so an out-of-memory kill still shows how far it got).

With ``--serve`` (before the JSON) it runs as a worker of the harness (wavis.bench; protocol in
wavis/bench/protocol.py): op bootstrap, each output decrypted and its precision checked.
"""

import json
import os
import resource
import sys
import time

cfg = json.loads(sys.argv[-1])
os.environ["OMP_NUM_THREADS"] = str(cfg.get("threads", 1))
import numpy as np  # noqa: E402
import openfhe as o  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "wavis", "bench"))


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def log(msg: str) -> None:
    print(f"[openfhe {time.strftime('%H:%M:%S')}] {msg}; peak RSS {rss_gib():.2f} GiB", file=sys.stderr, flush=True)


def setup():
    """The crypto context and keys of ``cfg``; returns (cc, kp, depth, dist, budget, slots, sec,
    boot_depth, keygen_s, keygen_cpu_s)."""
    budget = cfg.get("level_budget", [3, 3])
    dist = getattr(o.SecretKeyDist, cfg.get("secret", "SPARSE_ENCAPSULATED"))
    p = o.CCParamsCKKSRNS()
    p.SetSecretKeyDist(dist)
    sec = o.SecurityLevel.HEStd_NotSet if cfg.get("security") == "none" else o.SecurityLevel.HEStd_128_classic
    p.SetSecurityLevel(sec)
    p.SetRingDim(cfg["N"])
    p.SetScalingTechnique(o.ScalingTechnique.FLEXIBLEAUTO)
    p.SetScalingModSize(cfg.get("scale_mod_bits", 53))
    p.SetFirstModSize(cfg.get("first_mod_bits", 60))
    boot_depth = o.CryptoContext.GetBootstrapDepth(budget, dist)
    depth = cfg["levels_after"] + boot_depth
    p.SetMultiplicativeDepth(depth)
    p.SetKeySwitchTechnique(o.KeySwitchTechnique.HYBRID)
    p.SetNumLargeDigits(cfg.get("dnum", 5))
    cc = o.GenCryptoContext(p)
    for f in (o.PKESchemeFeature.PKE, o.PKESchemeFeature.KEYSWITCH, o.PKESchemeFeature.LEVELEDSHE,
              o.PKESchemeFeature.ADVANCEDSHE, o.PKESchemeFeature.FHE):
        cc.Enable(f)
    slots = cfg["slots"]
    log(f"context N={cc.GetRingDimension()} depth={depth} (bootstrap {boot_depth})")
    t = time.perf_counter()
    c0 = time.process_time()
    cc.EvalBootstrapSetup(budget, [0, 0], slots, cfg.get("correction_factor", 0))
    log("EvalBootstrapSetup done")
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    log("KeyGen + EvalMultKeyGen done")
    cc.EvalBootstrapKeyGen(kp.secretKey, slots)
    keygen = time.perf_counter() - t
    keygen_cpu = time.process_time() - c0
    log(f"EvalBootstrapKeyGen done in {keygen:.1f} s")
    return cc, kp, depth, dist, budget, slots, sec, boot_depth, keygen, keygen_cpu


def make_worker(_cfg):
    from protocol import error_bits

    cc, kp, depth, dist, budget, slots, sec, boot_depth, keygen, keygen_cpu = setup()
    rng = np.random.default_rng(1)
    # real inputs unless "kind" is "complex": uniform complex inputs came back from EvalBootstrap
    # (1.6.1, SPARSE_ENCAPSULATED, N = 2^15, 16 slots) with 1.0 bits mean, real ones with 15.9
    x = rng.uniform(-1, 1, slots)
    if cfg.get("kind") == "complex":
        x = x + 1j * rng.uniform(-1, 1, slots)
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
            "scale_mod_bits": cfg.get("scale_mod_bits", 53), "first_mod_bits": cfg.get("first_mod_bits", 60),
            "dnum": cfg.get("dnum", 5), "boot_depth": boot_depth, "levels_after": cfg["levels_after"],
            "correction_factor": cfg.get("correction_factor", 0) or "default",
            "inputs": "complex" if cfg.get("kind") == "complex" else "real",
            "log_q": round(float(np.log2(float(cc.GetModulus()))), 1) if hasattr(cc, "GetModulus") else None,
            "keygen_s": round(keygen, 1), "keygen_cpu_s": round(keygen_cpu, 1)}
    return {"info": info, "ops": {"bootstrap": (lambda: cc.EvalBootstrap(ct), check)}}


def main():
    cc, kp, depth, dist, budget, slots, sec, boot_depth, keygen, keygen_cpu = setup()
    rng = np.random.default_rng(1)
    runs = []
    for r in range(cfg.get("reps", 2) + 1):
        x = rng.uniform(-1, 1, slots)
        if cfg.get("kind") == "complex":
            x = x + 1j * rng.uniform(-1, 1, slots)
        pt = cc.MakeCKKSPackedPlaintext(x.tolist(), 1, depth - 1, None, slots)
        ct = cc.Encrypt(kp.publicKey, pt)
        load0 = os.getloadavg()[0]
        c0 = time.process_time()
        t = time.perf_counter()
        out = cc.EvalBootstrap(ct)
        wall = time.perf_counter() - t
        cpu = time.process_time() - c0
        res = cc.Decrypt(out, kp.secretKey)
        res.SetLength(slots)
        got = np.array(res.GetCKKSPackedValue())
        if cfg.get("kind") != "complex":
            got = got.real
        err = np.maximum(np.abs(got - x), 2.0**-60)
        runs.append(dict(wall_s=wall, cpu_s=cpu, load_avg=[load0, os.getloadavg()[0]],
                         mean_bits=float(np.mean(-np.log2(err))), min_bits=float(-np.log2(np.max(err))),
                         levels_left=depth - out.GetLevel()))
        log(f"bootstrap {r}: {wall:.2f} s, {runs[-1]['mean_bits']:.1f} bits")
    warm = runs[1:] or runs
    print(json.dumps(dict(
        openfhe=getattr(o, "__version__", "1.6.1 (PyPI wheel, no SIMD)"), build="PyPI wheel, no SIMD/HEXL",
        settings=dict(secret=str(dist), level_budget=budget, scaling="FLEXIBLEAUTO",
                      first_mod_bits=cfg.get("first_mod_bits", 60),
                      scale_mod_bits=cfg.get("scale_mod_bits", 53), dnum=cfg.get("dnum", 5),
                      security=str(sec), depth=depth, bootstrap_depth=boot_depth,
                      correction_factor=cc.GetCKKSBootCorrectionFactor() if hasattr(cc, "GetCKKSBootCorrectionFactor")
                      else None, kind=cfg.get("kind", "real")),
        ring_dim=cc.GetRingDimension(), slots=slots, threads=cfg.get("threads", 1), levels_after=cfg["levels_after"],
        log2_q=float(np.log2(float(cc.GetModulus()))) if hasattr(cc, "GetModulus") else None,
        keygen_s=keygen, keygen_cpu_s=keygen_cpu, peak_rss_gib=rss_gib(),
        bootstrap_s=min(r["wall_s"] for r in warm), mean_bootstrap_s=sum(r["wall_s"] for r in warm) / len(warm),
        precision_mean_bits=min(r["mean_bits"] for r in runs), precision_min_bits=min(r["min_bits"] for r in runs),
        runs=runs)))


if __name__ == "__main__":
    if "--serve" in sys.argv:
        from protocol import serve

        serve(make_worker)
    else:
        main()
