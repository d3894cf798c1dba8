"""The encrypted-inference runtime: a model is a small graph of slot-linear maps, slot-wise
polynomials and slot-wise products, evaluated identically on NumPy arrays (the plaintext
model) and on CKKS ciphertexts (``wavis.ckks``).

Packing (one ciphertext carries a batch). The slots are cut into blocks of ``block`` slots
(a power of two ≥ every layer's width); sample s of a batch lives in slots
[s·block, s·block + width). Every ``linear`` node is a *block-local* matrix W (rows × cols,
both ≤ block): y[s·block + i] = Σ_j W[i, j]·x[s·block + j]. Its generalized diagonals
d_k[s·block + i] = W[i, i + k] (0 ≤ i + k < cols) never reach across a block, so the slots ×
slots block-diagonal matrix I_S ⊗ W has only rows + cols − 1 non-zero diagonals — the same
count as one sample — and a whole ciphertext of slots/block samples costs what one sample
costs (the diagonal method of Halevi–Shoup, CRYPTO 2014 §4, with baby-step/giant-step
rotations, CRYPTO 2018 §4–5: :class:`wavis.ckks.linalg.LinearTransform`). Slots a layer does
not write may hold anything (e.g. p(0) after a polynomial); the next ``linear`` node reads
only its ``cols`` slots of each block, and the output decoding names the slots that count.

Nodes (``graph`` in a model file, evaluated in order; each names its inputs and output):

* ``{"op": "linear", "in": a, "out": b, "weight": W, "bias": c}`` — b = W·a + c (one level);
  ``weight``/``bias`` name arrays of the model's NPZ file (bias optional, length rows).
* ``{"op": "poly", "in": a, "out": b, "coeffs": [c0, c1, …]}`` — b = Σ c_k·a^k slot-wise, power
  basis (⌈log2(d+1)⌉ levels, :func:`wavis.ckks.polynomial.evaluate_polynomial`).
* ``{"op": "mul", "in": [a, b], "out": c}`` — c = a ⊙ b (one level; operands at different levels
  meet at the lower one, :meth:`wavis.ckks.Evaluator.multiply`).
* ``{"op": "add", "in": [a, b], "out": c}`` — c = a + b (no level unless the levels differ).
* ``{"op": "bootstrap", "in": a, "out": b, "input_range": R, "min_level": m}`` — a bootstrap
  *point*: the identity on plaintexts; under encryption, when a's level is below m (the levels
  the nodes up to the next bootstrap point consume) the ciphertext is bootstrapped
  (:class:`wavis.ckks.bootstrap.Bootstrapper`, declared bound |a| ≤ R, back at the key's
  max_level), else passed on. A key with enough levels for the whole graph never bootstraps;
  a key of a bootstrap preset with fewer levels bootstraps exactly where it runs out.

The input is named ``x``; the model's output is the ``out`` of the last node.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import EncodingError, ParameterError, ShapeError

OPS = ("linear", "poly", "mul", "add", "bootstrap")


def _poly_depth(degree: int) -> int:
    return max(1, math.ceil(math.log2(degree + 1)))


def plan_of(offsets: list[int], period: int, b: int) -> tuple[set[int], list[int]]:
    """The baby-step/giant-step plan :class:`wavis.ckks.linalg.LinearTransform` makes for these
    non-zero diagonal offsets with b baby steps, without building it: (baby rotation steps
    j·stride used, giant offsets t of the non-empty groups)."""
    ks = sorted({k % period for k in offsets})
    centred = sorted((k if k <= period // 2 else k - period) for k in ks)
    stride = 0
    for k in centred:
        stride = math.gcd(stride, abs(k))
    stride = stride or 1
    m_min = centred[0] // stride
    span = centred[-1] // stride - m_min + 1
    present, used = set(ks), set()
    babies: set[int] = set()
    giants: list[int] = []
    for g in range(math.ceil(span / b)):
        t = m_min * stride + g * b * stride
        any_term = False
        for j in range(b):
            k = (t + j * stride) % period
            if k in present and k not in used:
                used.add(k)
                babies.add(j * stride)
                any_term = True
        if any_term:
            giants.append(t)
    return babies, giants


def rotations_of_plan(offsets: list[int], period: int, b: int) -> int:
    """Rotations that plan makes: non-zero baby steps plus giant steps with a non-zero offset."""
    babies, giants = plan_of(offsets, period, b)
    return len(babies - {0}) + sum(1 for t in giants if t % period)


def best_baby_steps(offsets: list[int], period: int) -> int:
    """The baby-step count b that minimises the rotations of the plan (clustered offsets, as
    in the attention layouts, often need far fewer than with b = ⌈√span⌉)."""
    ks = sorted({(k if k % period <= period // 2 else k % period - period) for k in offsets})
    span = ks[-1] - ks[0] + 1
    limit = min(span, 4 * (math.isqrt(span) + 1))
    return min(range(1, limit + 1), key=lambda b: (rotations_of_plan(offsets, period, b), b))


@dataclass
class Node:
    op: str
    inputs: tuple[str, ...]
    out: str
    weight: np.ndarray | None = None  # linear: (rows, cols)
    bias: np.ndarray | None = None  # linear: (rows,)
    coeffs: np.ndarray | None = None  # poly: lowest degree first
    input_range: float = 1.0  # bootstrap: declared bound on |values|
    min_level: int = 0  # bootstrap: bootstrap when the level is below this

    @property
    def depth(self) -> int:
        if self.op == "linear":
            return 1
        if self.op == "poly":
            nz = np.nonzero(self.coeffs)[0]
            return _poly_depth(int(nz[-1]) if nz.size else 1)
        return 1 if self.op == "mul" else 0


@dataclass
class Graph:
    """A validated model graph with its weights (float64 arrays)."""

    nodes: list[Node]
    input_width: int
    output_width: int
    block: int
    _transforms: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: list[Mapping[str, Any]], weights: Mapping[str, np.ndarray], input_width: int,
                  block: int) -> "Graph":
        """Build and check a graph. Raises ParameterError (unknown op or name, a width that
        exceeds the block), ShapeError (weight shapes that do not chain), EncodingError
        (non-finite weights)."""
        if block < 1 or block & (block - 1):
            raise ParameterError(f"block must be a power of two, got {block}")
        widths = {"x": int(input_width)}
        nodes: list[Node] = []
        for i, raw in enumerate(spec):
            op = raw.get("op")
            if op not in OPS:
                raise ParameterError(f"node {i}: unknown op {op!r} (one of {OPS})")
            ins = raw["in"] if isinstance(raw["in"], list) else [raw["in"]]
            for name in ins:
                if name not in widths:
                    raise ParameterError(f"node {i}: input {name!r} is not defined before it")
            node = Node(op, tuple(ins), str(raw["out"]))
            if op == "linear":
                w = np.asarray(weights[raw["weight"]], dtype=np.float64)
                if w.ndim != 2 or w.shape[1] != widths[ins[0]] or w.shape[0] > block:
                    raise ShapeError(f"node {i}: weight {raw['weight']} has shape {w.shape}; needs "
                                     f"(≤ {block}, {widths[ins[0]]})")
                node.weight = w
                if raw.get("bias") is not None:
                    node.bias = np.asarray(weights[raw["bias"]], dtype=np.float64).reshape(-1)
                    if node.bias.shape != (w.shape[0],):
                        raise ShapeError(f"node {i}: bias has {node.bias.size} values for {w.shape[0]} rows")
                width = w.shape[0]
            elif op == "poly":
                node.coeffs = np.asarray(raw["coeffs"], dtype=np.float64).reshape(-1)
                if not 1 <= node.coeffs.size <= 65:
                    raise ParameterError(f"node {i}: 1..65 polynomial coefficients, got {node.coeffs.size}")
                width = widths[ins[0]]
            elif op == "bootstrap":
                node.input_range = float(raw.get("input_range", 1.0))
                node.min_level = int(raw.get("min_level", 1))
                if not (0 < node.input_range <= 1024 and node.min_level >= 1):
                    raise ParameterError(f"node {i}: bootstrap needs 0 < input_range ≤ 1024 and min_level ≥ 1")
                width = widths[ins[0]]
            else:
                if len(ins) != 2:
                    raise ParameterError(f"node {i}: {op} takes two inputs")
                width = min(widths[ins[0]], widths[ins[1]])
            for arr in (node.weight, node.bias, node.coeffs):
                if arr is not None and not np.all(np.isfinite(arr)):
                    raise EncodingError(f"node {i}: non-finite weights")
            widths[node.out] = width
            nodes.append(node)
        if not nodes:
            raise ParameterError("a model needs at least one node")
        if max(widths.values()) > block:
            raise ParameterError(f"a layer is wider ({max(widths.values())}) than the block ({block})")
        return cls(nodes, int(input_width), widths[nodes[-1].out], block)

    # -- static properties ---------------------------------------------------------------------
    @property
    def bootstrappable(self) -> bool:
        return any(n.op == "bootstrap" for n in self.nodes)

    @property
    def min_levels(self) -> int:
        """Levels a key needs at least: the whole depth without bootstrap points, else the
        deepest stretch between them (and the first one's ``min_level``)."""
        if not self.bootstrappable:
            return self.depth
        return max(self.depth_before_first_bootstrap, *(n.min_level for n in self.nodes if n.op == "bootstrap"))

    @property
    def depth_before_first_bootstrap(self) -> int:
        level = {"x": 0}
        for n in self.nodes:
            if n.op == "bootstrap":
                return level[n.inputs[0]]
            level[n.out] = max(level[i] for i in n.inputs) + n.depth
        return level[self.nodes[-1].out]

    def bootstraps_needed(self, max_level: int) -> int:
        """Bootstraps one inference makes with a key of ``max_level`` levels (input at the top)."""
        level = {"x": max_level}
        count = 0
        for n in self.nodes:
            if n.op == "bootstrap":
                lv = level[n.inputs[0]]
                if lv < n.min_level:
                    count, lv = count + 1, max_level
                level[n.out] = lv
            else:
                level[n.out] = min(level[i] for i in n.inputs) - n.depth
        return count

    @property
    def depth(self) -> int:
        """Levels consumed: the longest path, counting each node's levels (an ``add`` of
        operands at different levels costs the higher one nothing beyond the lower's level)."""
        level = {"x": 0}
        for n in self.nodes:
            level[n.out] = max(level[i] for i in n.inputs) + n.depth
        return level[self.nodes[-1].out]

    def local_diagonals(self, node: Node) -> dict[int, np.ndarray]:
        """The non-zero generalized diagonals of one block: {offset k: (block,) float64} with
        d_k[i] = W[i, i + k] (0 where i + k is outside W)."""
        rows, cols = node.weight.shape
        out = {}
        i = np.arange(rows)
        for k in range(-(rows - 1), cols):
            j = i + k
            ok = (j >= 0) & (j < cols)
            if not ok.any():
                continue
            local = np.zeros(self.block)
            local[i[ok]] = node.weight[i[ok], j[ok]]
            if local.any():
                out[k] = local
        return out

    def diagonals(self, node: Node, slots: int) -> dict[int, np.ndarray]:
        """The non-zero generalized diagonals of I_{slots/block} ⊗ W (see the module docstring):
        {offset k: (slots,) float64}."""
        reps = slots // self.block
        return {k: np.tile(d, reps) for k, d in self.local_diagonals(node).items()}

    MAX_CACHED_PARAMS = 4  # parameter sets whose encoded diagonals stay cached (memory bound)

    def transform(self, node_index: int, slots: int, fingerprint: str = ""):
        """The :class:`wavis.ckks.linalg.LinearTransform` of a linear node at ``slots``; cached
        per parameter set (``fingerprint``: its encoded diagonals belong to that modulus chain),
        for at most :attr:`MAX_CACHED_PARAMS` parameter sets (least recently used dropped)."""
        from ..ckks.linalg import LinearTransform  # noqa: PLC0415

        with self._lock:
            per = self._transforms.pop(fingerprint, None)
            if per is None:
                per = {}
            self._transforms[fingerprint] = per  # most recent last
            while len(self._transforms) > self.MAX_CACHED_PARAMS:
                self._transforms.pop(next(iter(self._transforms)))
            lt = per.get((node_index, slots))
        if lt is None:
            node = self.nodes[node_index]
            diags = self.diagonals(node, slots) or {0: np.zeros(slots)}
            lt = LinearTransform(diags, slots=slots, baby=best_baby_steps(list(diags), slots))
            if self.compact_cache(slots):
                lt.NTT_CACHE_BYTES = 0  # keep rounded coefficients, lift + NTT at each use
            with self._lock:
                lt = per.setdefault((node_index, slots), lt)
        return lt

    COMPACT_ABOVE = 1 << 21  # Σ diagonals × N above which encoded diagonals are cached compactly

    def diagonal_count(self, slots: int) -> int:
        """Non-zero diagonals of all linear nodes at ``slots`` (plaintexts an inference encodes)."""
        return sum(len(self.local_diagonals(n)) for n in self.nodes if n.op == "linear")

    def compact_cache(self, slots: int) -> bool:
        """Whether the encoded diagonals are cached as coefficients (N int64 each) instead of
        NTT-form plaintexts ((level+1)·N words each): when Σ diagonals × N exceeds
        :attr:`COMPACT_ABOVE` (a large model then costs a lift and an NTT per diagonal and use,
        instead of e.g. 0.5 GB per parameter set for the transformer at N = 4096)."""
        return self.diagonal_count(slots) * 2 * slots > self.COMPACT_ABOVE

    def galois_steps(self, slots: int) -> list[int]:
        """Rotation steps (left, normalised to [0, slots)) the encrypted graph uses at ``slots``."""
        self.check_slots(slots)
        steps: set[int] = set()
        for n in self.nodes:
            if n.op == "linear":
                offsets = list(self.local_diagonals(n)) or [0]
                babies, giants = plan_of(offsets, slots, best_baby_steps(offsets, slots))
                steps |= {st % slots for st in babies} | {t % slots for t in giants}
        steps.discard(0)
        return sorted(steps)

    def check_slots(self, slots: int) -> None:
        if slots < self.block or slots % self.block:
            raise ShapeError(f"this model packs samples in blocks of {self.block} slots; a key with "
                             f"{slots} slots cannot hold one", slots=slots, block=self.block)

    # -- evaluation ------------------------------------------------------------------------------
    def forward_plain(self, x: np.ndarray) -> np.ndarray:
        """The plaintext model: x (batch, input_width) float64 → (batch, output_width)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_width:
            raise ShapeError(f"inputs must have shape (batch, {self.input_width}), got {x.shape}")
        vals: dict[str, np.ndarray] = {"x": x}
        for n in self.nodes:
            a = vals[n.inputs[0]]
            if n.op == "linear":
                y = a[:, : n.weight.shape[1]] @ n.weight.T
                if n.bias is not None:
                    y = y + n.bias
            elif n.op == "poly":
                y = np.polynomial.polynomial.polyval(a, n.coeffs)
            elif n.op == "bootstrap":
                y = a
            else:
                b = vals[n.inputs[1]]
                w = min(a.shape[1], b.shape[1])
                y = a[:, :w] * b[:, :w] if n.op == "mul" else a[:, :w] + b[:, :w]
            vals[n.out] = y
        return vals[self.nodes[-1].out]

    def forward_encrypted(self, ev, ct, bootstrapper=None):
        """The same graph on a ciphertext packed as in the module docstring (any number of
        samples up to slots/block). Returns the output ciphertext (``depth`` levels lower, or
        lower than the last bootstrap).

        ``bootstrapper(input_range)`` → a :class:`wavis.ckks.bootstrap.Bootstrapper` for the
        bootstrap points (default: one built and cached per evaluator). A ciphertext too low
        for the graph and keys without a bootstrap preset → DepthExhaustedError.

        Raises: ShapeError (slots not a multiple of the block), DepthExhaustedError,
        MissingRotationKeyError, MissingKeyError (no relinearization or bootstrapping key)."""
        from ..ckks.polynomial import evaluate_polynomial  # noqa: PLC0415
        from ..errors import DepthExhaustedError  # noqa: PLC0415

        slots = int(ev.params.slot_count)
        self.check_slots(slots)
        can_boot = self.bootstrappable and ev.params.bootstrap_preset is not None
        need = self.min_levels if can_boot else self.depth
        if ct.level < need:
            raise DepthExhaustedError(
                f"this model consumes {self.depth} levels" + (
                    f" ({need} between bootstraps)" if can_boot else "") + f"; the ciphertext has {ct.level}",
                needed=need, level=int(ct.level))
        if bootstrapper is None:
            bootstrapper = lambda r: default_bootstrapper(ev, r)  # noqa: E731
        reps = slots // self.block
        vals = {"x": ct}
        rotations: dict[str, dict] = {}  # baby-step rotations of each value, shared by its transforms
        for i, n in enumerate(self.nodes):
            a = vals[n.inputs[0]]
            if n.op == "linear":
                y = self.transform(i, slots, ev.params.fingerprint).apply(
                    ev, a, rotations=rotations.setdefault(n.inputs[0], {}))
                if n.bias is not None:
                    local = np.zeros(self.block)
                    local[: n.bias.size] = n.bias
                    y = ev.add_plain(y, np.tile(local, reps))
            elif n.op == "poly":
                y = evaluate_polynomial(ev, a, n.coeffs, basis="power")
            elif n.op == "mul":
                y = ev.multiply(a, vals[n.inputs[1]])
            elif n.op == "bootstrap":
                y = a
                if a.level < n.min_level:
                    if not can_boot:
                        raise DepthExhaustedError(
                            f"this model consumes {self.depth} levels; keys without a bootstrap preset need "
                            f"all of them, the ciphertext has {ct.level}", needed=self.depth, level=int(ct.level))
                    y = bootstrapper(n.input_range).bootstrap(a)
            else:
                y = ev.add(a, vals[n.inputs[1]])
            vals[n.out] = y
        return vals[self.nodes[-1].out]


_BOOTSTRAPPERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_BOOT_LOCK = threading.Lock()


def default_bootstrapper(ev, input_range: float):
    """A full-packing :class:`wavis.ckks.bootstrap.Bootstrapper` of this evaluator for
    ``input_range``, cached with the evaluator (its encoded DFT diagonals are reused)."""
    from ..ckks.bootstrap import Bootstrapper  # noqa: PLC0415

    with _BOOT_LOCK:
        per = _BOOTSTRAPPERS.setdefault(ev, {})
        bs = per.get(input_range)
        if bs is None:
            bs = per[input_range] = Bootstrapper(ev.params, ev.eval_keys, input_range=input_range, evaluator=ev)
    return bs
