"""Precision left after server-mode (noise-flooded) CKKS decryption, per parameter set.

For each set: encrypt a real vector in [-1, 1] with a public key, decrypt with
``Encoder.decode_flooded`` (σ = 2^30·B; ``wavis.ckks.flooding``) at the top level and after one
multiplication, and print log2 B, the precision kept (bits after the binary point) and the
largest error seen. The table in docs/security.md comes from this script:

    .venv/bin/python benchmarks/flooding_precision.py
"""

from __future__ import annotations

import numpy as np

from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator

SETS = [
    dict(poly_degree=2048, scale_bits=40, max_depth=1, security_level="testing"),
    dict(poly_degree=2048, scale_bits=58, first_mod_bits=61, magnitude_bits=2, max_depth=1, security_level="testing"),
    dict(poly_degree=8192, scale_bits=40, max_depth=2),
    dict(poly_degree=8192, scale_bits=50, first_mod_bits=60, magnitude_bits=9, max_depth=1),
    dict(poly_degree=8192, scale_bits=55, first_mod_bits=60, magnitude_bits=4, max_depth=1, dnum=2),
    dict(poly_degree=16384, scale_bits=58, first_mod_bits=61, magnitude_bits=2, max_depth=4),
    dict(poly_degree=32768, scale_bits=58, first_mod_bits=61, magnitude_bits=2, max_depth=8),
]


def main() -> None:
    print("| N | scale_bits | q_0 bits | magnitude bound | level | log2 B | precision_bits | max error |")
    print("|---|---|---|---|---|---|---|---|")
    for d in SETS:
        p = CkksParameters(**d)
        kg = KeyGenerator(p)
        enc, dec = Encoder(p), Decryptor(p, kg.secret_key)
        ev = Evaluator(p, kg.evaluation_keys())
        x = np.random.default_rng(1).uniform(-1, 1, p.slot_count)
        ct = Encryptor(p, kg.public_key()).encrypt(enc.encode(x))
        for c, want in ((ct, x), (ev.multiply(ct, ct), x * x)):
            f = enc.decode_flooded(dec.decrypt(c))
            err = float(np.max(np.abs(f.values - want)))
            print(f"| {p.poly_degree} | {p.scale_bits} | {p.first_mod_bits} | 2^{p.magnitude_bits} | {c.level} | "
                  f"{f.noise_bound_log2:.0f} | {f.precision_bits} | {err:.2g} |")


if __name__ == "__main__":
    main()
