"""The model catalogue: models shipped inside the package as ``data/<id>.json`` (the graph, the
encodings, the parameters it needs and the measured numbers) plus ``data/<id>.npz`` (the
weights; loaded with ``allow_pickle=False``). ``scripts/models/train.py`` writes both;
``benchmarks/models_accuracy.py`` measures the accuracy and latency figures and writes them
into the JSON's ``measured`` section (and ``benchmarks/results/models_*.json``).

A model is a :class:`wavis.models.runtime.Graph` with:

* ``input_encoding``: how raw inputs become slots (normalization, then sample s of a batch at
  slots [s·block, s·block + input_width), encoded at the key's top level and default scale);
* ``output_decoding``: which slots hold the outputs (sample s: slots [s·block, s·block + width)),
  and what they mean (logits; the predicted class is their argmax).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from .runtime import Graph

DATA_DIR = Path(__file__).resolve().parent / "data"

# what the service prices per node (its FCU table, API.md "Compute (CKKS)", reads these names)
NODE_OPERATIONS = {"linear": "matmul", "bias": "add-plain", "poly": "poly-eval", "mul": "multiply", "add": "add",
                   "bootstrap": "bootstrap"}


@dataclass
class Model:
    """One catalogue model: its description (``spec``, the JSON file) and its weights.

    Attributes: ``id``, ``graph`` (:class:`Graph`), ``spec`` (the JSON dict)."""

    spec: dict[str, Any]
    graph: Graph

    @property
    def id(self) -> str:
        return self.spec["id"]

    @property
    def block(self) -> int:
        return self.graph.block

    @property
    def depth(self) -> int:
        """Levels one inference consumes."""
        return self.graph.depth

    @property
    def params_required(self) -> dict[str, Any]:
        """The 128-bit CKKS parameters this model is served and measured at (a
        :class:`wavis.ckks.CkksParameters` literal)."""
        return dict(self.spec["params_required"])

    def params_for(self, poly_degree: int | None = None, security_level: str | None = None) -> dict[str, Any]:
        """``params_required`` with another ring degree / security level (e.g. the
        ``testing`` parameters of the test suite), keeping the depth and scale; for a model
        of a bootstrap preset, ``testing`` gives the preset named by the model's
        ``testing_bootstrap_preset`` (ring degree ignored)."""
        p = self.params_required
        if p.get("bootstrap_preset") and security_level == "testing":
            # a bootstrappable model's testing parameters: its testing bootstrap preset
            from ..ckks import CkksParameters  # noqa: PLC0415

            return CkksParameters.bootstrappable(self.spec["testing_bootstrap_preset"]).to_dict()
        if poly_degree is not None:
            p["poly_degree"] = int(poly_degree)
        if security_level is not None:
            p["security_level"] = security_level
        return p

    def galois_steps(self, slots: int | None = None) -> list[int]:
        """Rotation steps (left, in [0, slots)) of the Galois keys an inference needs
        (default: at ``params_required``'s slot count). Raises ShapeError if a block does
        not fit the slots."""
        slots = int(self.params_required["poly_degree"]) // 2 if slots is None else int(slots)
        return self.graph.galois_steps(slots)

    def max_batch(self, slots: int) -> int:
        """Samples one ciphertext of ``slots`` slots carries."""
        self.graph.check_slots(slots)
        return slots // self.block

    def operation_counts(self) -> dict[str, int]:
        """How many of each service operation (matmul, add-plain, poly-eval, multiply, add,
        bootstrap) one inference performs at ``params_required`` (the service prices them with
        its FCU table; bootstraps: those made at params_required's depth)."""
        out: dict[str, int] = {}
        boots = self.graph.bootstraps_needed(int(self.params_required["max_depth"]))
        if boots:
            out["bootstrap"] = boots
        for n in self.graph.nodes:
            if n.op == "bootstrap":
                continue
            names = [NODE_OPERATIONS[n.op]] + (["add-plain"] if n.op == "linear" and n.bias is not None else [])
            for name in names:
                out[name] = out.get(name, 0) + 1
        return out

    # -- encodings -------------------------------------------------------------------------------
    def normalize(self, x) -> np.ndarray:
        """Raw inputs (batch, *input_shape) or (*input_shape) → (batch, input_width) float64,
        normalized as ``input_encoding['normalization']`` says. Raises ShapeError, EncodingError."""
        from ..errors import EncodingError  # noqa: PLC0415

        arr = np.asarray(x, dtype=np.float64)
        width = self.graph.input_width
        if arr.size % width or arr.size == 0:
            raise ShapeError(f"model {self.id} takes inputs of shape {self.spec['input_shape']} "
                             f"({width} values each), got {arr.shape}")
        arr = arr.reshape(-1, width)
        if not np.all(np.isfinite(arr)):
            raise EncodingError("inputs must be finite")
        norm = self.spec["input_encoding"]["normalization"]
        return (arr - float(norm.get("subtract", 0.0))) / float(norm.get("divide_by", 1.0))

    def encode_batch(self, x, slots: int) -> np.ndarray:
        """Raw inputs → the (slots,) float64 slot vector to encrypt (sample s in slots
        [s·block, s·block + input_width)). Raises ShapeError if the batch exceeds slots/block."""
        z = self.normalize(x)
        cap = self.max_batch(slots)
        if z.shape[0] > cap:
            raise ShapeError(f"{z.shape[0]} samples do not fit one ciphertext of {slots} slots "
                             f"(at most {cap} in blocks of {self.block})", batch=int(z.shape[0]), max_batch=cap)
        out = np.zeros(slots)
        for s, row in enumerate(z):
            out[s * self.block: s * self.block + row.size] = row
        return out

    def decode_batch(self, slot_values, batch: int) -> np.ndarray:
        """The decrypted output slots (real parts) → (batch, output_width) logits."""
        v = np.real(np.asarray(slot_values)).reshape(-1)
        w = self.graph.output_width
        return np.stack([v[s * self.block: s * self.block + w] for s in range(batch)])

    def predict_plain(self, x) -> np.ndarray:
        """Plaintext logits (batch, output_width) of raw inputs (the same function as the
        encrypted model, in float64)."""
        return self.graph.forward_plain(self.normalize(x))

    def infer(self, ev, ct, bootstrapper=None):
        """Encrypted inference on a packed ciphertext (see :meth:`Graph.forward_encrypted`)."""
        return self.graph.forward_encrypted(ev, ct, bootstrapper)

    # -- the catalogue entry ------------------------------------------------------------------------
    @cached_property
    def entry(self) -> dict[str, Any]:
        """The catalogue fields (API.md §Models) that the library knows; the service adds
        ``fcu_per_inference`` from its price table."""
        s, m = self.spec, self.spec.get("measured") or {}
        return {
            "id": s["id"], "name": s["name"], "task": s["task"],
            "input_shape": list(s["input_shape"]), "output_shape": list(s["output_shape"]),
            "input_encoding": {**s["input_encoding"], "block": self.block,
                               "max_batch": self.max_batch(int(s["params_required"]["poly_degree"]) // 2)},
            "output_decoding": {**s["output_decoding"], "block": self.block, "width": self.graph.output_width},
            "params_required": self.params_required, "levels_consumed": self.depth,
            "galois_steps_required": self.galois_steps(), "bootstrappable": self.graph.bootstrappable,
            "min_levels": self.graph.min_levels,
            "bootstraps_per_inference": self.graph.bootstraps_needed(int(s["params_required"]["max_depth"])),
            "operations": self.operation_counts(),
            "accuracy_plaintext": m.get("accuracy_plaintext"), "accuracy_encrypted": m.get("accuracy_encrypted"),
            "accuracy_ci95": m.get("accuracy_ci95"), "accuracy_samples": m.get("accuracy_samples"),
            "latency_ms_cpu": m.get("latency_ms_cpu"), "latency_note": m.get("latency_note"),
            "measured_by": m.get("measured_by"), "dataset": s["dataset"], "trained_by": s["trained_by"],
        }


def _load(path: Path) -> Model:
    spec = json.loads(path.read_text())
    with np.load(path.with_name(spec["weights"]), allow_pickle=False) as npz:
        weights = {k: npz[k] for k in npz.files}
    graph = Graph.from_spec(spec["graph"], weights, int(np.prod(spec["input_shape"])), int(spec["block"]))
    return Model(spec, graph)


_CACHE: dict[str, Model] = {}
_LOCK = threading.Lock()


def model_ids() -> list[str]:
    """Ids of the shipped models (sorted)."""
    return sorted(p.stem for p in DATA_DIR.glob("*.json") if not p.stem.startswith("_"))


def catalogue_path(model_id: str) -> Path:
    """The model file ``data/<model_id>.json`` (the measuring script writes its ``measured``)."""
    return DATA_DIR / f"{model_id}.json"


def get(model_id: str) -> Model:
    """The shipped model ``model_id`` (loaded once per process). Raises ParameterError for an
    unknown id (``details['models']`` lists the known ones)."""
    with _LOCK:
        m = _CACHE.get(model_id)
    if m is not None:
        return m
    if model_id not in model_ids():
        raise ParameterError(f"unknown model {model_id!r}", model_id=model_id, models=model_ids())
    m = _load(catalogue_path(model_id))
    with _LOCK:
        return _CACHE.setdefault(model_id, m)


def catalogue() -> list[dict[str, Any]]:
    """Every shipped model's catalogue entry."""
    return [get(i).entry for i in model_ids()]


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A shipped held-out split ``data/<name>.npz`` → (X raw, y)."""
    with np.load(DATA_DIR / f"{name}.npz", allow_pickle=False) as npz:
        return npz["X"], npz["y"]
