"""CKKS on the client: a key pair made for a workload, encryption and decryption. The secret key
never leaves this process; the server gets the public key and the evaluation keys.

    from wavis.client import KeyPair
    keys = KeyPair.generate({"poly_degree": 8192, "scale_bits": 40, "max_depth": 2},
                            matmul_shapes=[(64, 64)])        # exactly the keys a 64×64 matmul needs
    ct = keys.encrypt(x)                                     # x: up to slot_count reals/complexes
    y = keys.decrypt(ct).real

The scheme is RNS-CKKS (Cheon–Kim–Kim–Song, ASIACRYPT 2017; full-RNS variant Cheon et al.,
SAC 2018) as implemented in :mod:`wavis.ckks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from wavis import serialize
from wavis.ckks import (
    Ciphertext, CkksParameters, Decryptor, Encoder, Encryptor, EvaluationKeys, KeyGenerator, PublicKey, SecretKey,
)
from wavis.ckks.linalg import matmul_galois_steps

__all__ = ["KeyPair", "DEFAULT_KEY_CHUNK_BYTES", "API_MAX_DEPTH"]

# API.md "CKKS params": the ``max_depth`` a key sent to the service may have, inclusive (the library,
# ``wavis.ckks.CkksParameters``, allows 0..60). The one definition: the service checks it
# (``wavis.service.fhe.request_params`` → 400 INVALID_PARAMS, its OpenAPI schema says it) and
# ``wavis keygen ckks --max-depth`` refuses a value outside it before making any key.
API_MAX_DEPTH = (1, 24)

# Key data per upload request when the server states no body limit (AsyncClient.key_chunk_bytes
# reads it from GET /health): 7/10 of the default 40 MiB key-upload body, base64 (4/3) and JSON included.
DEFAULT_KEY_CHUNK_BYTES = 28 * 1024 * 1024


@dataclass
class KeyPair:
    """A CKKS key pair made locally. ``secret_key`` never leaves this object."""

    params: CkksParameters
    secret_key: SecretKey
    public_key: PublicKey
    eval_keys: EvaluationKeys
    key_id: str | None = None  # set by upload_keys
    _encoder: Encoder | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, params: CkksParameters | Mapping[str, Any], galois_steps: Iterable[int] = (),
                 conjugation: bool = False, seed: bytes | None = None, bootstrappable: bool = False,
                 bootstrap_slots: int | None = None, *, matmul_shapes: Iterable[tuple[int, int]] = (),
                 rotations: Iterable[int] = (), sums: bool = False) -> "KeyPair":
        """A fresh key pair with exactly the evaluation keys the workload needs:

        * always the public key and the relinearization key (multiply);
        * ``matmul_shapes`` ``[(rows, cols), …]``: the Galois keys of the baby-step/giant-step
          diagonal matmul of each shape (:func:`wavis.ckks.linalg.matmul_galois_steps`);
        * ``rotations`` (alias ``galois_steps``): one Galois key per rotation step (normalised
          modulo the slot count; 0 needs none);
        * ``sums``: the log2(slots) power-of-two steps of ``sum`` and ``inner-product``;
        * ``conjugation``: the conjugation key;
        * ``bootstrappable``: every key a server-side bootstrap of ``bootstrap_slots`` slots needs
          (the parameters must name a ``bootstrap_preset``; :meth:`bootstrap_key_plan` gives the
          steps and the key-set size in bytes before generating).

        ``params``: a :class:`CkksParameters` or its literal (``poly_degree``, ``scale_bits``,
        ``max_depth``, ``security_level``, ``bootstrap_preset``). ``seed``: reproducible keys
        (tests only). Raises ParameterError / InsufficientSecurityError for parameters that are
        not sound, ShapeError for a matrix larger than the slots."""
        if not isinstance(params, CkksParameters):
            params = CkksParameters.from_dict(dict(params))
        slots = int(params.slot_count)
        steps, encaps = set(int(s) % slots for s in (*galois_steps, *rotations)), None
        for rows, cols in matmul_shapes:
            steps |= set(matmul_galois_steps(int(rows), int(cols), slots))
        if sums:
            steps |= {1 << i for i in range(slots.bit_length() - 1)}
        steps.discard(0)
        if bootstrappable:
            plan = cls.bootstrap_key_plan(params, bootstrap_slots)
            steps |= set(plan.galois_steps)
            conjugation, encaps = True, plan.encapsulation_hamming_weight
        kg = KeyGenerator(params, seed=seed)
        return cls(params, kg.secret_key, kg.public_key(),
                   kg.evaluation_keys(galois_steps=tuple(sorted(steps)), conjugation=conjugation,
                                      encapsulation_hamming_weight=encaps))

    # files (the CLI's key directory): every file mode 0600, the directory 0700
    FILES = ("params.json", "secret.key", "public.key", "eval.keys")

    def save(self, directory) -> list:
        """Write the key pair to ``directory`` (created 0700): ``params.json`` (parameters and
        the server's key id once uploaded), ``secret.key``, ``public.key``, ``eval.keys``, each
        mode 0600 (the secret key is never written with wider permissions). Returns the paths."""
        from .files import write_private  # noqa: PLC0415

        import json  # noqa: PLC0415

        meta = {"scheme": "ckks", "params": self.params.to_dict(), "key_id": self.key_id}
        return [write_private(directory, "params.json", json.dumps(meta, indent=2).encode()),
                write_private(directory, "secret.key", serialize.dumps(self.secret_key)),
                write_private(directory, "public.key", serialize.dumps(self.public_key)),
                write_private(directory, "eval.keys", serialize.dumps(self.eval_keys))]

    @classmethod
    def load(cls, directory) -> "KeyPair":
        """The key pair :meth:`save` wrote (each blob checked against the parameters)."""
        import json  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        d = Path(directory)
        meta = json.loads((d / "params.json").read_text())
        params = CkksParameters.from_dict(meta["params"])
        sk = serialize.loads((d / "secret.key").read_bytes(), expected_type=SecretKey, params=params)
        pk = serialize.loads((d / "public.key").read_bytes(), expected_type=PublicKey, params=params)
        evk = serialize.loads((d / "eval.keys").read_bytes(), expected_type=EvaluationKeys, params=params)
        return cls(params, sk, pk, evk, key_id=meta.get("key_id"))

    @staticmethod
    def bootstrap_key_plan(params: CkksParameters | Mapping[str, Any], slots: int | None = None):
        """The Galois steps, conjugation, encapsulation keys and the key-set size (bytes) a
        bootstrap needs, before anything is generated (``Bootstrapper.key_plan``)."""
        from wavis.ckks.bootstrap import Bootstrapper

        if not isinstance(params, CkksParameters):
            params = CkksParameters.from_dict(dict(params))
        return Bootstrapper.key_plan(params, slots)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder(self.params)
        return self._encoder

    def encrypt(self, values) -> Ciphertext:
        """Encrypt up to ``slot_count`` values (real or complex, any array-like; shorter inputs
        are zero-padded) at the top level and the parameters' scale under the public key.
        Raises EncodingError for too many or non-finite values."""
        return Encryptor(self.params, self.public_key).encrypt(self.encoder.encode(values))

    def decrypt(self, ct: Ciphertext) -> np.ndarray:
        """Complex slot values, shape (slot_count,); take ``.real`` for real inputs."""
        return self.encoder.decode(Decryptor(self.params, self.secret_key).decrypt(ct))

    def upload_body(self) -> dict[str, Any]:
        """The POST /keys/upload body with every evaluation key (may exceed the 40 MB limit
        for large key sets: :meth:`upload_parts` splits them)."""
        return self.upload_parts()[0]

    def upload_parts(self, max_bytes: int = DEFAULT_KEY_CHUNK_BYTES) -> list[dict[str, Any]]:
        """The key upload split into request bodies of at most ~``max_bytes`` of key data
        (base64 grows it by 4/3, under the server's 40 MB): the first for POST /keys/upload
        (public key, relinearization key and the Galois keys that fit), the rest for
        POST /keys/{key_id}/galois-keys. The relinearization key (any parameters) and a bootstrap
        preset's encapsulation keys go in chunks of their own when they do not fit beside the
        public key (one key-switching key at N = 2^15, depth 16 is ~41.6 MB of base64, at N = 2^16
        ~43 MB: the server accepts one key per chunk), and the first request then carries the
        public key alone."""
        evk = self.eval_keys
        fp, tag = evk.params_fingerprint, evk.key_tag
        pk_blob = serialize.dumps(self.public_key)
        extra: list[dict[str, Any]] = []
        head = EvaluationKeys(fp, tag, evk.relin_key, {}, evk.encapsulation)
        if len(pk_blob) + len(serialize.dumps(head)) > max_bytes:
            # the relinearization key goes alone; the (small) encapsulation key stays in the first
            # request when it fits, so that request always carries a key
            extra.append({"eval_key": serialize.b64encode(serialize.dumps(EvaluationKeys(fp, tag, evk.relin_key, {})))})
            head = EvaluationKeys(fp, tag, None, {}, evk.encapsulation)
            if evk.encapsulation is None or len(pk_blob) + len(serialize.dumps(head)) > max_bytes:
                if evk.encapsulation is not None:
                    extra.append({"eval_key": serialize.b64encode(serialize.dumps(head))})
                head = EvaluationKeys(fp, tag, None, {})
        used = len(pk_blob) + (len(serialize.dumps(head)) if head.relin_key or head.encapsulation else 0)
        chunks: list[dict[int, Any]] = [{}]
        size = 0  # every Galois key has the same serialized size
        for elt in sorted(evk.galois_keys):
            if not size:
                size = len(serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None,
                                                          {elt: evk.galois_keys[elt]})))
            # a chunk request takes at least one key; the first request (public key, 40 MB
            # limit) takes a Galois key only when it fits (one is ~43 MB at N = 2^16)
            if used + size > max_bytes and (chunks[-1] or len(chunks) == 1):
                chunks.append({})
                used = 0
            chunks[-1][elt] = evk.galois_keys[elt]
            used += size
        head.galois_keys = chunks[0]
        empty_head = head.relin_key is None and head.encapsulation is None and not head.galois_keys
        chunks = [c for i, c in enumerate(chunks) if i == 0 or c]
        bodies = [{"params": self.params.to_dict(), "public_key": serialize.b64encode(pk_blob)}]
        if not empty_head:  # the first request may carry the public key alone
            bodies[0]["eval_key"] = serialize.b64encode(serialize.dumps(head))
        bodies += extra
        for part in chunks[1:]:
            blob = serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None, part))
            bodies.append({"eval_key": serialize.b64encode(blob)})
        return bodies


