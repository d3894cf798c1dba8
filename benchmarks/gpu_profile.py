"""Where the GPU time goes: per-primitive timings and a cProfile of the CKKS operations and TFHE
stages on the CUDA backend (a diagnostic for the device machine; numbers only, no targets).

    python benchmarks/gpu_profile.py --out OUTDIR [--emulate]

Writes OUTDIR/profile.txt (human-readable) and OUTDIR/profile.json (the timings).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_gpu import timeit  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--emulate", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    res: dict = {}

    def say(*a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        text.write(s + "\n")

    if args.emulate:
        from wavis.backend.cuda_emu import EmulatedBackend

        be = EmulatedBackend()
    else:
        from wavis.backend import get

        be = get("cuda")
    sync = be.synchronize

    def tm(fn, reps=10, warm=2):  # median ms
        return timeit(fn, sync, reps, warm) * 1e3

    def prof(name, fn, n=3):
        fn()
        sync()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            fn()
            sync()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18)
        say(f"--- cProfile {name} (x{n}, tottime) ---")
        say("\n".join(s.getvalue().splitlines()[:45]))

    def guard(name, fn):
        try:
            fn()
        except Exception as e:
            say(f"!!! {name}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")

    # ---- CKKS ----------------------------------------------------------------------------
    def ckks():
        from wavis.ckks import CkksParameters, Encoder, Encryptor, Evaluator, KeyGenerator
        from wavis.ckks import keyswitch as ks

        logN, depth = (16, 29) if not args.emulate else (12, 5)
        params = CkksParameters(poly_degree=1 << logN, scale_bits=40, max_depth=depth, security_level="testing",
                                dnum=3)
        kg = KeyGenerator(params, seed=b"b" * 32, backend=be)
        evk = kg.evaluation_keys(galois_steps=[1])
        enc = Encoder(params, be)
        encr = Encryptor(params, kg.public_key(), seed=b"e" * 32, backend=be)
        ev = Evaluator(params, evk, backend=be)
        x = np.random.default_rng(1).uniform(-1, 1, params.slot_count)
        ct = encr.encrypt(enc.encode(x))
        ctx = ev.ctx
        say("ciphertext data type:", type(ct.data).__module__, type(ct.data).__name__,
            "relin key type:", type(ev._relin_key().data).__module__)  # noqa: SLF001
        L = ct.level + 1
        N = params.poly_degree
        q_idx = list(range(L))
        p_idx = list(ev._p_idx)  # noqa: SLF001
        a = ctx.asarray(ct.data[0])
        t = {}
        t["ntt_L"] = tm(lambda: ctx.ntt(a, q_idx))
        t["intt_L"] = tm(lambda: ctx.intt(a, q_idx))
        t["mul_add_L"] = tm(lambda: ctx.mul_add(a, a, a.copy(), q_idx))
        t["mul_L"] = tm(lambda: ctx.mul(a, a, a.copy(), q_idx))
        t["copy_L"] = tm(lambda: a.copy())
        t["bconv_10_to_27"] = tm(lambda: ctx.base_convert(a[:10].copy(), q_idx[:10], q_idx[10:] + p_idx))
        t["automorphism_L"] = tm(lambda: ctx.automorphism(a, 5, q_idx, True))
        acc = ks.key_switch_ext(ctx, ct.data[1], ev._relin_key().data, q_idx, p_idx, params.digits[:3])  # noqa: SLF001
        sync()
        t["key_switch_ext"] = tm(lambda: ks.key_switch_ext(ctx, ct.data[1], ev._relin_key().data, q_idx, p_idx,  # noqa: SLF001
                                                           params.digits), reps=5)
        t["mod_down_ntt_2comp"] = tm(lambda: ks.mod_down_ntt(ctx, acc, q_idx, p_idx), reps=5)
        t["to_numpy_8rows"] = tm(lambda: ctx.to_numpy(a[:8]))
        host = np.ones((L, N), dtype=np.uint64)
        t["asarray_L_rows"] = tm(lambda: ctx.asarray(host))
        t["multiply"] = tm(lambda: ev.multiply(ct, ct), reps=5)
        t["rotate"] = tm(lambda: ev.rotate(ct, 1), reps=5)
        t["add"] = tm(lambda: ev.add(ct, ct), reps=5)
        res["ckks_ms"] = t
        res["ckks_shape"] = {"N": N, "L": L, "special": len(p_idx), "dnum": len(params.digits)}
        for k, v in t.items():
            say(f"ckks {k:24s} {v:9.3f} ms")
        prof("ckks multiply", lambda: ev.multiply(ct, ct))
        prof("ckks rotate", lambda: ev.rotate(ct, 1))

    guard("ckks", ckks)

    def matmul():
        from wavis.ckks import CkksParameters, Encoder, Encryptor, Evaluator, KeyGenerator
        from wavis.ckks.linalg import matmul as mm
        from wavis.ckks.linalg import matmul_galois_steps

        N = 1 << 14 if not args.emulate else 1 << 12
        params = CkksParameters(poly_degree=N, scale_bits=40, max_depth=6, security_level="testing", dnum=2)
        kg = KeyGenerator(params, seed=b"m" * 32, backend=be)
        steps = matmul_galois_steps(256, 256, params.slot_count)
        ev = Evaluator(params, kg.evaluation_keys(galois_steps=steps), backend=be)
        enc = Encoder(params, be)
        rng = np.random.default_rng(2)
        ct = Encryptor(params, kg.public_key(), seed=b"e" * 32, backend=be).encrypt(
            enc.encode(rng.uniform(-1, 1, params.slot_count)))
        m = rng.uniform(-1, 1, (256, 256))
        res["matmul_256_ms"] = tm(lambda: mm(ev, m, ct), reps=3, warm=1)
        say(f"matmul 256 {res['matmul_256_ms']:.1f} ms")
        prof("matmul 256", lambda: mm(ev, m, ct), n=1)

    guard("matmul", matmul)

    # ---- TFHE ------------------------------------------------------------------------------
    def tfhe_():
        from wavis import tfhe
        from wavis.tfhe import gates

        preset = "fast_128" if not args.emulate else "testing"
        ck, sk = tfhe.keygen(preset, seed=b"g" * 32)
        eng = be.lwe(sk.params)
        key = eng.load_server_key(sk.mask_seed, sk.bsk_bodies, sk.ksk_bodies)
        xp = eng.xp
        t = {}
        for J in (1, 4096) if not args.emulate else (1, 16):
            rng = np.random.default_rng(J)
            rows = ck.encrypt(rng.integers(0, 2, J).astype(bool)).rows()
            A = xp.asarray(rows)
            for blk in (64, 128, 256, 512):
                eng.block_threads = blk
                t[f"blind_rotate_J{J}_b{blk}"] = tm(lambda: eng.bootstrap(key, A, gates.MU), reps=3, warm=1)
            eng.block_threads = None
            big = eng.bootstrap(key, A, gates.MU)
            t[f"keyswitch_J{J}"] = tm(lambda: eng.key_switch(key, big), reps=3, warm=1)
            ops = ["NAND"] * J
            t[f"gate_J{J}"] = tm(lambda: gates.evaluate(eng, key, ops, rows, rows, rows), reps=3, warm=1)
        res["tfhe_ms"] = t
        for k, v in t.items():
            say(f"tfhe {k:24s} {v:9.3f} ms")

    guard("tfhe", tfhe_)
    (out / "profile.txt").write_text(text.getvalue())
    (out / "profile.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
