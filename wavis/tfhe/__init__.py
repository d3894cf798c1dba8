"""TFHE Boolean gates with gate bootstrapping (Chillotti et al., J. Cryptology 2020).

    from wavis import tfhe
    ck, sk = tfhe.keygen("standard_128")            # on the client
    a, b = ck.encrypt(True), ck.encrypt(False)
    r = sk.gate("NAND", a, b)                       # on the server (holds nothing secret)
    assert ck.decrypt(r) is True
    batch = sk.evaluate_batch(["AND", "XOR"], [a, a], [b, b])      # one batched bootstrap
    outs = sk.evaluate_circuit([{"op": "XOR", "a": a, "b": b}, {"op": "NOT", "a": "$0"}])
    blob = tfhe.serialize.dumps(sk)                 # versioned wire format (no pickle)

The gates are written once (:mod:`wavis.tfhe.gates`); the bootstrap (external products, blind
rotation, sample extraction, key switching) runs on a backend's LweOps (the C++ core
``csrc/tfhe*.{hpp,cpp}`` by default, or a GPU: ``TfheContext(params, backend)``). See docs/tfhe.md.
"""

from . import gates, noise, security, serialize
from .ciphertext import LweCiphertext
from .context import TfheContext
from .keys import (GATE_ARITY, GATE_BOOTSTRAPS, OPS, ClientKey, ServerKey, bootstraps, circuit_levels,
                   evaluate_circuit, keygen)
from .params import (PUBLIC_PRESETS, DecompositionBaseLog, DecompositionLevelCount, GlweDimension, LweDimension,
                     PolynomialSize, StandardDev, TfheParameters, conservative_128, fast_128, get_preset,
                     standard_128)

__all__ = [
    "ClientKey", "ServerKey", "LweCiphertext", "TfheParameters", "keygen", "evaluate_circuit", "circuit_levels",
    "bootstraps", "GATE_BOOTSTRAPS", "GATE_ARITY", "OPS", "PUBLIC_PRESETS", "get_preset", "fast_128",
    "standard_128", "conservative_128", "LweDimension", "GlweDimension", "PolynomialSize", "DecompositionBaseLog",
    "DecompositionLevelCount", "StandardDev", "TfheContext", "gates", "noise", "security", "serialize",
]
