"""Server-mode CKKS keys (``POST /keys/generate``, deprecated, for demos): key generation,
encryption and decryption on the server. Plain synchronous functions run on the compute
engine's threads. With ``fhe.py`` these are the only service modules that call ``wavis.ckks``;
the secret key leaves this module only serialized, and the route seals it with AES-GCM
(``sealing``) before it reaches PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import fhe
from .settings import Limits


@dataclass
class Generated:
    parsed: fhe.ParsedKeys
    secret_key: bytes  # serialized; seal before storing


def generate(params_in: dict[str, Any], rotation_steps: list[int], limits: Limits) -> Generated:
    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import CkksParameters, KeyGenerator  # noqa: PLC0415

    params = CkksParameters.from_dict(params_in)
    slots = int(params.slot_count)
    steps = sorted({int(s) % slots for s in rotation_steps} - {0})
    kg = KeyGenerator(params)
    pk = kg.public_key()
    evk = kg.evaluation_keys(galois_steps=tuple(steps), conjugation=False)
    # the same parsing, validation and size limits as an uploaded key pair
    parsed = fhe.parse_key_upload(params.to_dict(), serialize.b64encode(serialize.dumps(pk)),
                                  serialize.b64encode(serialize.dumps(evk)), limits)
    return Generated(parsed, serialize.dumps(kg.secret_key))


def encrypt(params: Any, public_key: bytes, values: list[float]) -> fhe.CiphertextInfo:
    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import Encoder, Encryptor, PublicKey  # noqa: PLC0415

    pk = serialize.loads(public_key, expected_type=PublicKey, params=params)
    ct = Encryptor(params, pk).encrypt(Encoder(params).encode(values))
    blob = serialize.dumps(ct)
    return fhe.CiphertextInfo(blob, int(ct.level), float(ct.scale), int(params.slot_count))


def decrypt(params: Any, secret_key: bytes, ciphertext: bytes) -> list[float]:
    import numpy as np  # noqa: PLC0415

    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import Ciphertext, Decryptor, Encoder, SecretKey  # noqa: PLC0415

    sk = serialize.loads(secret_key, expected_type=SecretKey, params=params)
    ct = serialize.loads(ciphertext, expected_type=Ciphertext, params=params)
    values = Encoder(params).decode(Decryptor(params, sk).decrypt(ct)).real
    return [float(v) for v in np.asarray(values)]
