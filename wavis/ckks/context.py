"""The CKKS context: parameters × backend (:class:`wavis.ring.context.Context`).

It owns the backend's :class:`~wavis.backend.protocol.RingOps` for every prime of the scheme
(ciphertext chain and special primes: ``ring``), the constants derived from the parameters once
(special-prime indices, ``P^-1 mod q_i``, the key-switching plan of every level), and the keys
resident on its device (:meth:`CkksContext.load_keys` / ``evict_key``).

Every CKKS object takes a context; the constructors that take ``params`` (and optionally a
``backend``) look one up with :func:`context_of`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any

from ..errors import KeyMismatchError, ParameterError
from ..ring.context import Context
from .params import CkksParameters

__all__ = ["CkksContext", "context_of"]

_FORM_LOCK = threading.Lock()  # Galois keys converted to the evaluation form (CkksContext.to_device)


class CkksContext(Context):
    """CKKS parameters × backend.

    Args:
        params: validated :class:`CkksParameters`.
        backend: a :class:`wavis.backend.protocol.Backend` (explicit; ``CkksContext.default(params)``
            is the CPU's).

    Attributes:
        ring: the :class:`RingOps` over ``params.all_moduli`` (q_0..q_L then p_0..p_{k-1}).
        special_index: prime indices of the special primes P.
        p_inv: ``P^-1 mod q_i`` for every ciphertext prime.
        p_mod: ``P mod q_i`` for every ciphertext prime (:meth:`p_mod_level` slices it).
    """

    def __init__(self, params: CkksParameters, backend: Any) -> None:
        super().__init__(params, backend)
        self.ring = backend.ring_context(params.poly_degree, params.all_moduli)
        self.special_index: list[int] = params.special_index()
        big_p = math.prod(params.special_moduli)
        self.p_inv: list[int] = [pow(big_p % q, -1, q) for q in params.moduli]
        self.p_mod: list[int] = [big_p % q for q in params.moduli]

    def ks_plan(self, level: int) -> tuple[list[int], list[tuple[int, int]]]:
        """(q indices 0..level, the key-switching digits truncated to the level), derived once."""
        def make():
            digits = [(s, min(e, level + 1)) for s, e in self.params.digits if s <= level]
            return list(range(level + 1)), digits

        return self.constant(("ks_plan", int(level)), make)

    # -- keys on the device ----------------------------------------------------------------
    def to_device(self, obj):
        """A CKKS object (ciphertext, keys, EvaluationKeys) whose arrays are this context's device
        arrays, with every Galois key in its evaluation form (:attr:`GaloisKey.permuted`:
        aut_g^{-1} of each key polynomial, what rotations compute with; made once per key).

        On the CPU backend the object itself is returned, its Galois keys converted in place
        (``data`` rebound to the permuted array, ``permuted`` set), so the keys are never held
        twice: evaluators and bootstrappers built from the same keys share them, and the
        canonical arrays are freed unless the caller holds them elsewhere. Serialization writes
        the canonical form either way (the wire format and key tags do not change); ``to_host``
        returns canonical copies. On a device backend the result is a copy (the caller's object
        is not changed)."""
        if self.backend.name == "cpu":
            self._to_evaluation_form(obj)
            return obj
        dev = _map_arrays(obj, self.ring.asarray)
        self._to_evaluation_form(dev)
        return dev

    def to_host(self, obj):
        """A copy of a CKKS object whose arrays are NumPy arrays (the object itself on the CPU
        when it holds no Galois key in the evaluation form), Galois keys in the canonical form
        (as generated and serialized)."""
        from .keyswitch import galois_key_form
        from .structures import EvaluationKeys, GaloisKey

        if isinstance(obj, GaloisKey) and obj.permuted:
            data = galois_key_form(self.ring, self.ring.asarray(obj.data), obj.galois_elt, False)
            return dataclasses.replace(obj, data=self.ring.to_numpy(data), permuted=False)
        if isinstance(obj, EvaluationKeys) and any(k.permuted for k in obj.galois_keys.values()):
            rest = self.to_host(dataclasses.replace(obj, galois_keys={}))
            return dataclasses.replace(rest, galois_keys={g: self.to_host(k) for g, k in obj.galois_keys.items()})
        if self.backend.name == "cpu":
            return obj
        return _map_arrays(obj, self.ring.to_numpy)

    def _to_evaluation_form(self, obj) -> None:
        """Convert the Galois keys of ``obj`` (a GaloisKey or EvaluationKeys; anything else is left
        alone) to the evaluation form in place, one key at a time (the transient is one key)."""
        from .keyswitch import galois_key_form
        from .structures import EvaluationKeys, GaloisKey

        if isinstance(obj, GaloisKey):
            keys = [obj]
        elif isinstance(obj, EvaluationKeys):
            keys = list(obj.galois_keys.values())
        else:
            return
        for key in keys:
            if key.permuted:
                continue
            with _FORM_LOCK:  # two evaluators converting the same key at once: once
                if not key.permuted:
                    key.data = galois_key_form(self.ring, self.ring.asarray(key.data), key.galois_elt, True)
                    key.permuted = True

    def load_keys(self, key_id: Any, eval_keys) -> Any:
        """Make ``eval_keys`` (:class:`EvaluationKeys`) resident on this context's device under
        ``key_id`` (replacing what was there) and return the resident copy.

        Raises: KeyMismatchError for keys of other parameters."""
        if eval_keys.params_fingerprint != self.params.fingerprint:
            raise KeyMismatchError("evaluation keys belong to other parameters")
        resident = self.to_device(eval_keys)
        return self.put_key(key_id, resident, _nbytes(resident))


def _nbytes(obj) -> int:
    total = 0

    def count(a):
        nonlocal total
        total += int(a.nbytes)
        return a

    _map_arrays(obj, count)
    return total


def _map_arrays(obj, fn):
    """Copy of a CKKS dataclass (Ciphertext, keys, EvaluationKeys) with ``fn`` applied to every
    ``data`` array (nested dataclasses and dicts of them included)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.name == "data" and v is not None:
                changes[f.name] = fn(v)
            elif isinstance(v, dict):
                changes[f.name] = {k: _map_arrays(x, fn) for k, x in v.items()}
            elif dataclasses.is_dataclass(v):
                changes[f.name] = _map_arrays(v, fn)
        return dataclasses.replace(obj, **changes)
    return obj


def context_of(params_or_context: "CkksParameters | CkksContext", backend: Any = None) -> CkksContext:
    """The context a CKKS constructor uses: the given :class:`CkksContext`; else, for parameters,
    :meth:`CkksContext.default` (the CPU's, or that of ``backend``).

    Raises: ParameterError when a context and a different backend are both given."""
    if isinstance(params_or_context, CkksContext):
        if backend is not None and backend is not params_or_context.backend:
            raise ParameterError("a context and a different backend were both given; pass one of them",
                                 context_backend=params_or_context.backend.name, backend=backend.name)
        return params_or_context
    return CkksContext.default(params_or_context, backend)
