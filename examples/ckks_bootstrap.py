"""CKKS bootstrapping through the SDK: square an encrypted vector, then refresh its levels on
the server (ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs; docs/bootstrapping.md).

Parameters: bootstrapping preset n65536 (N = 2^16, 128-bit, 9 user levels at 2^40 after each
bootstrap). KNOWN GAP (open, issue 10/18): a 128-bit bootstrappable key set cannot be uploaded
yet. Every key-switching key is ~43 MB at N = 2^16 (~57 MB at N = 2^15) and POST /keys/upload
must carry the 10 MB public key plus at least one of them within ~40 MB, so `upload_keys` stops
with a ParameterError that says so, before sending anything. The flow runs today on the preset
testing-n1024 (insecure: replace "n65536" below, and start the server with
WAVIS_ALLOW_INSECURE_PARAMS=1); the test suite runs it that way (tests/test_examples.py) in seconds.

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
