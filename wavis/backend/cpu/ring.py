"""RingOps of the CPU backend: the C++ ``RnsContext`` (NTT tables, RNS constants, fused key
switching) plus the operations it has no kernel for, delegated explicitly to
:mod:`wavis.backend.reference`.

Native (C++, GIL released, ``WAVIS_THREADS`` threads): ``asarray``, ``to_numpy``, ``zeros``,
``ntt``, ``intt``, the element-wise ops, ``from_signed``, ``base_convert``, ``mod_down``,
``rescale``, ``crt_compose``, ``automorphism``, ``ks_mod_up``, ``ks_inner``, ``key_switch_ext``,
``mod_down_ntt``, ``diag_mac`` (which takes batches). Here: ``empty`` and the ``*_batch`` variants (loops over
the native single-item kernels, :mod:`wavis.backend.reference`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from wavis import _core

from .. import reference

__all__ = ["CpuRingContext"]


class CpuRingContext(_core.RnsContext):
    """:class:`wavis.backend.protocol.RingOps` on NumPy ``uint64`` arrays for ring degree ``N`` and
    distinct NTT-friendly ``moduli`` (each ≡ 1 mod 2N, < 2^62). Raises ``ValueError`` otherwise."""

    def __init__(self, N: int, moduli: Sequence[int]) -> None:
        super().__init__(int(N), [int(q) for q in moduli])

    def __repr__(self) -> str:
        return f"CpuRingContext(N={self.N}, limbs={len(self.moduli)})"

    # -- memory ------------------------------------------------------------------------------
    def empty(self, limbs: int, batch: int | None = None) -> np.ndarray:
        """Uninitialised (limbs, N) or (batch, limbs, N) uint64."""
        shape = (int(limbs), self.N) if batch is None else (int(batch), int(limbs), self.N)
        return np.empty(shape, dtype=np.uint64)

    # -- batched variants: loops over the native kernels ------------------------------------------
    def automorphism_batch(self, a, galois_elts, idx, ntt_domain: bool):
        return reference.automorphism_batch(self, a, galois_elts, idx, ntt_domain)

    def rescale_batch(self, a, idx):
        return reference.rescale_batch(self, a, idx)

    def ks_mod_up_batch(self, a, idx_q, idx_p, digits):
        return reference.ks_mod_up_batch(self, a, idx_q, idx_p, digits)

    def ks_inner_batch(self, exts, key, idx_q, idx_p, galois_elts, add=None):
        return reference.ks_inner_batch(self, exts, key, idx_q, idx_p, galois_elts, add)

    def key_switch_ext_batch(self, a, key, idx_q, idx_p, digits, add=None, galois_elt: int = 1):
        return reference.key_switch_ext_batch(self, a, key, idx_q, idx_p, digits, add, galois_elt)
