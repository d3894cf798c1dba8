"""Smoke test of the native core on one SIMD path, as a script (not collected by pytest):

    WAVIS_SIMD=avx2 python tests/simd_smoke.py [--expect avx2]

Prints the path and exits 0 when every check passes: an NTT product against the schoolbook
product, a CKKS encrypt → multiply → rotate → decrypt round trip, and all eight TFHE gates on
the ``testing`` preset. Used by tests/test_simd_paths.py under emulated CPUs (qemu-user) and
on a freshly built wheel, where the full test suite would be too slow or not installed.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect", default=None, help="the SIMD path the core must report")
    args = ap.parse_args()
    pp = os.environ.get("WAVIS_SMOKE_PYTHONPATH")
    if pp:  # run a given build (e.g. an unpacked wheel), not the editable install
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
        sys.path.insert(0, pp)
    import numpy as np

    from wavis import _core

    path = _core.simd_path()
    print(f"simd_path={path} paths={','.join(_core.simd_paths())} core={_core.__file__}", flush=True)
    if args.expect and path != args.expect:
        print(f"FAIL: expected path {args.expect}", flush=True)
        return 1
    # ring: NTT product == schoolbook negacyclic product
    N = 64
    qs = _core.generate_ntt_primes(49, 1, N) + _core.generate_ntt_primes(61, 1, N)
    ctx = _core.RnsContext(N, qs)
    rng = np.random.default_rng(1)
    for i, q in enumerate(qs):
        a = rng.integers(0, q, (1, N), dtype=np.uint64)
        b = rng.integers(0, q, (1, N), dtype=np.uint64)
        ref = [0] * N
        for x in range(N):
            for y in range(N):
                p = int(a[0, x]) * int(b[0, y])
                ref[(x + y) % N] += p if x + y < N else -p
        A, B = a.copy(), b.copy()
        ctx.ntt(A, [i])
        ctx.ntt(B, [i])
        ctx.mul(A, B, A, [i])
        ctx.intt(A, [i])
        assert [int(v) for v in A[0]] == [r % q for r in ref], f"NTT product wrong for q={q}"
    # CKKS round trip
    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator

    p = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=3, security_level="testing")
    kg = KeyGenerator(p, seed=bytes(32))
    ev = Evaluator(p, kg.evaluation_keys(galois_steps=[1]))
    enc, e, d = Encoder(p), Encryptor(p, kg.public_key(), seed=bytes(32)), Decryptor(p, kg.secret_key)
    x = np.random.default_rng(2).uniform(-1, 1, p.slot_count)
    y = enc.decode(d.decrypt(ev.rotate(ev.multiply(e.encrypt(enc.encode(x)), e.encrypt(enc.encode(x))), 1)))
    err = float(np.max(np.abs(np.real(y) - np.roll(x * x, -1))))
    assert err < 1e-4, f"CKKS error {err}"
    # TFHE gates, testing preset
    from wavis import tfhe

    ck, sk = tfhe.keygen("testing", seed=bytes(32))
    truth = {"NAND": lambda a, b: not (a and b), "AND": lambda a, b: a and b, "OR": lambda a, b: a or b,
             "XOR": lambda a, b: a != b, "NOR": lambda a, b: not (a or b), "XNOR": lambda a, b: a == b}
    for op, f in truth.items():
        for a in (False, True):
            for b in (False, True):
                assert bool(ck.decrypt(sk.gate(op, ck.encrypt(a), ck.encrypt(b)))) == f(a, b), (op, a, b)
    assert bool(ck.decrypt(sk.mux(ck.encrypt(True), ck.encrypt(False), ck.encrypt(True)))) is False
    print(f"OK {path}: ring NTT, CKKS (max error {err:.1e}), TFHE gates", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
