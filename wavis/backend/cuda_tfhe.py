"""Batched TFHE gate bootstrapping on the GPU (kernels/tfhe.cu), mirroring the CPU core
``wavis._core.TfheServerKeyCore`` (csrc/tfhe.hpp).

STATUS: verified on the CPU kernel emulation only (:mod:`wavis.backend.cuda_emu`: gate
outputs decrypt identically to the CPU core's, tests/test_cuda_tfhe.py); NOT yet run on a GPU.
The device parity test and the gates/s benchmark run in benchmarks/device_check.sh.

:class:`CudaTfhe` has the same ``evaluate(ops, a, b, sel, threads)`` as the CPU core, so
``attach(server_key, backend)`` swaps it into a :class:`wavis.tfhe.ServerKey` and the TFHE
layer runs unchanged. The server key is expanded once on the host (masks regenerated from the
public seed with the same ChaCha20 stream as the CPU: ``wavis._core.Prng(mask_seed)``), the
bootstrapping key is moved to the NTT domain modulo one 61-bit prime on the device and stays
resident there, as does the key-switching key.

External products are exact (integer NTT, see kernels/tfhe.cu); the CPU's are double-precision
FFT products, so ciphertext words may differ in the last bits while decryptions agree.
"""

from __future__ import annotations

import numpy as np

from wavis.errors import BackendError, ShapeError

from .cuda import CudaRingContext

__all__ = ["CudaTfhe", "attach"]

MU = 1 << 29  # 1/8 on the 32-bit torus
NAND, AND, OR, XOR, NOR, XNOR, NOT, MUX = range(8)
_M32 = 0xFFFFFFFF


class CudaTfhe:
    """The evaluation side of a TFHE server key on one device (bootstrapping and key-switching
    keys resident). ``evaluate`` has the CPU core's signature and returns NumPy ``uint32``."""

    def __init__(self, device, params, server_key) -> None:
        from wavis import _core
        from wavis.ring import ntt_primes

        self._dev = device
        xp = self.xp = device.xp
        p = self.params = params
        self.n, self.k, self.N = p.n, p.k, p.big_n
        self.bg, self.l = int(p.pbs_base_log), int(p.pbs_level)
        self.bks, self.t = int(p.ks_base_log), int(p.ks_level)
        n, k, N, l, t = self.n, self.k, self.N, self.l, self.t
        self.logN = N.bit_length() - 1
        rows = (k + 1) * l
        KN = k * N
        # One prime with exact room for the external product: |sum| < rows·N·(B/2)·2^31.
        self.q = int(ntt_primes(61, 1, N)[0])
        bound = rows * N * (1 << (self.bg - 1)) * (1 << 31)
        if 2 * bound >= self.q:
            raise BackendError(f"TFHE parameters too large for the exact NTT product (2^{bound.bit_length()})",
                               backend="cuda")
        self.ring = CudaRingContext(device, N, (self.q,))
        # masks from the public seed, in keygen order: bsk (n, rows, k, N), then ksk (KN, t, n)
        n_bsk, n_ksk = n * rows * k * N, KN * t * n
        words = np.frombuffer(_core.Prng(bytes(server_key.mask_seed)).random_bytes(4 * (n_bsk + n_ksk)), dtype="<u4")
        bsk_masks = words[:n_bsk].reshape(n, rows, k, N)
        ksk = np.empty((KN, t, n + 1), dtype=np.uint32)
        ksk[:, :, :n] = words[n_bsk:].reshape(KN, t, n)
        ksk[:, :, n] = np.asarray(server_key.ksk_bodies, dtype=np.uint32).reshape(KN, t)
        self.ksk = xp.asarray(ksk)
        bodies = np.asarray(server_key.bsk_bodies, dtype=np.uint32).reshape(n, rows, N)
        # bootstrapping key -> centred integers -> NTT mod q, (n, rows, k+1, N) u64 on the device
        self.bsk = xp.empty((n, rows, k + 1, N), dtype=np.uint64)
        chunk = max(1, (1 << 22) // (rows * (k + 1) * N))
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            blk = np.empty((i1 - i0, rows, k + 1, N), dtype=np.uint32)
            blk[:, :, :k] = bsk_masks[i0:i1]
            blk[:, :, k] = bodies[i0:i1]
            signed = np.ascontiguousarray(blk.view(np.int32).astype(np.int64).reshape(-1, N))
            res = self.ring.from_signed(signed, [0])  # (batch, 1, N)
            self.ring.ntt(res, [0])
            self.bsk[i0:i1] = res.reshape(i1 - i0, rows, k + 1, N)
        r = self.ring
        self._tables = (r._tw[0, 0], r._tw[1, 0], r._tw[2, 0], r._tw[3, 0])
        rat = ((1 << 128) - 1) // self.q
        self._rhi, self._rlo = rat >> 64, rat & ((1 << 64) - 1)
        t_cpu = r._cpu.twiddles(0)
        self._ninv, self._ninvp = int(t_cpu["n_inv"]), int(t_cpu["n_inv_shoup"])
        self._wl = int(r.to_numpy(r._wl)[0])
        self._wlp = int(r.to_numpy(r._wlp)[0])
        self.block_threads: int | None = None  # threads per bootstrap block (None: min(512, N/2))

    @property
    def memory_bytes(self) -> int:
        return int(self.bsk.nbytes + self.ksk.nbytes)

    # -- kernels ---------------------------------------------------------------------------------
    def blind_rotate(self, lwe):
        """(J, n+1) u32 device array → (J, k·N+1) u32 big-key LWE of ±1/8 (bootstrap + extract)."""
        xp, n, k, N = self.xp, self.n, self.k, self.N
        J = int(lwe.shape[0])
        big = xp.empty((J, k * N + 1), dtype=np.uint32)
        if J == 0:
            return big
        shared = (N + (k + 1) * N) * 8 + (k + 1) * N * 4
        W, Wp, IW, IWp = self._tables
        args = (xp.ascontiguousarray(lwe), big, self.bsk, W, Wp, IW, IWp, np.uint64(self.q), np.uint64(self._rhi),
                np.uint64(self._rlo), np.uint64(self._ninv), np.uint64(self._ninvp), np.uint64(self._wl),
                np.uint64(self._wlp), np.int32(n), np.int32(k), np.int32(self.logN), np.int32(self.bg),
                np.int32(self.l), np.uint32(MU))
        block = self.block_threads or max(1, min(512, N // 2))
        self._dev.kernel("tfhe", "tfhe_blind_rotate")(J, int(block), args, shared)
        return big

    def key_switch(self, big, src_rows, dst_rows, out) -> None:
        """out[dst_rows[g]] = KS(big[src_rows[g]]) (small-key LWE, n+1 words)."""
        xp = self.xp
        G = len(src_rows)
        if G == 0:
            return
        src = xp.asarray(np.asarray(src_rows, dtype=np.int32))
        dst = xp.asarray(np.asarray(dst_rows, dtype=np.int32))
        args = (big, src, dst, out, self.ksk, np.int32(G), np.int32(self.n), np.int32(self.k * self.N),
                np.int32(self.t), np.int32(self.bks))
        self._dev.kernel("tfhe", "tfhe_keyswitch")((G + 7) // 8, 128, args, 0)

    # -- gates -----------------------------------------------------------------------------------
    def evaluate_device(self, ops, a, b, sel):
        """Batched gates on device-resident (m, n+1) u32 operands; returns a device array."""
        xp, n = self.xp, self.n
        ops = np.asarray(ops, dtype=np.int8).reshape(-1)
        m = ops.shape[0]
        L = n + 1
        A, B, S = (xp.ascontiguousarray(xp.asarray(x, dtype=np.uint32)) for x in (a, b, sel))
        for x in (A, B, S):
            if x.shape != (m, L):
                raise ShapeError(f"operands must be ({m}, {L}) uint32")
        if ((ops < 0) | (ops > 7)).any():
            raise ShapeError("unknown gate op code")
        out = xp.zeros((m, L), dtype=np.uint32)
        zero = np.uint32(0)
        notg = np.nonzero(ops == NOT)[0]
        if notg.size:
            out[notg] = zero - A[notg]
        boot = np.nonzero(ops != NOT)[0]
        if boot.size == 0:
            return out
        mux = np.nonzero(ops == MUX)[0]
        J = boot.size + mux.size
        jobs = xp.empty((J, L), dtype=np.uint32)
        sums = A + B
        delta = {NAND: MU, AND: -MU, OR: MU, XOR: 2 * MU, NOR: -MU, XNOR: -2 * MU, MUX: -MU}
        job_of = {}
        for op in (NAND, AND, OR, XOR, NOR, XNOR, MUX):
            g = np.nonzero(ops == op)[0]
            if g.size == 0:
                continue
            pos = np.searchsorted(boot, g)
            if op in (NAND, NOR):
                x = zero - sums[g]
            elif op in (AND, OR):
                x = sums[g]
            elif op == XOR:
                x = np.uint32(2) * sums[g]
            elif op == XNOR:
                x = zero - np.uint32(2) * sums[g]
            else:  # MUX: sel AND a, then (NOT sel) AND b
                x = S[g] + A[g]
            x[:, n] += np.uint32(delta[op] & _M32)
            jobs[pos] = x
            job_of[op] = pos
        if mux.size:
            y = B[mux] - S[mux]
            y[:, n] += np.uint32(-MU & _M32)
            jobs[boot.size:] = y
        big = self.blind_rotate(jobs)
        if mux.size:
            first = np.searchsorted(boot, mux)
            second = np.arange(boot.size, J)
            comb = big[first] + big[second]
            comb[:, self.k * self.N] += np.uint32(MU)
            big[first] = comb
        self.key_switch(big, np.searchsorted(boot, boot), boot, out)
        return out

    def evaluate(self, ops, a, b, sel, threads: int = 0) -> np.ndarray:
        """The CPU core's signature: NumPy (m, n+1) u32 operands → NumPy (m, n+1) u32."""
        out = self.evaluate_device(ops, a, b, sel)
        return np.ascontiguousarray(self._dev.to_numpy(out), dtype=np.uint32)


def attach(server_key, backend) -> CudaTfhe:
    """Make ``server_key`` evaluate its gates on ``backend`` (a CUDA or emulated backend)."""
    engine = backend.tfhe(server_key.params, server_key)
    with server_key._core_lock:  # noqa: SLF001  (the ServerKey's one evaluation hook)
        server_key._core = engine  # noqa: SLF001
    return engine
