"""``wavis_fhe``: the helper names of the hosted WAVIS documentation, on top of
:mod:`wavis.client`.

    import wavis_fhe as wv
    keys = wv.keygen()                      # TFHE keys, preset fast_128 (≥ 128-bit)
    keys.n(), keys.big_n()                  # LWE dimension n, GLWE polynomial size N
    gpu_keys = wv.keygen_gpu(device=0)      # on a CUDA device; the CPU with a warning if none
    with wv.Client() as c:                  # WAVIS_URL / the running `wavis serve`
        ...

``keygen`` returns a :class:`wavis.client.TfheKeys` (``encrypt``, ``encrypt_uint``,
``decrypt``, ``decrypt_uint``, ``server_key``); ``ckks_keygen`` a :class:`wavis.client.KeyPair`.
"""

from __future__ import annotations

import warnings

from wavis.client import (AsyncClient, Circuit, Client, KeyPair, RetryPolicy, TfheKeys)  # noqa: F401
from wavis.client.errors import *  # noqa: F401,F403

__all__ = ["keygen", "keygen_gpu", "ckks_keygen", "Client", "AsyncClient", "Circuit", "TfheKeys", "KeyPair",
           "RetryPolicy", "GpuUnavailableWarning"]


class GpuUnavailableWarning(RuntimeWarning):
    """``keygen_gpu`` found no usable CUDA device and made the keys on the CPU."""


def keygen(preset: str = "fast_128", seed: bytes | int | None = None) -> TfheKeys:
    """TFHE keys for ``preset`` (``fast_128``, ``standard_128``, ``conservative_128``; each
    ≥ 128-bit by the TFHE-rs security curves, docs/tfhe.md). ``seed`` makes them reproducible
    (tests only). Raises ParameterError for an unknown preset."""
    return TfheKeys.generate(preset, seed=seed)


def keygen_gpu(device: int = 0, preset: str = "fast_128", seed: bytes | int | None = None) -> TfheKeys:
    """TFHE keys generated and kept resident on CUDA device ``device`` (their gates then run
    there). Without a usable device (no CuPy, no GPU, no such device) the keys are made on the
    CPU and a :class:`GpuUnavailableWarning` says why; the keys are the same either way."""
    from wavis.tfhe import TfheContext  # noqa: PLC0415

    try:
        from wavis.backend import cuda  # noqa: PLC0415  (CuPy loads only when a CudaBackend is built)

        backend = cuda.CudaBackend(device_id=int(device))
    except Exception as exc:  # no CuPy, no driver, no such device: as wavis.backend.get("cuda") does
        warnings.warn(f"keygen_gpu: no usable CUDA device {device} ({exc}); generating the keys on the CPU",
                      GpuUnavailableWarning, stacklevel=2)
        return TfheKeys.generate(preset, seed=seed)
    return TfheKeys.generate(preset, seed=seed, context=TfheContext(preset, backend))


def ckks_keygen(params, **workload) -> KeyPair:
    """CKKS keys for ``params`` and a workload (``matmul_shapes``, ``rotations``, ``sums``,
    ``conjugation``, ``bootstrappable``): :meth:`wavis.client.KeyPair.generate`."""
    return KeyPair.generate(params, **workload)
