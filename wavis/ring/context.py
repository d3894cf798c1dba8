"""Contexts: parameters × backend (the models are SEAL's ``SEALContext`` and Lattigo's
``Parameters`` + ``Evaluator``).

A :class:`Context` owns, for one parameter set on one backend (one device):

* the backend, chosen explicitly by whoever builds the context (the default contexts of
  :meth:`Context.default` use the CPU backend, the oracle; a GPU is used only when a context is
  built on it, e.g. by the service from its settings);
* the precomputed constants, derived once and in one place (:meth:`Context.constant`), for the
  CPU and GPU alike (the schemes' contexts add their own: ring tables, key-switching plans, …);
* the resident keys (:class:`KeyStore`: ``put``/``get``/``evict``), stored on the context's
  device in the form the backend computes with (CKKS evaluation keys as device arrays, TFHE server
  keys expanded into the transform domain). The eviction policy (bytes-bounded LRU) belongs to the
  service engine on top of this API; this layer only accounts the bytes.

Scheme contexts: :class:`wavis.ckks.CkksContext`, :class:`wavis.tfhe.TfheContext`.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable, TypeVar

__all__ = ["Context", "KeyStore"]

T = TypeVar("T")


class KeyStore:
    """Keys resident on one context's device, by id (a key tag / key id, bytes or str).

    Thread-safe. ``nbytes`` is the sum of the sizes given to :meth:`put` (device bytes of the
    resident forms). Eviction is explicit (:meth:`evict`); a caller that wants a bound (the
    service engine's LRU) builds it on :meth:`put`/:meth:`evict`/:attr:`nbytes`.
    """

    def __init__(self) -> None:
        self._keys: dict[Hashable, tuple[Any, int]] = {}
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    def put(self, key_id: Hashable, key: Any, nbytes: int = 0) -> Any:
        """Store ``key`` (already in its resident form) under ``key_id``, replacing any other; returns it."""
        with self._lock:
            self._keys[key_id] = (key, int(nbytes))
        return key

    def get(self, key_id: Hashable) -> Any | None:
        """The resident key ``key_id``, or None."""
        with self._lock:
            v = self._keys.get(key_id)
        return None if v is None else v[0]

    def get_or_put(self, key_id: Hashable, make: Callable[[], tuple[T, int]]) -> T:
        """The resident key ``key_id``; if absent, ``make()`` → (resident key, bytes) is stored
        first (once, even when several threads ask at the same time)."""
        key = self.get(key_id)
        if key is not None:
            return key
        with self._lock:
            lock = self._loading.setdefault(key_id, threading.Lock())
        with lock:
            key = self.get(key_id)
            if key is None:
                key, nbytes = make()
                self.put(key_id, key, nbytes)
        with self._lock:
            self._loading.pop(key_id, None)
        return key

    def evict(self, key_id: Hashable, expected: Any = None) -> bool:
        """Drop ``key_id`` (its device memory is freed when no computation still holds it);
        returns whether it was dropped. With ``expected``, only when the resident key is that
        object (a caller evicting the copy it put does not drop a newer one put since)."""
        with self._lock:
            v = self._keys.get(key_id)
            if v is None or (expected is not None and v[0] is not expected):
                return False
            del self._keys[key_id]
            return True

    def nbytes_of(self, key_id: Hashable) -> int:
        """Bytes accounted for ``key_id`` (0 when not resident)."""
        with self._lock:
            v = self._keys.get(key_id)
        return 0 if v is None else v[1]

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def __contains__(self, key_id: Hashable) -> bool:
        with self._lock:
            return key_id in self._keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def ids(self) -> list[Hashable]:
        with self._lock:
            return list(self._keys)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._keys.values())


class Context:
    """Parameters × backend: the device, the derived constants, the resident keys.

    Args:
        params: a scheme's parameter object (hashable, immutable).
        backend: a :class:`wavis.backend.protocol.Backend` (explicit; see :meth:`default`).
    """

    def __init__(self, params: Any, backend: Any) -> None:
        self.params = params
        self.backend = backend
        self.keys = KeyStore()
        self._constants: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> Any:
        """The backend's device (``"cpu"`` on the CPU backend)."""
        return self.backend.device

    def constant(self, name: Hashable, make: Callable[[], T]) -> T:
        """The derived constant ``name``, computed by ``make()`` on first use and kept."""
        with self._lock:
            if name in self._constants:
                return self._constants[name]
        value = make()
        with self._lock:
            return self._constants.setdefault(name, value)

    # -- key residency ------------------------------------------------------------------------
    def put_key(self, key_id: Hashable, key: Any, nbytes: int = 0) -> Any:
        return self.keys.put(key_id, key, nbytes)

    def get_key(self, key_id: Hashable) -> Any | None:
        return self.keys.get(key_id)

    def evict_key(self, key_id: Hashable) -> bool:
        return self.keys.evict(key_id)

    # -- default contexts ------------------------------------------------------------------
    _defaults: dict[tuple[type, Hashable, int], "Context"] = {}
    _defaults_lock = threading.Lock()

    @classmethod
    def default(cls, params: Any, backend: Any = None) -> "Context":
        """The process-wide context of ``params`` on ``backend`` (default: the CPU backend, the
        oracle); what the constructors called with parameters instead of a context use. One per
        (context class, parameters, backend object)."""
        from ..backend import host

        backend = host() if backend is None else backend
        key = (cls, params, id(backend))
        with Context._defaults_lock:
            ctx = Context._defaults.get(key)
        if ctx is None or ctx.backend is not backend:
            ctx = cls(params, backend)
            with Context._defaults_lock:
                ctx = Context._defaults.setdefault(key, ctx)
        return ctx

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.params, 'name', type(self.params).__name__)}, {self.backend!r})"
