"""WAVIS client SDK: keys, encryption and decryption stay on your machine; the server only
sees public/evaluation keys and ciphertexts (blind mode).

CKKS, an encrypted 64×64 matrix × vector::

    import numpy as np
    from wavis.client import Client, KeyPair
    keys = KeyPair.generate({"poly_degree": 8192, "scale_bits": 40, "max_depth": 1},
                            matmul_shapes=[(64, 64)])
    with Client() as c:                       # WAVIS_URL, or the running `wavis serve`
        c.create_temp_key()                   # or Client(url, api_key="wvs_…")
        key_id = c.upload_keys(keys)
        x = c.upload_ciphertext(key_id, keys.encrypt(np.ones(64)))
        r = c.matmul(key_id, x, np.eye(64))
        print(keys.decrypt(r.ciphertext).real[:64])

TFHE, an 8-bit adder in blind mode::

    from wavis.client import Circuit, Client, TfheKeys
    keys = TfheKeys.generate("fast_128")
    with Client() as c:
        c.create_temp_key()
        s = c.tfhe_blind_session(keys)
        circ = Circuit()
        total, _ = circ.add(circ.inputs(keys.encrypt_uint(100, 8)), circ.inputs(keys.encrypt_uint(55, 8)))
        print(keys.decrypt_uint(circ.pick(c.tfhe_run(s, circ), total)))     # 155

``AsyncClient`` has the same methods as ``Client``, as coroutines. Errors are typed
(:mod:`wavis.client.errors`); retries and idempotency keys are automatic (:class:`RetryPolicy`).
"""

from __future__ import annotations

from .api import (COMPUTE_OPERATIONS, AsyncClient, CiphertextRef, Client, ComputeResult, Job, Progress, RetryPolicy,
                  TfheSession)
from .ckks import KeyPair
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .tfhe import Circuit, TfheKeys, ct_from_b64, ct_to_b64
from .webhooks import WebhookSignatureError, verify_signature

__all__ = ["AsyncClient", "Client", "RetryPolicy", "KeyPair", "TfheKeys", "Circuit", "CiphertextRef",
           "ComputeResult", "TfheSession", "Job", "Progress", "COMPUTE_OPERATIONS", "ct_to_b64", "ct_from_b64",
           "verify_signature", "WebhookSignatureError", *_errors_all]
