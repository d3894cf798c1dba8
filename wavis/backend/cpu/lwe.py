"""LweOps of the CPU backend: TFHE on the 32-bit torus in the C++ core (csrc/include/wavis/tfhe/tfhe.hpp):
double-precision negacyclic FFT external products, lockstep groups of 16 ciphertexts per thread,
GIL released, ``WAVIS_THREADS`` threads (or ``threads``).

The named sizes cross into C++ as the struct ``_core.TfheParams`` (keyword fields
``lwe_dimension``, ``glwe_dimension``, ``polynomial_size``, ``pbs_base_log``, ``pbs_level``,
``ks_base_log``, ``ks_level``, ``lwe_noise_std``, ``glwe_noise_std``), built once per parameter set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wavis import _core

from .. import reference

__all__ = ["CpuLwe", "core_params"]


def core_params(params: Any) -> "_core.TfheParams":
    """The C++ ``TfheParams`` of a :class:`wavis.tfhe.TfheParameters` (named fields, validated)."""
    return _core.TfheParams(
        lwe_dimension=int(params.lwe_dimension), glwe_dimension=int(params.glwe_dimension),
        polynomial_size=int(params.polynomial_size), pbs_base_log=int(params.pbs_base_log),
        pbs_level=int(params.pbs_level), ks_base_log=int(params.ks_base_log), ks_level=int(params.ks_level),
        lwe_noise_std=float(params.lwe_noise_std), glwe_noise_std=float(params.glwe_noise_std))


class CpuLwe:
    """:class:`wavis.backend.protocol.LweOps` on NumPy ``uint32`` arrays for one parameter set.
    Server keys are ``_core.TfheServerKeyCore`` objects (Fourier-domain bootstrapping key)."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self._core_params = core_params(params)

    def __repr__(self) -> str:
        return f"CpuLwe({self.params.name})"

    # -- memory --------------------------------------------------------------------------------
    def asarray(self, a) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.uint32)

    def to_numpy(self, a) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.uint32)

    # -- client side -----------------------------------------------------------------------------
    def keygen(self, seed: bytes):
        return _core.tfhe_keygen(self._core_params, bytes(seed))

    def encrypt(self, lwe_key: np.ndarray, mus: np.ndarray, seed: bytes) -> np.ndarray:
        return _core.tfhe_encrypt(self._core_params, lwe_key, mus, bytes(seed))

    def phase(self, lwe_key: np.ndarray, cts: np.ndarray) -> np.ndarray:
        return _core.tfhe_phase(lwe_key, cts)

    # -- server key ----------------------------------------------------------------------------
    def load_server_key(self, mask_seed: bytes, bsk_bodies: np.ndarray, ksk_bodies: np.ndarray):
        return _core.TfheServerKeyCore(self._core_params, bytes(mask_seed), bsk_bodies, ksk_bodies)

    # -- evaluation ----------------------------------------------------------------------------
    def blind_rotate(self, key, lwe, mu: int, threads: int = 0) -> np.ndarray:
        return key.bootstrap(lwe, int(mu), False, int(threads))

    def sample_extract(self, glwe) -> np.ndarray:
        return reference.sample_extract(np, glwe)

    def bootstrap(self, key, lwe, mu: int, threads: int = 0) -> np.ndarray:
        return key.bootstrap(lwe, int(mu), True, int(threads))

    def key_switch(self, key, big, threads: int = 0) -> np.ndarray:
        return key.key_switch(big, int(threads))
