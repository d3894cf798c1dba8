"""RNS-CKKS: approximate arithmetic on encrypted real/complex vectors.

Typical use::

    params = CkksParameters(poly_degree=8192, scale_bits=40, max_depth=2)
    kg = KeyGenerator(params)
    enc, ev = Encoder(params), Evaluator(params, kg.evaluation_keys())
    ct = Encryptor(params, kg.public_key()).encrypt(enc.encode(x))
    y = enc.decode(Decryptor(params, kg.secret_key).decrypt(ev.multiply(ct, ct))).real

Every object computes in a :class:`CkksContext` (parameters × backend); passing ``params`` uses
the default CPU context. On a GPU: ``ctx = CkksContext(params, wavis.backend.get("cuda"))`` and
``Evaluator(ctx, evk)`` (the keys are moved onto the device once).
"""

from .context import CkksContext
from .encoder import Encoder
from .encryptor import Decryptor, Encryptor
from .evaluator import Evaluator
from .keys import KeyGenerator, galois_element
from .params import CkksParameters
from .structures import (
    Ciphertext, EvaluationKeys, GaloisKey, KeySwitchingKey, Plaintext, PublicKey, RelinearizationKey, SecretKey,
)

__all__ = [
    "CkksContext",
    "CkksParameters", "Encoder", "Encryptor", "Decryptor", "Evaluator", "KeyGenerator", "galois_element",
    "Ciphertext", "Plaintext", "PublicKey", "SecretKey", "EvaluationKeys", "KeySwitchingKey",
    "RelinearizationKey", "GaloisKey",
]
