"""Precision of every CKKS operation in bits: −log2 of the max absolute error over all slots,
inputs uniform in [−1, 1] (issue 3's definition), for wavis and — for the operations both
have — OpenFHE with the same ring, chain, scale and dnum.

Usage: .venv/bin/python benchmarks/precision_ckks.py [--N 16384] [--scale-bits 30] [--depth 10]
       [--first-bits 50] [--dnum 11]   (defaults: bench_ckks.py's N=16384 row; OpenFHE accepts it)
Writes benchmarks/results/ckks_precision.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from wavis.ckks.linalg import matmul, matmul_galois_steps
from wavis.ckks.polynomial import evaluate_polynomial

HERE = Path(__file__).resolve().parent

OPENFHE = r'''
import json, sys, numpy as np, openfhe as o
c = json.loads(sys.argv[1]); p = o.CCParamsCKKSRNS()
p.SetMultiplicativeDepth(c["depth"]); p.SetScalingModSize(c["scale_bits"]); p.SetFirstModSize(c["first_bits"])
p.SetRingDim(c["N"]); p.SetBatchSize(c["N"] // 2); p.SetSecurityLevel(o.SecurityLevel.HEStd_128_classic)
p.SetKeySwitchTechnique(o.KeySwitchTechnique.HYBRID); p.SetNumLargeDigits(c["dnum"])
p.SetScalingTechnique(o.ScalingTechnique.FIXEDMANUAL)
cc = o.GenCryptoContext(p)
for f in (o.PKESchemeFeature.PKE, o.PKESchemeFeature.KEYSWITCH, o.PKESchemeFeature.LEVELEDSHE): cc.Enable(f)
kp = cc.KeyGen(); cc.EvalMultKeyGen(kp.secretKey); cc.EvalRotateKeyGen(kp.secretKey, [1])
n = c["N"] // 2; rng = np.random.default_rng(1); x = rng.uniform(-1, 1, n); y = rng.uniform(-1, 1, n)
cx = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(x.tolist()))
cy = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(y.tolist()))
def bits(ct, want):
    pt = cc.Decrypt(kp.secretKey, ct); pt.SetLength(n)
    return float(-np.log2(np.max(np.abs(np.array(pt.GetRealPackedValue()) - want))))
print(json.dumps({"encrypt_decrypt": bits(cx, x), "add": bits(cc.EvalAdd(cx, cy), x + y),
                  "multiply_relin_rescale": bits(cc.Rescale(cc.EvalMult(cx, cy)), x * y),
                  "rotate": bits(cc.EvalRotate(cx, 1), np.roll(x, -1))}))
'''


def bits(err: float) -> float:
    return float(-np.log2(max(err, 1e-300)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, default=16384)
    ap.add_argument("--scale-bits", type=int, default=30)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--first-bits", type=int, default=50)
    ap.add_argument("--dnum", type=int, default=11)
    args = ap.parse_args()
    params = CkksParameters(poly_degree=args.N, scale_bits=args.scale_bits, max_depth=args.depth,
                            first_mod_bits=args.first_bits, dnum=args.dnum, security_level="128-bit")
    slots = params.slot_count
    kg = KeyGenerator(params)
    evk = kg.evaluation_keys(galois_steps=sorted({1, 2, 4} | set(matmul_galois_steps(64, 64, slots))))
    enc, dec = Encoder(params), Decryptor(params, kg.secret_key)
    encr, ev = Encryptor(params, kg.public_key()), Evaluator(params, evk)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    cx, cy = encr.encrypt(enc.encode(x)), encr.encrypt(enc.encode(y))

    def err(ct, want):
        return bits(float(np.max(np.abs(enc.decode(dec.decrypt(ct)).real - want))))

    m = rng.uniform(-1, 1, (64, 64)) / 8
    x64 = np.zeros(slots)
    x64[:64] = x[:64]
    c = rng.uniform(-1, 1, 16) / 16
    w = {
        "encrypt_decrypt": err(cx, x),
        "add": err(ev.add(cx, cy), x + y),
        "multiply_relin_rescale": err(ev.multiply(cx, cy), x * y),
        "multiply_plain": err(ev.multiply_plain(cx, y), x * y),
        "rotate": err(ev.rotate(cx, 1), np.roll(x, -1)),
        "matvec_64x64": float(bits(np.max(np.abs(enc.decode(dec.decrypt(matmul(ev, m, encr.encrypt(enc.encode(x64))))).real[:64]
                                                 - m @ x[:64])))),
        "poly_degree15": err(evaluate_polynomial(ev, cx, c), np.polynomial.polynomial.polyval(x, c)),
    }
    cfg = {"N": args.N, "depth": args.depth, "scale_bits": args.scale_bits, "first_bits": args.first_bits,
           "dnum": params.dnum}
    py = HERE / ".venv-openfhe" / "bin" / "python"
    of: dict | str = "not installed"
    if py.exists():
        r = subprocess.run([str(py), "-c", OPENFHE, json.dumps(cfg)], capture_output=True, text=True, timeout=1200)
        of = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else "failed: " + r.stderr[-300:]
    print(f"N={args.N} depth={args.depth} scale_bits={args.scale_bits} dnum={params.dnum} "
          f"log2(QP)={params.log_qp_bits:.0f} bits (128-bit HE Standard)")
    print(f"{'operation':26s} {'wavis bits':>11s} {'OpenFHE bits':>13s}")
    for op, b in w.items():
        o = of.get(op) if isinstance(of, dict) else None
        print(f"{op:26s} {b:11.2f} {o if o is None else round(o, 2)!s:>13s}")
    out = HERE / "results" / "ckks_precision.json"
    runs = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    runs = [r for r in runs if r.get("config") != cfg] + [{"config": cfg, "wavis": w, "openfhe": of}]
    out.write_text(json.dumps({"runs": runs}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
