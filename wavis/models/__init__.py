"""Encrypted-inference models on CKKS: a small graph runtime (``runtime``: slot-linear maps by
the diagonal method, slot-wise polynomials and products; the same graph runs on NumPy and on
ciphertexts) and the catalogue of models shipped with the package (``catalogue``; weights as
JSON + NPZ, never pickle). docs/models.md describes the models, their training and the
measured accuracy and latency.

Typical use (locally, no server)::

    from wavis import models
    from wavis.client import KeyPair
    from wavis.ckks import Evaluator

    m = models.get("digits-logreg")
    keys = KeyPair.generate(m.params_required, galois_steps=m.galois_steps())
    slots = keys.params.slot_count
    ct = keys.encrypt(m.encode_batch(x_raw, slots))        # x_raw: (batch, 64) pixels 0..16
    out = m.infer(Evaluator(keys.params, keys.eval_keys), ct)
    logits = m.decode_batch(keys.decrypt(out), len(x_raw))  # (batch, 10); argmax = class
"""

from .catalogue import Model, catalogue, catalogue_path, get, load_split, model_ids
from .runtime import Graph

__all__ = ["Model", "Graph", "catalogue", "catalogue_path", "get", "load_split", "model_ids"]
