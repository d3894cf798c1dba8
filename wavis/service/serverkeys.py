"""Server-mode CKKS keys (``POST /keys/generate``, deprecated, for demos): key generation,
encryption and decryption on the server. Plain synchronous functions run on the compute
engine's threads. With ``fhe.py`` these are the only service modules that call ``wavis.ckks``;
the secret key leaves this module only serialized, and the route seals it with AES-GCM
(``sealing``) before it reaches PostgreSQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import fhe
from .settings import Limits

FLOOD_STATISTICAL_BITS = 30  # s in σ_flood = 2^s·B (issue 15: s ≥ 30)


@dataclass
class Generated:
    parsed: fhe.ParsedKeys
    secret_key: bytes  # serialized; seal before storing
    parts: list[fhe.GaloisChunk] = field(default_factory=list)  # key chunks beyond the head

SPLIT_BYTES = 28 * 1024 * 1024  # key sets larger than this are stored as a head and chunks


def bootstrap_key_count(params_in: dict[str, Any], slots: int | None = None) -> int:
    """Key-switching keys beyond the relinearization key that ``bootstrappable`` adds (Galois,
    conjugation, encapsulation; ``Bootstrapper.key_plan``), for the admission cost."""
    from wavis.ckks import CkksParameters  # noqa: PLC0415
    from wavis.ckks.bootstrap import Bootstrapper  # noqa: PLC0415

    return Bootstrapper.key_plan(CkksParameters.from_dict(params_in), slots).key_count - 1


def generate(params_in: dict[str, Any], rotation_steps: list[int], limits: Limits, bootstrappable: bool = False,
             bootstrap_slots: int | None = None) -> Generated:
    """A key pair; with ``bootstrappable`` also every key a bootstrap of ``bootstrap_slots``
    slots (default N/2) needs (``Bootstrapper.key_plan``: Galois steps, conjugation,
    encapsulation keys)."""
    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import CkksParameters, KeyGenerator  # noqa: PLC0415

    params = CkksParameters.from_dict(params_in)
    slots = int(params.slot_count)
    steps = {int(s) % slots for s in rotation_steps} - {0}
    conj, encaps = False, None
    if bootstrappable:
        from wavis.ckks.bootstrap import Bootstrapper  # noqa: PLC0415

        plan = Bootstrapper.key_plan(params, bootstrap_slots)
        steps |= set(plan.galois_steps)
        conj, encaps = True, plan.encapsulation_hamming_weight
    kg = KeyGenerator(params)
    pk = kg.public_key()
    evk = kg.evaluation_keys(galois_steps=tuple(sorted(steps)), conjugation=conj, encapsulation_hamming_weight=encaps)
    parts: list[fhe.GaloisChunk] = []
    head = evk
    size = serialize.eval_keys_size(params, len(evk.galois_keys), True, evk.encapsulation is not None)
    if bootstrappable and size > SPLIT_BYTES:
        # too large for one blob: the head keeps the relinearization and encapsulation keys, every
        # Galois key becomes a chunk (as a client's upload would send them)
        from wavis.ckks import EvaluationKeys  # noqa: PLC0415

        head = EvaluationKeys(evk.params_fingerprint, evk.key_tag, evk.relin_key, {}, evk.encapsulation)
        for elt, gk in sorted(evk.galois_keys.items()):
            blob = serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None, {elt: gk}))
            steps, conj = fhe.rotation_steps(params, [elt])
            one = EvaluationKeys(evk.params_fingerprint, evk.key_tag, None, {elt: gk})
            parts.append(fhe.GaloisChunk(blob, steps, conj, digests=fhe.key_digests(one)))
    # the same parsing, validation and size limits as an uploaded key pair
    parsed = fhe.parse_key_upload(params.to_dict(), serialize.b64encode(serialize.dumps(pk)),
                                  serialize.b64encode(serialize.dumps(head)), limits)
    return Generated(parsed, serialize.dumps(kg.secret_key), parts)


def encrypt(params: Any, public_key: bytes, values: list[float]) -> fhe.CiphertextInfo:
    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import Encoder, Encryptor, PublicKey  # noqa: PLC0415

    pk = serialize.loads(public_key, expected_type=PublicKey, params=params)
    ct = Encryptor(params, pk).encrypt(Encoder(params).encode(values))
    blob = serialize.dumps(ct)
    return fhe.CiphertextInfo(blob, int(ct.level), float(ct.scale), int(params.slot_count))


def decrypt(params: Any, secret_key: bytes, ciphertext: bytes,
            statistical_bits: int = FLOOD_STATISTICAL_BITS) -> dict[str, Any]:
    """Flooded decryption (``Encoder.decode_flooded``: σ = 2^s·B, outputs rounded to the
    precision left). Returns {values, precision_bits, statistical_bits, noise_bound_log2}.

    Raises: PrecisionError (409 INSUFFICIENT_PRECISION) when the flooded values would keep
    less than one bit after the binary point."""
    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import Ciphertext, Decryptor, Encoder, SecretKey  # noqa: PLC0415
    from wavis.errors import PrecisionError  # noqa: PLC0415

    sk = serialize.loads(secret_key, expected_type=SecretKey, params=params)
    ct = serialize.loads(ciphertext, expected_type=Ciphertext, params=params)
    flooded = Encoder(params).decode_flooded(Decryptor(params, sk).decrypt(ct), statistical_bits)
    if flooded.precision_bits < 1:
        want = 8  # bits worth returning: the scale that would give them, other things equal
        need = math.ceil(math.log2(ct.scale) + want - flooded.precision_bits)
        raise PrecisionError(
            f"after noise flooding (σ = 2^{flooded.statistical_bits}·B = 2^{flooded.sigma_log2:.1f}) this ciphertext "
            f"at scale 2^{math.log2(ct.scale):.1f} keeps {flooded.precision_bits} bits: nothing worth returning. "
            f"Server-managed decryption of it needs a scale of about 2^{need} for {want} bits (see docs/security.md), "
            "or decrypt on the client with your own key",
            precision_bits=flooded.precision_bits, scale_bits=round(math.log2(ct.scale), 3),
            scale_bits_for_8_bits=need, noise_bound_log2=flooded.noise_bound_log2,
            statistical_bits=flooded.statistical_bits)
    return dict(values=[float(v) for v in flooded.values], precision_bits=flooded.precision_bits,
                statistical_bits=flooded.statistical_bits, noise_bound_log2=round(flooded.noise_bound_log2, 3))
