"""CKKS bootstrapping through the SDK: square an encrypted vector, then refresh its levels on
the server (ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs; docs/bootstrapping.md).

Parameters: bootstrapping preset n65536 (N = 2^16, 128-bit; user levels after each bootstrap:
docs/bootstrapping.md). The key set is 44 keys, ~1.8 GB (2.4 GB of base64 in 46 requests: the public key
alone, then one key per chunk). Measured against `./dev serve` on the 2-core dev host (load
average ~5, an upper bound): 324 s wall in all (keygen, ~3 min of upload, multiply 57 s of which
most is loading the keys, bootstrap 55 s), level 8 -> 9, max abs error 5.3e-6; client RSS 7.3 GB
(run at 43e56b4, before the preset gained its tenth level in a56ae22).
The server's admission estimates an n65536 bootstrap at ~30 s of CPU (18-25 s measured on one
thread) and over 2 GiB (its working set, the encoded DFT factors and the idle rotation workspace:
the table in docs/service.md), within the 120 s and 4 GiB per request of the pro plan and above:
use such a key (WAVIS_API_KEY from `wavis admin create-account --plan pro`; starter's 2 GiB admits
sparse packing with few slots, not full slots; a trial key is refused with 413 REQUEST_TOO_LARGE).
The preset testing-n1024 runs the same flow in seconds (the test suite does; the server needs
WAVIS_ALLOW_INSECURE_PARAMS=1 for it). The script takes no options but --help; without it,
running it starts the ~1.8 GB keygen at once.

    WAVIS_API_KEY=wvs_… .venv/bin/python examples/ckks_bootstrap.py
"""
import argparse

import numpy as np
from wavis.client import Client, KeyPair

argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
params = {"bootstrap_preset": "n65536"}  # params
keys = KeyPair.generate(params, bootstrappable=True)
x = np.linspace(-1, 1, keys.params.slot_count)
with Client() as c:
    key_id = c.upload_keys(keys, progress=lambda sent, total: print(f"keys {sent / total:.0%}", end="\r"))
    ct = c.upload_ciphertext(key_id, keys.encrypt(x))
    squared = c.multiply(key_id, ct, ct)
    fresh = c.bootstrap(key_id, squared)
error = np.abs(keys.decrypt(fresh.ciphertext).real - x * x).max()
print(f"level {squared.level} -> {fresh.level} after the bootstrap; max abs error {error:.2e}")
assert fresh.level > squared.level and error < 2 ** -8
