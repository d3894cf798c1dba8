"""The machine's bound, measured by the harness on the machine it runs on.

* Memory bandwidth: the best of several copies of a 256 MiB buffer (NumPy ``copyto``, one
  thread), counting one read and one write per byte, per second of the thread's CPU time (a
  shared host's other load does not lower it). A single-thread figure, like the benchmarks it
  bounds (they run with ``threads`` = 1 unless asked otherwise).
* Modular-multiply throughput of the SIMD path in use (``wavis.backend.cpu.simd_path()``):
  ``wavis.backend.cpu.mulmod_rate`` runs the NTT's lazy Shoup multiply of that path (IFMA 52-bit
  lanes, AVX-512 8 × 64-bit lanes, AVX2 4 × 64-bit lanes, or scalar) on data in registers, 12 independent chains, per
  second of thread CPU time. For a 50-bit prime (IFMA-eligible) and a 61-bit prime (the IFMA
  path runs those on the AVX-512 multiply; docs/ring.md).

Bounds of a figure (:func:`bound`): time ≥ max(bytes moved / bandwidth, modular multiplies /
throughput). The operation counts are written out in :func:`ntt_counts`,
:func:`key_switch_counts` and :func:`blind_rotation_counts` with their sources.
"""

from __future__ import annotations

import math
import time

import numpy as np


def memory_bandwidth_gbps(mib: int = 256, reps: int = 5) -> float:
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(reps):
        t = time.thread_time()
        np.copyto(dst, src)
        best = min(best, time.thread_time() - t)
    return 2 * src.nbytes / best / 1e9


def mulmod_per_s(bits: int, path: str | None = None, iters: int = 1_000_000) -> float:
    """Modular multiplies per CPU second of ``path``'s NTT multiply (default: the path in use)
    for a ``bits``-bit prime; the IFMA path runs primes of 50 bits or more on AVX-512, as the
    core does."""
    from wavis.backend import cpu

    path = path or cpu.simd_path()
    if path == "ifma" and bits > 50:
        path = "avx512"
    q = cpu.generate_ntt_primes(bits, 1, 4096)[0]
    return max(cpu.mulmod_rate(path, q, iters) for _ in range(3))


def measure(all_paths: bool = False, bandwidth_mib: int = 256) -> dict:
    """The ``bound`` block of a results document."""
    from wavis.backend import cpu

    path = cpu.simd_path()
    out = {"memory_bandwidth_GBps": memory_bandwidth_gbps(bandwidth_mib), "mulmod_path": path,
           "mulmod_per_s": {"<=50": mulmod_per_s(50), ">50": mulmod_per_s(61)},
           "method": {"bandwidth": f"best of 5 NumPy copies of {bandwidth_mib} MiB, 1 thread, read + write counted, per thread CPU second",
                      "mulmod": "backend.cpu.mulmod_rate: the NTT's lazy Shoup multiply of the path in use, in registers, "
                                "12 chains, best of 3, per thread CPU second; '<=50': 50-bit prime, '>50': 61-bit prime"}}
    if all_paths:
        out["mulmod_per_s_by_path"] = {p: {"<=50": mulmod_per_s(50, p), ">50": mulmod_per_s(61, p)}
                                       for p in cpu.simd_paths()}
    return out


def _rate(hw: dict, bits: int) -> float:
    return hw["mulmod_per_s"]["<=50" if bits <= 50 else ">50"]


def bound(hw: dict, nbytes: float, mulmods: float | None, bits: int = 50) -> dict:
    """{"seconds", "limit", "bytes", "mulmods", "memory_s", "compute_s"} for one operation."""
    mem = nbytes / (hw["memory_bandwidth_GBps"] * 1e9)
    comp = mulmods / _rate(hw, bits) if mulmods else None
    sec = max(mem, comp or 0.0)
    return {"seconds": sec, "limit": "compute" if comp and comp > mem else "memory", "bytes": nbytes,
            "mulmods": mulmods, "memory_s": mem, "compute_s": comp}


def ntt_counts(n: int) -> tuple[float, float]:
    """One limb's forward NTT: N/2·log2 N butterflies, one modular multiply each (Cooley–Tukey,
    Longa–Naehrig 2016 §3); one read and one write of the N 8-byte residues (in place)."""
    return 2.0 * n * 8, n / 2 * math.log2(n)


def key_switch_counts(n: int, limbs: int, special: int, digits: int) -> tuple[float, float]:
    """Hybrid key switching of one ciphertext at the top level (Han–Ki, CT-RSA 2020, §3):
    INTT of the input limbs; per digit, ModUp (fast basis conversion of α limbs to the other
    l + K − α, Bajard et al. SAC 2016) and the NTTs of the converted limbs; the inner product
    with the 2 × digits key rows; ModDown of both outputs (INTT of K limbs, conversion K → l,
    NTT of l limbs, the multiply by P⁻¹). Bytes: the key (digits × 2 × (l + K) × N × 8), the input
    (2 × l limbs) and the output (2 × l limbs) — what any implementation must move once."""
    l, k = limbs, special
    lg = math.log2(n)
    alpha = math.ceil(l / digits)
    mm = l * n / 2 * lg
    for d in range(digits):
        a = min(alpha, l - d * alpha)
        if a <= 0:
            break
        mm += a * (l + k - a) * n + a * n + (l + k - a) * n / 2 * lg
    mm += digits * 2 * (l + k) * n
    mm += 2 * (k * n / 2 * lg + k * l * n + k * n + l * n / 2 * lg + l * n)
    nbytes = (digits * 2 * (l + k) + 2 * l + 2 * l) * n * 8.0
    return nbytes, mm


def blind_rotation_bytes(server_key_bytes: int, batch: int = 1, lwe_n: int = 0) -> float:
    """Bytes one gate must move: the expanded server key (bootstrapping key in the FFT domain and
    key-switching key), read once per batch and shared by its gates, plus its operands."""
    return server_key_bytes / batch + 3 * (lwe_n + 1) * 4
