"""LweOps of the CUDA backend: batched TFHE bootstrapping and key switching on the GPU
(kernels/tfhe.cu), mirroring the CPU core (csrc/include/wavis/tfhe/tfhe.hpp) operation for operation.

STATUS: verified on the CPU kernel emulation (:mod:`wavis.backend.cuda_emu`: gate outputs decrypt
identically to the CPU core's, tests/test_cuda_tfhe.py); the device run is
benchmarks/device_check.sh.

:class:`CudaLwe` implements :class:`wavis.backend.protocol.LweOps`. A server key is expanded once
on the host (masks regenerated from the public seed with the host ChaCha20 stream, as on the CPU)
and made resident by :meth:`CudaLwe.load_server_key`: the bootstrapping key in the NTT domain
modulo one 61-bit prime, the key-switching key as uint32 words. Client-side operations (keygen,
encrypt, phase) run on the host: they delegate explicitly to the CPU backend's LweOps.

External products are exact (integer NTT, see kernels/tfhe.cu); the CPU's are double-precision
FFT products, so ciphertext words may differ in the last bits while decryptions agree. The gates
themselves (table, linear combinations) are :mod:`wavis.tfhe.gates`; this module only gets the
test-vector value ``mu`` as a parameter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wavis.errors import BackendError, ShapeError

from . import reference
from .cuda import CudaRingContext

__all__ = ["CudaLwe", "CudaServerKey"]


class CudaServerKey:
    """A TFHE server key resident on one device: ``bsk`` (n, (k+1)·l, k+1, N) uint64, NTT domain
    mod the context's prime; ``ksk`` (k·N, t, n+1) uint32."""

    def __init__(self, bsk, ksk) -> None:
        self.bsk = bsk
        self.ksk = ksk

    @property
    def memory_bytes(self) -> int:
        return int(self.bsk.nbytes + self.ksk.nbytes)


class CudaLwe:
    """:class:`wavis.backend.protocol.LweOps` on a CUDA (or emulated) device for one TFHE parameter
    set. Evaluation results are device arrays (CuPy; NumPy on the emulation)."""

    def __init__(self, device, params: Any) -> None:
        from .cpu import CpuBackend

        self._dev = device
        self.xp = device.xp
        p = self.params = params
        self._host = CpuBackend().lwe(params)
        self.n, self.k, self.N = int(p.lwe_dimension), int(p.glwe_dimension), int(p.polynomial_size)
        self.bg, self.l = int(p.pbs_base_log), int(p.pbs_level)
        self.bks, self.t = int(p.ks_base_log), int(p.ks_level)
        self.logN = self.N.bit_length() - 1
        rows = (self.k + 1) * self.l
        # One prime with exact room for the external product: |sum| < rows·N·(B/2)·2^31.
        self.q = int(CpuBackend().generate_ntt_primes(61, 1, self.N)[0])
        bound = rows * self.N * (1 << (self.bg - 1)) * (1 << 31)
        if 2 * bound >= self.q:
            raise BackendError(f"TFHE parameters too large for the exact NTT product (2^{bound.bit_length()})",
                               backend="cuda")
        self.ring = r = CudaRingContext(device, self.N, (self.q,))
        self._tables = (r._tw[0, 0], r._tw[1, 0], r._tw[2, 0], r._tw[3, 0])
        rat = ((1 << 128) - 1) // self.q
        self._rhi, self._rlo = rat >> 64, rat & ((1 << 64) - 1)
        t_cpu = r._cpu.twiddles(0)
        self._ninv, self._ninvp = int(t_cpu["n_inv"]), int(t_cpu["n_inv_shoup"])
        self._wl = int(r.to_numpy(r._wl)[0])
        self._wlp = int(r.to_numpy(r._wlp)[0])
        self.block_threads: int | None = None  # threads per bootstrap block (None: min(512, N/2))

    def __repr__(self) -> str:
        return f"CudaLwe({self.params.name}, device={self._dev.name})"

    # -- client side: on the host ------------------------------------------------------------------
    def keygen(self, seed: bytes):
        return self._host.keygen(seed)

    def encrypt(self, lwe_key, mus, seed: bytes):
        return self._host.encrypt(lwe_key, mus, seed)

    def phase(self, lwe_key, cts):
        return self._host.phase(lwe_key, np.ascontiguousarray(self._dev.to_numpy(cts), dtype=np.uint32))

    # -- server key ----------------------------------------------------------------------------
    def load_server_key(self, mask_seed: bytes, bsk_bodies, ksk_bodies) -> CudaServerKey:
        """Expand the compact key on the host and upload it: masks from the public seed in keygen
        order (bsk (n, rows, k, N), then ksk (k·N, t, n)), the bootstrapping key lifted to centred
        integers and moved to the NTT domain on the device."""
        from .cpu import CpuBackend

        xp, n, k, N, t = self.xp, self.n, self.k, self.N, self.t
        rows = (k + 1) * self.l
        KN = k * N
        n_bsk, n_ksk = n * rows * k * N, KN * t * n
        words = np.frombuffer(CpuBackend().prng(bytes(mask_seed)).random_bytes(4 * (n_bsk + n_ksk)), dtype="<u4")
        bsk_masks = words[:n_bsk].reshape(n, rows, k, N)
        ksk = np.empty((KN, t, n + 1), dtype=np.uint32)
        ksk[:, :, :n] = words[n_bsk:].reshape(KN, t, n)
        ksk[:, :, n] = np.asarray(ksk_bodies, dtype=np.uint32).reshape(KN, t)
        bodies = np.asarray(bsk_bodies, dtype=np.uint32).reshape(n, rows, N)
        bsk = xp.empty((n, rows, k + 1, N), dtype=np.uint64)
        chunk = max(1, (1 << 22) // (rows * (k + 1) * N))
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            blk = np.empty((i1 - i0, rows, k + 1, N), dtype=np.uint32)
            blk[:, :, :k] = bsk_masks[i0:i1]
            blk[:, :, k] = bodies[i0:i1]
            signed = np.ascontiguousarray(blk.view(np.int32).astype(np.int64).reshape(-1, N))
            res = self.ring.from_signed(signed, [0])  # (batch, 1, N)
            self.ring.ntt(res, [0])
            bsk[i0:i1] = res.reshape(i1 - i0, rows, k + 1, N)
        return CudaServerKey(bsk, xp.asarray(ksk))

    # -- evaluation ----------------------------------------------------------------------------
    def _lwe_in(self, lwe, width: int, what: str):
        x = self.xp.ascontiguousarray(self.xp.asarray(lwe, dtype=np.uint32))
        if x.ndim != 2 or x.shape[1] != width:
            raise ShapeError(f"{what} must be (J, {width}) uint32, got {tuple(x.shape)}")
        return x

    def _rotate(self, key: CudaServerKey, lwe, mu: int, extract: bool):
        xp, n, k, N = self.xp, self.n, self.k, self.N
        lwe = self._lwe_in(lwe, n + 1, "lwe")
        J = int(lwe.shape[0])
        out = xp.empty((J, k * N + 1) if extract else (J, k + 1, N), dtype=np.uint32)
        if J == 0:
            return out
        shared = (N + (k + 1) * N) * 8 + (k + 1) * N * 4
        W, Wp, IW, IWp = self._tables
        args = (lwe, out, key.bsk, W, Wp, IW, IWp, np.uint64(self.q), np.uint64(self._rhi),
                np.uint64(self._rlo), np.uint64(self._ninv), np.uint64(self._ninvp), np.uint64(self._wl),
                np.uint64(self._wlp), np.int32(n), np.int32(k), np.int32(self.logN), np.int32(self.bg),
                np.int32(self.l), np.uint32(int(mu) & 0xFFFFFFFF), np.int32(1 if extract else 0))
        block = self.block_threads or max(1, min(512, N // 2))
        self._dev.kernel("tfhe", "tfhe_blind_rotate")(J, int(block), args, shared)
        return out

    def blind_rotate(self, key: CudaServerKey, lwe, mu: int, threads: int = 0):
        """(J, n+1) → GLWE accumulators (J, k+1, N) (kernel ``tfhe_blind_rotate``, extract = 0)."""
        return self._rotate(key, lwe, mu, False)

    def sample_extract(self, glwe):
        return reference.sample_extract(self.xp, glwe)

    def bootstrap(self, key: CudaServerKey, lwe, mu: int, threads: int = 0):
        """(J, n+1) → (J, k·N+1): blind rotation and sample extraction in one kernel."""
        return self._rotate(key, lwe, mu, True)

    def key_switch(self, key: CudaServerKey, big, threads: int = 0):
        """(J, k·N+1) → (J, n+1) (kernel ``tfhe_keyswitch``)."""
        xp = self.xp
        big = self._lwe_in(big, self.k * self.N + 1, "big")
        G = int(big.shape[0])
        out = xp.empty((G, self.n + 1), dtype=np.uint32)
        if G == 0:
            return out
        rows = xp.asarray(np.arange(G, dtype=np.int32))
        args = (big, rows, rows, out, key.ksk, np.int32(G), np.int32(self.n), np.int32(self.k * self.N),
                np.int32(self.t), np.int32(self.bks))
        self._dev.kernel("tfhe", "tfhe_keyswitch")((G + 7) // 8, 128, args, 0)
        return out

    # -- memory --------------------------------------------------------------------------------
    def asarray(self, a):
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=np.uint32))

    def to_numpy(self, a) -> np.ndarray:
        return np.ascontiguousarray(self._dev.to_numpy(a), dtype=np.uint32)
