"""An encrypted 64×64 matrix × vector through the SDK (blind mode: keys made here).

Parameters: N = 8192, scale 2^40, one level, 128-bit (HE Standard table); the key set holds
exactly the Galois keys a 64×64 baby-step/giant-step matmul needs. Expected run time: a few
seconds (measured 8.4 s wall against `./dev serve` on the 2-core dev host at load average 7, an
upper bound; max abs error ~6e-7). Server: WAVIS_URL or the running
`wavis serve`; API key: WAVIS_API_KEY, else a trial key.

    .venv/bin/python examples/matmul_64.py
"""
import numpy as np
from wavis.client import Client, KeyPair

params = {"poly_degree": 8192, "scale_bits": 40, "max_depth": 1, "security_level": "128-bit"}  # params
keys = KeyPair.generate(params, matmul_shapes=[(64, 64)])
rng = np.random.default_rng()
m, x = rng.uniform(-1, 1, (64, 64)), rng.uniform(-1, 1, 64)
with Client() as c:
    c.api_key or c.create_temp_key()
    key_id = c.upload_keys(keys)
    ct = c.upload_ciphertext(key_id, keys.encrypt(x))
    result = c.matmul(key_id, ct, m)
y = keys.decrypt(result.ciphertext).real[:64]
print(f"max abs error of M·x: {np.abs(y - m @ x).max():.2e}")
assert np.allclose(y, m @ x, atol=1e-3)
