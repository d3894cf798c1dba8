"""TFHE keys: the client key (secrets) and the server key (bootstrapping + key-switching keys,
nothing secret), key generation, encryption/decryption, and gate evaluation.

Randomness: ``keygen(preset)`` draws its 32-byte seed from the OS (``secrets.token_bytes``) and
expands it with the native ChaCha20 CSPRNG (RFC 8439; the same keystream as the backend's
``prng``); each encryption draws a fresh OS seed. A ``seed`` makes everything reproducible and
is for tests only.

Every native operation goes through the backend's :class:`~wavis.backend.protocol.LweOps` of a
:class:`~wavis.tfhe.context.TfheContext` (the CPU by default); the gates are
:mod:`wavis.tfhe.gates`.
"""

from __future__ import annotations

import re

import hashlib
import secrets
import threading
from collections.abc import Iterable
from typing import Sequence

import numpy as np

from ..errors import ParameterError, ShapeError
from . import gates as _gates
from .ciphertext import LweCiphertext, as_rows, check_same_key
from .context import TfheContext
from .gates import GATE_ARITY, GATE_BOOTSTRAPS, MU, OPS, bootstraps, normalize_op  # noqa: F401  (public names)
from .params import TfheParameters, get_preset


def _seed_bytes(seed: "bytes | int | None") -> bytes:
    if seed is None:
        return secrets.token_bytes(32)
    if isinstance(seed, int):
        seed = seed.to_bytes(16, "little", signed=True)
    if not isinstance(seed, (bytes, bytearray)):
        raise ParameterError("seed must be bytes or int")
    return hashlib.sha256(b"wavis-tfhe-keygen\0" + bytes(seed)).digest()


def server_key_id(params: TfheParameters, mask_seed: bytes, bsk_bodies: np.ndarray, ksk_bodies: np.ndarray) -> bytes:
    """Fingerprint of a server key: SHA-256 over the preset and every public word, 16 bytes."""
    h = hashlib.sha256(b"wavis-tfhe-server-key\0")
    h.update(params.fingerprint)
    h.update(mask_seed)
    h.update(np.ascontiguousarray(bsk_bodies, dtype="<u4").tobytes())
    h.update(np.ascontiguousarray(ksk_bodies, dtype="<u4").tobytes())
    return h.digest()[:16]


class ClientKey:
    """The secret side: LWE key (n bits), GLWE key (k·N bits). Encrypts and decrypts bits."""

    def __init__(self, params: TfheParameters, lwe_key: np.ndarray, glwe_key: np.ndarray, key_id: bytes,
                 *, enc_seed: bytes | None = None, context: TfheContext | None = None) -> None:
        self.params = params
        self.context = context if context is not None else TfheContext.default(params)
        self.lwe_key = np.ascontiguousarray(lwe_key, dtype=np.uint8)
        self.glwe_key = np.ascontiguousarray(glwe_key, dtype=np.uint8)
        if self.lwe_key.shape != (params.n,) or self.glwe_key.shape != (params.k * params.big_n,):
            raise ShapeError("secret key sizes do not match the preset")
        self.key_id = bytes(key_id)
        self._enc_seed = enc_seed  # deterministic encryption stream (tests) or None (OS)
        self._enc_counter = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClientKey({self.params.name}, key_id={self.key_id.hex()[:8]}…)"

    def _next_seed(self) -> bytes:
        if self._enc_seed is None:
            return secrets.token_bytes(32)
        with self._lock:
            self._enc_counter += 1
            c = self._enc_counter
        return hashlib.sha256(self._enc_seed + c.to_bytes(8, "little")).digest()

    def encrypt(self, bits: "bool | int | Sequence[bool] | np.ndarray") -> LweCiphertext:
        """Encrypt one bit (-> single ciphertext) or a sequence of bits (-> batch).

        Bits are bools or the integers 0/1 (NumPy bool/int arrays too).

        Raises: ParameterError for anything else (2, "x", None, floats, empty input).
        """
        try:
            arr = np.asarray(bits)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"bits must be booleans or 0/1: {exc}") from exc
        if arr.dtype != np.bool_:
            if arr.dtype.kind not in "iu" or arr.size == 0 or not np.all((arr == 0) | (arr == 1)):
                raise ParameterError("bits must be booleans or the integers 0/1")
        elif arr.size == 0:
            raise ParameterError("no bits to encrypt")
        single = arr.ndim == 0
        flat = arr.reshape(-1).astype(bool)
        mus = np.where(flat, np.uint32(MU), np.uint32((1 << 32) - MU)).astype(np.uint32)
        data = self.context.lwe.encrypt(self.lwe_key, mus, self._next_seed())
        return LweCiphertext(self.params, self.key_id, data[0] if single else data)

    def phase(self, ct: LweCiphertext) -> np.ndarray:
        """Signed phases (b - <a, s>) as fractions of the torus in [-1/2, 1/2) (float64)."""
        check_same_key(self.params, self.key_id, ct)
        ph = self.context.lwe.phase(self.lwe_key, ct.rows()).view(np.int32).astype(np.float64) / 2.0 ** 32
        return ph if ct.is_batch else ph[:1]

    def decrypt(self, ct: LweCiphertext) -> "bool | np.ndarray":
        """The bit of a single ciphertext (bool), or of every ciphertext of a batch (bool array)."""
        check_same_key(self.params, self.key_id, ct)
        bits = self.context.lwe.phase(self.lwe_key, ct.rows()).view(np.int32) > 0
        return bits if ct.is_batch else bool(bits[0])


class ServerKey:
    """The evaluation key: bootstrapping key (GGSW encryptions of the LWE key bits under the GLWE
    key) and key-switching key (LWE encryptions of the GLWE key bits under the LWE key). It holds
    nothing secret. It is stored compactly (uniform masks replaced by a public seed, words as
    uint32) and expanded on first use into the Fourier domain (``memory_bytes``).

    Thread-safe: evaluation runs in native code with the GIL released, split across ``threads``
    (default ``WAVIS_THREADS`` or all cores on the CPU backend).

    ``context``: the :class:`TfheContext` (backend) it evaluates on (default: the CPU context of its
    parameters). When the key is resident in that context (``context.load_server_key(sk)``) that
    copy is used; otherwise the key keeps its own expanded copy, built on first use.
    """

    def __init__(self, params: TfheParameters, mask_seed: bytes, bsk_bodies: np.ndarray, ksk_bodies: np.ndarray,
                 key_id: bytes | None = None, *, context: TfheContext | None = None) -> None:
        self.params = params
        self.context = context if context is not None else TfheContext.default(params)
        self.mask_seed = bytes(mask_seed)
        rows = (params.k + 1) * params.pbs_level
        self.bsk_bodies = np.ascontiguousarray(bsk_bodies, dtype=np.uint32).reshape(params.n, rows, params.big_n)
        self.ksk_bodies = np.ascontiguousarray(ksk_bodies, dtype=np.uint32).reshape(
            params.k * params.big_n, params.ks_level)
        if len(self.mask_seed) != 32:
            raise ShapeError("mask seed must be 32 bytes")
        self.key_id = key_id if key_id is not None else server_key_id(params, self.mask_seed, self.bsk_bodies,
                                                                       self.ksk_bodies)
        self._own = None  # expanded copy when the context holds none
        self._own_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerKey({self.params.name}, key_id={self.key_id.hex()[:8]}…)"

    def on(self, context: TfheContext) -> "ServerKey":
        """The same key evaluating on ``context`` (e.g. a GPU context); nothing is copied until used."""
        if context.params != self.params:
            raise ParameterError("the context has other TFHE parameters than the key",
                                 key_preset=self.params.name, context_preset=context.params.name)
        return ServerKey(self.params, self.mask_seed, self.bsk_bodies, self.ksk_bodies, self.key_id, context=context)

    # -- the expanded key ---------------------------------------------------------------------
    def _resident(self):
        handle = self.context.get_key(self.key_id)
        if handle is not None:
            return handle
        if self._own is None:
            with self._own_lock:
                if self._own is None:
                    self._own = self.context.lwe.load_server_key(self.mask_seed, self.bsk_bodies, self.ksk_bodies)
        return self._own

    def expanded(self):
        """The key in the form the backend computes with (:class:`~wavis.backend.protocol.LweServerKey`:
        transform domain, on this key's context's device): the context's resident copy when it
        holds one, else this key's own, expanded now (seconds for the public presets). This key
        keeps a reference to it, so evicting it from the context (``evict_key``) frees the device
        memory only once this key is gone too, and a computation holding this key never expands
        it again."""
        handle = self._resident()
        if self._own is None:
            with self._own_lock:
                if self._own is None:
                    self._own = handle
        return handle

    def prepare(self) -> "ServerKey":
        """Expand the key now (otherwise the first gate does it) and keep it (:meth:`expanded`)."""
        self.expanded()
        return self

    @property
    def memory_bytes(self) -> int:
        """Bytes of the expanded (transform-domain) key, once prepared."""
        return int(self._resident().memory_bytes)

    # -- gates ------------------------------------------------------------------------------------
    def evaluate_batch(self, ops: "Sequence[str] | str", a, b=None, sel=None, *, threads: int = 0) -> LweCiphertext:
        """Evaluate m independent gates in one call (one batched bootstrap in C++).

        ``ops``: m gate names (or one name for all); ``a``, ``b``, ``sel``: batches (m rows) or
        sequences of m single ciphertexts; ``b`` is unused by NOT, ``sel`` only used by MUX
        (MUX(a, b, sel) = a where sel = 1, b where sel = 0). ``threads``: 0 = all cores, else
        1–1024. Returns a batch of m ciphertexts, shape (m, n+1) uint32.

        Raises: KeyMismatchError for a ciphertext of another key or preset; ParameterError for an
        unknown gate, a missing operand, a non-ciphertext operand or a bad ``threads``;
        ShapeError when the operand counts differ from the number of gates.
        """
        p = self.params
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= 1024:
            raise ParameterError("threads must be an int in [0, 1024] (0: all cores)", got=repr(threads)[:32])
        A = as_rows(p, self.key_id, a)
        m = A.shape[0]
        if isinstance(ops, str):
            ops = [ops] * m
        if ops is None or not isinstance(ops, Iterable):
            raise ParameterError("ops must be a gate name or a sequence of gate names")
        names = [normalize_op(o) for o in ops]
        if len(names) != m:
            raise ShapeError("one op per gate needed", ops=len(names), operands=m)
        B = as_rows(p, self.key_id, b) if b is not None else None
        S = as_rows(p, self.key_id, sel) if sel is not None else None
        if B is None:
            if any(GATE_ARITY[o] >= 2 for o in names):
                raise ParameterError("operand b is required by a two-input gate")
            B = A
        if S is None:
            if "MUX" in names:
                raise ParameterError("operand sel is required by MUX")
            S = A
        if B.shape != A.shape or S.shape != A.shape:
            raise ShapeError("operands a, b, sel must have one ciphertext per gate")
        out = _gates.evaluate(self.context.lwe, self._resident(), names, A, B, S, int(threads))
        return LweCiphertext(p, self.key_id, out)

    def gate(self, op: str, a: LweCiphertext, b: LweCiphertext | None = None,
             sel: LweCiphertext | None = None) -> LweCiphertext:
        """One gate on single ciphertexts (same operand twice is fine).

        Raises: ParameterError for an operand the gate does not take (b for NOT, sel for
        anything but MUX) or a missing one; KeyMismatchError for another key's ciphertext.
        """
        name = str(op).upper()
        for nm, x in (("a", a), ("b", b), ("sel", sel)):
            if x is None and nm != "a":
                continue
            if not isinstance(x, LweCiphertext):
                raise ParameterError(f"operand {nm} must be an LweCiphertext, got {type(x).__name__}")
            if len(x) != 1:
                raise ParameterError(f"operand {nm} is a batch of {len(x)} ciphertexts; gate takes single "
                                     "ciphertexts (use evaluate_batch for batches)")
        if b is not None and name == "NOT":
            raise ParameterError("NOT takes one operand (a); b was given")
        if sel is not None and name != "MUX":
            raise ParameterError(f"{name} takes no sel operand")
        res = self.evaluate_batch([op], [a], None if b is None else [b], None if sel is None else [sel], threads=1)
        return res[0]

    def nand(self, a, b): return self.gate("NAND", a, b)
    def and_(self, a, b): return self.gate("AND", a, b)
    def or_(self, a, b): return self.gate("OR", a, b)
    def xor(self, a, b): return self.gate("XOR", a, b)
    def nor(self, a, b): return self.gate("NOR", a, b)
    def xnor(self, a, b): return self.gate("XNOR", a, b)
    def not_(self, a): return self.gate("NOT", a)
    def mux(self, sel, a, b):
        """sel ? a : b."""
        return self.gate("MUX", a, b, sel)

    def evaluate_circuit(self, gates: Sequence[dict], *, threads: int = 0) -> list[LweCiphertext]:
        """Evaluate a gate list whose operands may reference earlier outputs.

        Each gate is ``{"op": "AND", "a": ct | "$k", "b": ct | "$k", "sel": ct | "$k"}`` with
        ``k`` < the gate's own index. Gates are grouped by depth and each level is one
        :meth:`evaluate_batch` call. Returns one ciphertext per gate.
        """
        return evaluate_circuit(self, gates, threads=threads)


_REF = re.compile(r"\$(0|[1-9][0-9]{0,8})")


def parse_reference(x, index: int) -> int | None:
    """The k of an operand reference ``"$k"`` (ASCII digits, no leading zeros, k < ``index``),
    or None when ``x`` is not a string (a ciphertext).

    Raises: ParameterError for any other string or a k that is not an earlier gate.
    """
    if isinstance(x, str):
        m = _REF.fullmatch(x)
        if m is None:
            raise ParameterError(f"gate {index}: operand reference must look like '$k' (k a gate index)",
                                 got=x[:16])
        k = int(m.group(1))
        if k >= index:
            raise ParameterError(f"gate {index}: '$k' must refer to an earlier gate (k < {index})", got=x)
        return k
    return None


_parse_ref = parse_reference


def circuit_levels(gates: Sequence[dict]) -> list[int]:
    """Depth of every gate (0 = depends on no earlier gate); raises ParameterError on bad refs."""
    levels: list[int] = []
    for i, g in enumerate(gates):
        if not isinstance(g, dict) or "op" not in g:
            raise ParameterError(f"gate {i}: expected a dict with 'op'")
        op = normalize_op(g["op"])
        names = ("a", "b", "sel")[:GATE_ARITY[op]]
        extra = sorted(set(g) - {"op", *names})
        if any(g[nm] is not None for nm in extra):  # an operand the gate does not take (or a typo)
            raise ParameterError(f"gate {i}: {op} takes only {', '.join(names)}; got {', '.join(map(str, extra))}")
        lvl = 0
        for nm in names:
            if g.get(nm) is None:
                raise ParameterError(f"gate {i}: {op} needs operand {nm!r}")
            x = g[nm]
            if not isinstance(x, (str, LweCiphertext)):
                raise ParameterError(f"gate {i}: operand {nm!r} must be a ciphertext or a '$k' reference, "
                                     f"got {type(x).__name__}")
            if isinstance(x, LweCiphertext) and len(x) != 1:
                raise ParameterError(f"gate {i}: operand {nm!r} is a batch of {len(x)} ciphertexts")
            k = _parse_ref(x, i)
            if k is not None:
                lvl = max(lvl, levels[k] + 1)
        levels.append(lvl)
    return levels


def evaluate_circuit(sk: ServerKey, gates: Sequence[dict], *, threads: int = 0) -> list[LweCiphertext]:
    levels = circuit_levels(gates)
    results: list[LweCiphertext | None] = [None] * len(gates)
    for lvl in range(max(levels, default=-1) + 1):
        idx = [i for i, l in enumerate(levels) if l == lvl]
        ops, A, B, S = [], [], [], []
        for i in idx:
            g = gates[i]
            op = normalize_op(g["op"])
            ops.append(op)

            def get(nm, _g=g, _op=op):
                x = _g.get(nm)
                if x is None:
                    return None
                return results[int(x[1:])] if isinstance(x, str) else x

            a = get("a")
            A.append(a)
            B.append(get("b") if GATE_ARITY[op] >= 2 else a)
            S.append(get("sel") if op == "MUX" else a)
        out = sk.evaluate_batch(ops, A, B, S, threads=threads)
        for j, i in enumerate(idx):
            results[i] = out[j]
    return results  # type: ignore[return-value]


def keygen(preset: "str | TfheParameters" = "standard_128", seed: "bytes | int | None" = None, *,
           context: TfheContext | None = None) -> tuple[ClientKey, ServerKey]:
    """Generate a key pair on the client. ``seed`` (bytes or int) makes it reproducible — tests
    only; by default 32 bytes from ``secrets.token_bytes`` seed the ChaCha20 CSPRNG. ``context``:
    where the keys compute (default: the CPU context of the preset)."""
    params = get_preset(preset)
    if context is None:
        context = TfheContext.default(params)
    elif context.params != params:
        raise ParameterError("the context has other TFHE parameters than the preset", preset=params.name)
    s = _seed_bytes(seed)
    lwe_key, glwe_key, mask_seed, bsk, ksk = context.lwe.keygen(s)
    sk = ServerKey(params, mask_seed, bsk, ksk, context=context)
    enc_seed = None if seed is None else hashlib.sha256(b"wavis-tfhe-encrypt\0" + s).digest()
    ck = ClientKey(params, lwe_key, glwe_key, sk.key_id, enc_seed=enc_seed, context=context)
    return ck, sk
