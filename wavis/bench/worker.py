"""The WAVIS side of the harness's rounds: ``python -m wavis.bench.worker KIND CFG_JSON``.

KIND is ``ckks`` (one parameter set, the hot operations), ``tfhe`` (single NAND gates and
batches of one preset) or ``bootstrap`` (one bootstrappable preset, optionally sparse). The
process speaks :mod:`wavis.bench.protocol`; every operation's output is decrypted and checked
against NumPy before its time counts. Threads: the C++ core reads ``WAVIS_THREADS`` when it
starts, so the harness sets it in this process's environment.
"""

from __future__ import annotations

import sys

import numpy as np

from wavis.bench.protocol import error_bits, serve


def simd_path() -> str | None:
    """The SIMD path this process's core runs (None when the build cannot say: a baseline build
    older than the runtime dispatch, see benchmarks/baseline_worker.py)."""
    try:
        from wavis.backend import cpu

        return str(cpu.simd_path())
    except Exception:  # an older build: no wavis.backend.cpu or no simd_path
        return None


def _approx_check(decode, expected, min_bits: float):
    def check(out):
        got = decode(out)
        bits = error_bits(float(np.max(np.abs(np.asarray(got) - expected))))
        return bits >= min_bits, bits, f"{bits:.1f} bits (need {min_bits:g})"
    return check


def make_ckks(cfg: dict) -> dict:
    """Ops on fresh ciphertexts at the top level: encode, encrypt (public key), decrypt+decode,
    add, multiply+relinearize+rescale, rotate by 1, 8 hoisted rotations (steps 1..8)."""
    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator

    params = CkksParameters(poly_degree=cfg["N"], scale_bits=cfg["scale_bits"], max_depth=cfg["depth"],
                            security_level=cfg.get("security", "128-bit"), first_mod_bits=cfg["first_bits"],
                            dnum=cfg["dnum"], special_mod_bits=cfg.get("special_bits"))
    kg = KeyGenerator(params)
    ev = Evaluator(params, kg.evaluation_keys(galois_steps=list(range(1, 9))))
    enc, encr, dec = Encoder(params), Encryptor(params, kg.public_key()), Decryptor(params, kg.secret_key)
    slots = params.slot_count
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    px = enc.encode(x)
    cx, cy = encr.encrypt(px), encr.encrypt(enc.encode(y))
    mb = float(cfg.get("check_bits", 8))

    def real(ct):
        return enc.decode(dec.decrypt(ct)).real

    def hoisted_check(out):
        bits = min(error_bits(float(np.max(np.abs(real(out[s]) - np.roll(x, -s))))) for s in range(1, 9))
        return bits >= mb, bits, f"{bits:.1f} bits over 8 rotations"

    ops = {
        "encode": (lambda: enc.encode(x), _approx_check(lambda p: real(encr.encrypt(p)), x, mb)),
        "encrypt": (lambda: encr.encrypt(px), _approx_check(real, x, mb)),
        "decrypt_decode": (lambda: enc.decode(dec.decrypt(cx)), _approx_check(lambda v: v.real, x, mb)),
        "add": (lambda: ev.add(cx, cy), _approx_check(real, x + y, mb)),
        "multiply_relin_rescale": (lambda: ev.multiply(cx, cy), _approx_check(real, x * y, mb)),
        "rotate": (lambda: ev.rotate(cx, 1), _approx_check(real, np.roll(x, -1), mb)),
        "hoisted_rotations_8": (lambda: ev.rotate_many(cx, range(1, 9)), hoisted_check),
    }
    info = {"library": "wavis", "log_qp": round(float(params.log_qp_bits), 1), "slots": slots,
            "limbs": len(params.moduli), "special_primes": len(params.special_moduli),
            "digits": len(params.digits), "prime_bits": [int(m).bit_length() for m in params.moduli],
            "special_bits": [int(m).bit_length() for m in params.special_moduli],
            "secret": "uniform ternary", "key_switching": "hybrid (dnum digits, special primes)",
            "simd_path": simd_path()}
    return {"info": info, "ops": {k: v for k, v in ops.items() if k in cfg.get("ops", ops)}}


def make_tfhe(cfg: dict) -> dict:
    """One NAND gate (gate bootstrapping: blind rotation, sample extraction, key switching) and,
    for each batch size B in cfg["batches"], B independent NANDs in one batched call."""
    from wavis import tfhe

    ck, sk = tfhe.keygen(cfg.get("preset", "standard_128"))
    sk = sk.prepare()
    a, b = ck.encrypt(True), ck.encrypt(False)
    threads = int(cfg.get("threads", 1))

    def gate_check(out):
        ok = bool(ck.decrypt(out)) is True  # NAND(1, 0) = 1
        return ok, None, "NAND(1,0) decrypts to 1" if ok else "wrong bit"

    ops = {"nand_gate": (lambda: sk.gate("NAND", a, b), gate_check)}
    rng = np.random.default_rng(3)
    for m in cfg.get("batches", []):
        xs, ys = rng.integers(0, 2, m).astype(bool), rng.integers(0, 2, m).astype(bool)
        A, B = ck.encrypt(xs), ck.encrypt(ys)

        def batch_check(out, xs=xs, ys=ys):
            ok = bool(np.array_equal(np.asarray(ck.decrypt(out)), ~(xs & ys)))
            return ok, None, f"{len(xs)} NANDs {'match' if ok else 'DIFFER from'} the truth table"

        ops[f"nand_batch_{m}"] = (lambda A=A, B=B, m=m: sk.evaluate_batch(["NAND"] * m, A, B, threads=threads),
                                  batch_check)
    p = sk.params
    info = {"library": "wavis", "preset": p.name, "n": p.n, "k": p.k, "N": p.big_n,
            "pbs_level": int(p.pbs_level), "pbs_base_log": int(p.pbs_base_log), "ks_level": int(p.ks_level),
            "ks_base_log": int(p.ks_base_log), "server_key_bytes": sk.memory_bytes, "simd_path": simd_path()}
    return {"info": info, "ops": ops}


def make_bootstrap(cfg: dict) -> dict:
    """One bootstrap of a level-0 ciphertext (ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs);
    checked for precision against the encrypted input (uniform complex in [−1, 1])."""
    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, KeyGenerator
    from wavis.ckks.bootstrap import Bootstrapper

    params = CkksParameters.bootstrappable(cfg["preset"])
    slots = cfg.get("slots")
    plan = Bootstrapper.key_plan(params, slots)
    kg = KeyGenerator(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    bs = Bootstrapper(params, evk, slots=slots)
    enc, dec, encr = Encoder(params), Decryptor(params, kg.secret_key), Encryptor(params, kg.public_key())
    n = slots or params.slot_count
    rng = np.random.default_rng(1)
    v = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    x = np.tile(v, params.slot_count // n)
    ct = encr.encrypt(enc.encode(x, level=0))
    mb = float(cfg.get("check_bits", 8))

    def check(out):
        err = np.maximum(np.abs(enc.decode(dec.decrypt(out)) - x), 2.0**-60)
        mean, low = float(np.mean(-np.log2(err))), float(-np.log2(np.max(err)))
        return low >= mb, low, f"precision mean {mean:.1f} / min {low:.1f} bits"

    info = {"library": "wavis", "preset": cfg["preset"], "N": params.poly_degree, "slots": n,
            "levels_after": params.max_depth, "key_bytes": plan.key_bytes, "key_count": plan.key_count,
            "secret": "sparse-secret encapsulation h=32" if plan.encapsulation_hamming_weight else "uniform ternary"}
    return {"info": info, "ops": {"bootstrap": (lambda: bs.bootstrap(ct), check)}}


MAKERS = {"ckks": make_ckks, "tfhe": make_tfhe, "bootstrap": make_bootstrap}

if __name__ == "__main__":
    serve(MAKERS[sys.argv[1]])
