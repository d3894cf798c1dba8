"""CKKS bootstrapping through the SDK: square an encrypted vector, then refresh its levels on
the server (ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs; docs/bootstrapping.md).

Parameters: bootstrapping preset n65536 (N = 2^16, 128-bit, 9 user levels at 2^40 after each
bootstrap, ~16 bits of precision). Expected run time: keygen ~1 min, 1.8 GB of keys uploaded
in chunks, one bootstrap ~30 s on a 2-core host; needs an API key of a paid plan
(WAVIS_API_KEY, from `wavis admin create-account --plan pro`). The preset testing-n1024 runs
the same flow in seconds (insecure: the operator's WAVIS_ALLOW_INSECURE_PARAMS=1).

    WAVIS_API_KEY=wvs_… .venv/bin/python examples/ckks_bootstrap.py
"""
import numpy as np
from wavis.ckks import CkksParameters
from wavis.client import Client, KeyPair

params = CkksParameters.bootstrappable("n65536")  # params
keys = KeyPair.generate(params, bootstrappable=True)
x = np.linspace(-1, 1, params.slot_count)
with Client() as c:
    c.api_key or c.create_temp_key()
    key_id = c.upload_keys(keys, progress=lambda sent, total: print(f"keys {sent / total:.0%}", end="\r"))
    ct = c.upload_ciphertext(key_id, keys.encrypt(x))
    squared = c.multiply(key_id, ct, ct)
    fresh = c.bootstrap(key_id, squared)
error = np.abs(keys.decrypt(fresh.ciphertext).real - x * x).max()
print(f"level {squared.level} -> {fresh.level} after the bootstrap; max abs error {error:.2e}")
assert fresh.level > squared.level and error < 2 ** -8
