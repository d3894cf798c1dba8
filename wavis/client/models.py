"""Encrypted inference through the REST API (API.md §Models), on the client side: key
generation with exactly what the model needs (its depth, scale and Galois steps — nothing
more), encryption of a packed batch, ``POST /models/{id}/infer``, decryption and decoding.
The secret key never leaves this process.

    from wavis.client import Client
    from wavis.client.models import infer

    with Client(url, api_key) as c:
        r = infer(c, "digits-logreg", x)     # x: (batch, 8, 8) or (batch, 64) pixels 0..16
        r.predictions, r.logits, r.meta["cost_units"]

Keys are made once per (client, model, parameters) and reused by later calls (generation and
upload dominate the first call at 128-bit parameters).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from wavis import models as _models
from wavis import serialize
from wavis.ckks import Ciphertext

from . import AsyncClient, Client, KeyPair


@dataclass(frozen=True)
class InferenceResult:
    """``logits`` (batch, outputs) float64 decrypted on the client; ``predictions`` their argmax
    (batch,) int; ``meta`` the server's response (cost_units, compute_time_ms, level, …; with
    several requests, the last one's plus ``requests``: every response)."""

    logits: np.ndarray
    predictions: np.ndarray
    key_id: str
    meta: dict[str, Any]


def model_keys(model_id: str, params: Mapping[str, Any] | None = None, seed: bytes | None = None) -> KeyPair:
    """A key pair with exactly the model's needs: ``params`` (default: the model's 128-bit
    ``params_required``), the relinearization key and the Galois keys of
    ``model.galois_steps(slots)``, no conjugation key. Raises ParameterError (unknown model,
    invalid parameters), ShapeError (slots too few for one block)."""
    model = _models.get(model_id)
    p = dict(params) if params is not None else model.params_required
    slots = int(p["poly_degree"]) // 2
    boot = bool(p.get("bootstrap_preset")) and model.graph.bootstraps_needed(int(p["max_depth"])) > 0
    return KeyPair.generate(p, galois_steps=model.galois_steps(slots), conjugation=False, seed=seed,
                            bootstrappable=boot)


async def infer_async(client: AsyncClient, model_id: str, x, *, params: Mapping[str, Any] | None = None,
                      keys: KeyPair | None = None) -> InferenceResult:
    """Encrypted inference of raw inputs ``x`` (one sample or a batch of up to ``max_batch``).

    Args:
        client: an :class:`AsyncClient` with an API key (TRIAL+).
        model_id: a catalogue id (``GET /models``).
        x: array (batch, *input_shape) or (*input_shape), raw values as ``input_encoding``
            describes (pixels 0..16 for the digits models); batches larger than one
            ciphertext's ``max_batch`` are sent as several requests.
        params: CKKS parameters for a new key (default: the model's ``params_required``).
        keys: a key pair to use (uploaded if it has no ``key_id``); default: one made by
            :func:`model_keys` and cached on the client.

    Raises: wavis.client.ApiError for API errors; ShapeError for inputs that do not fit.
    """
    model = _models.get(model_id)
    if keys is None:
        cache = client.__dict__.setdefault("_model_keys", {})
        ck = (model_id, tuple(sorted((params or model.params_required).items())))
        keys = cache.get(ck)
        if keys is None:
            keys = await asyncio.to_thread(model_keys, model_id, params)
            cache[ck] = keys
    if keys.key_id is None:
        await client.upload_keys(keys)
    slots = int(keys.params.slot_count)
    z = model.normalize(x)
    cap = model.max_batch(slots)
    logits, metas = [], []
    for start in range(0, z.shape[0], cap):  # one ciphertext (one request) per max_batch samples
        chunk = np.asarray(x, dtype=np.float64).reshape(z.shape[0], -1)[start:start + cap]
        ct = await asyncio.to_thread(lambda: keys.encrypt(model.encode_batch(chunk, slots)))
        text = await asyncio.to_thread(lambda: serialize.b64encode(serialize.dumps(ct)))
        _, up, _ = await client.request("POST", "/ciphertexts", {"key_id": keys.key_id, "ciphertext_b64": text})
        _, data, _ = await client.request("POST", f"/models/{model_id}/infer",
                                          {"key_id": keys.key_id, "ciphertext_ids": [up["ciphertext_id"]]})

        def decode(data=data, n=len(chunk)) -> np.ndarray:
            out = serialize.loads(serialize.b64decode(data["result_ciphertext"]), expected_type=Ciphertext,
                                  params=keys.params)
            return model.decode_batch(keys.decrypt(out), n)

        logits.append(await asyncio.to_thread(decode))
        metas.append({k: v for k, v in data.items() if k != "result_ciphertext"})
    out = np.concatenate(logits)
    meta = dict(metas[-1], requests=metas) if len(metas) > 1 else metas[0]
    return InferenceResult(out, out.argmax(axis=1), keys.key_id, meta)


def infer(client: Client | AsyncClient, model_id: str, x, **kw) -> InferenceResult:
    """Synchronous :func:`infer_async` for a :class:`Client` (the SDK's ``client.infer``)."""
    if isinstance(client, Client):
        return client._run(infer_async(client._async, model_id, x, **kw))  # noqa: SLF001
    raise TypeError("use `await infer_async(client, …)` with an AsyncClient")
