"""LWE ciphertexts of bits (TFHE gate-bootstrapping encoding: true = +1/8, false = -1/8)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Sequence

import numpy as np

from ..errors import KeyMismatchError, ParameterError, ShapeError
from .params import TfheParameters


class LweCiphertext:
    """One LWE ciphertext (shape ``(n+1,)``) or a batch of them (shape ``(m, n+1)``), uint32
    words ``a_0..a_{n-1}, b`` on the torus Z/2^32, under the key identified by ``key_id``
    (the 16-byte fingerprint of the server key; the same for every ciphertext of one key pair).

    Indexing a batch gives single ciphertexts; ``len()`` is the batch size (1 for a single one).
    """

    __slots__ = ("params", "key_id", "data")

    def __init__(self, params: TfheParameters, key_id: bytes, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data, dtype=np.uint32)
        if data.ndim not in (1, 2) or data.shape[-1] != params.n + 1:
            raise ShapeError(f"LWE ciphertext data must have shape (..., {params.n + 1})", shape=list(data.shape))
        self.params = params
        self.key_id = bytes(key_id)
        self.data = data

    @property
    def is_batch(self) -> bool:
        return self.data.ndim == 2

    def __len__(self) -> int:
        return self.data.shape[0] if self.is_batch else 1

    def __getitem__(self, i):
        if not self.is_batch:
            raise TypeError("a single ciphertext is not indexable")
        return LweCiphertext(self.params, self.key_id, self.data[i])

    def __iter__(self):
        if not self.is_batch:
            yield self
            return
        for i in range(len(self)):
            yield self[i]

    def rows(self) -> np.ndarray:
        """The words as a 2-D array (m, n+1) (a single ciphertext gives one row)."""
        return self.data.reshape(-1, self.params.n + 1)

    def __repr__(self) -> str:
        kind = f"batch of {len(self)}" if self.is_batch else "single"
        return f"LweCiphertext({self.params.name}, {kind}, key_id={self.key_id.hex()[:8]}…)"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LweCiphertext) and other.params == self.params and other.key_id == self.key_id
                and np.array_equal(other.data, self.data))

    __hash__ = None  # type: ignore[assignment]

    @staticmethod
    def stack(cts: Sequence["LweCiphertext"]) -> "LweCiphertext":
        """Concatenate single ciphertexts and batches (same key) into one batch."""
        cts = list(cts)
        if not cts:
            raise ShapeError("cannot stack zero ciphertexts")
        first = cts[0]
        for c in cts[1:]:
            check_same_key(first.params, first.key_id, c)
        return LweCiphertext(first.params, first.key_id, np.concatenate([c.rows() for c in cts], axis=0))


def check_same_key(params: TfheParameters, key_id: bytes, ct: object) -> None:
    if not isinstance(ct, LweCiphertext):
        raise ParameterError(f"expected an LweCiphertext, got {type(ct).__name__}")
    if ct.params != params:
        raise KeyMismatchError("ciphertext belongs to another TFHE preset",
                               expected=params.name, got=ct.params.name)
    if ct.key_id != key_id:
        raise KeyMismatchError("ciphertext belongs to another TFHE key",
                               expected=key_id.hex(), got=ct.key_id.hex())


def as_rows(params: TfheParameters, key_id: bytes, cts: "LweCiphertext | Iterable[LweCiphertext]") -> np.ndarray:
    """(m, n+1) uint32 rows of a batch or of a sequence of ciphertexts, key-checked."""
    if isinstance(cts, LweCiphertext):
        check_same_key(params, key_id, cts)
        return cts.rows()
    if cts is None or isinstance(cts, (str, bytes, bytearray)) or not isinstance(cts, Iterable):
        raise ParameterError(f"expected an LweCiphertext or a sequence of them, got {type(cts).__name__}")
    rows = []
    for c in cts:
        check_same_key(params, key_id, c)
        rows.append(c.rows())
    if not rows:
        return np.zeros((0, params.n + 1), dtype=np.uint32)
    return np.concatenate(rows, axis=0)
