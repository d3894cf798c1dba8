"""The service's operation registry: the heavy operations and what each costs.

Every operation whose memory or CPU depends on its parameters has an entry here, with the
``cost`` function that admission (``admission.py``) evaluates *before* anything is allocated
or any engine job starts. FCU prices of compute operations stay in ``pricing.FCU_PER_OPERATION`` (API.md's
table; ``fcu`` below reads it).

Estimates (bytes resident at the peak, CPU seconds on one core) are computed from the
parameters alone — no key material is built:

* RNS-CKKS (hybrid key switching, Han–Ki CT-RSA 2020): a key-switching key holds ``dnum``
  digits × 2 polynomials × (L+1+k) limbs × N uint64 words in memory (NTT form); a ciphertext
  2 × (ℓ+1) × N words. Key generation holds the key set twice (generated, then parsed back
  through the upload path) plus its serialized copy; CPU grows with keys × dnum × limbs ×
  N log N. The constants are calibrated by ``benchmarks/bench_admission.py`` on this code
  (estimates ≥ measured peak RSS growth and CPU; results in ``benchmarks/results/admission.json``).
* TFHE (Chillotti et al., J. Cryptology 2020): the bootstrapping key in the Fourier domain is
  n × (k+1)² × ℓ_pbs × N/2 complex128, the key-switching key k·N × ℓ_ks × (n+1) words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

MiB = 1024 * 1024

# calibration (benchmarks/bench_admission.py; see docs/operations.md "Admission by cost")
KEYGEN_MEMORY_FACTOR = 3.6  # peak RSS / (key set in memory); measured 3.4-3.6 (bench_admission.py)
UPLOAD_MEMORY_FACTOR = 1.4  # peak RSS / (key set in memory) parsing an upload (measured ~0.5-0.7 + the body)
CPU_S_PER_UNIT = 3.0e-9  # seconds per (limb · N · log2 N) of key-switching work
BASE_BYTES = 16 * MiB  # interpreter-side overhead of any heavy job


@dataclass(frozen=True)
class Cost:
    """What a request will take at its peak."""

    bytes: int
    cpu_s: float
    what: str  # a short description for error details

    def to_details(self) -> dict[str, Any]:
        return {"estimated_bytes": int(self.bytes), "estimated_cpu_s": round(self.cpu_s, 3), "operation": self.what}


@dataclass(frozen=True)
class CkksShape:
    """The sizes a CKKS cost needs (from a parameter dict, without building primes)."""

    n: int
    limbs: int  # L + 1
    special: int  # k
    dnum: int

    @property
    def ksk_bytes(self) -> int:
        return self.dnum * 2 * (self.limbs + self.special) * self.n * 8

    def ct_bytes(self, limbs: int | None = None) -> int:
        return 2 * (limbs or self.limbs) * self.n * 8

    @property
    def log_n(self) -> int:
        return max(1, int(self.n).bit_length() - 1)


def ckks_shape(params: dict[str, Any]) -> CkksShape:
    """Sizes of ``params`` (a key's ``params`` dict). Raises ``ParameterError`` /
    ``InsufficientSecurityError`` for invalid parameters (validation only: no primes built)."""
    from wavis.ckks import CkksParameters  # noqa: PLC0415
    from wavis.ckks.params import special_prime_sizes  # noqa: PLC0415

    p = CkksParameters.from_dict(params)  # __post_init__ validates and picks dnum; moduli are lazy
    first = p.first_mod_bits or min(60, p.scale_bits + 20)
    bits = [first] + [p.scale_bits] * p.max_depth + list(p.boot_mod_bits)  # a bootstrap preset's levels too
    alpha = math.ceil(len(bits) / p.dnum)
    digit_bits = max(sum(bits[i:i + alpha]) for i in range(0, len(bits), alpha))
    special = len(special_prime_sizes(digit_bits, p.special_mod_bits, p.first_special_mod_bits))
    return CkksShape(int(p.poly_degree), len(bits), special, int(p.dnum))


def keygen_cost(params: dict[str, Any], galois_keys: int) -> Cost:
    """``POST /keys/generate``: a key pair with a relinearization key and ``galois_keys``
    Galois keys, generated, serialized and parsed back."""
    s = ckks_shape(params)
    keys = 1 + max(0, galois_keys)
    resident = keys * s.ksk_bytes
    cpu = keys * s.dnum * (s.limbs + s.special) * s.n * s.log_n * CPU_S_PER_UNIT * 6
    return Cost(BASE_BYTES + int(resident * KEYGEN_MEMORY_FACTOR), cpu, "keys/generate")


def upload_cost(params: dict[str, Any], eval_key_b64_len: int) -> Cost:
    """``POST /keys/upload`` and key chunks: parsing ``eval_key_b64_len`` characters of base64
    evaluation keys into NTT-form key-switching keys (their count from the compact wire size:
    one seeded polynomial per digit, residues packed to their bit width)."""
    s = ckks_shape(params)
    wire_per_key = s.dnum * (s.limbs + s.special) * s.n * 60 / 8  # ≤ 61-bit residues, seeded half
    keys = max(1, math.ceil(eval_key_b64_len * 3 / 4 / wire_per_key))
    resident = keys * s.ksk_bytes
    cpu = keys * s.dnum * (s.limbs + s.special) * s.n * s.log_n * CPU_S_PER_UNIT * 3
    return Cost(BASE_BYTES + int(resident * UPLOAD_MEMORY_FACTOR) + eval_key_b64_len, cpu, "keys/upload")


def matmul_cost(params: dict[str, Any], rows: int, cols: int) -> Cost:
    """``compute/matmul``: ⌈√span⌉ baby-step rotations held at once (hoisted), one plaintext
    diagonal at a time (never the slots × slots matrix), span = rows + cols − 1 diagonals."""
    s = ckks_shape(params)
    slots = s.n // 2
    span = min(slots, rows + cols - 1)
    b = math.isqrt(max(0, span - 1)) + 1
    g = math.ceil(span / b)
    resident = (b + 6) * s.ct_bytes() + s.dnum * (s.limbs + s.special) * s.n * 8 + rows * cols * 8 * 3
    rotations = (b - 1) + g
    cpu = rotations * s.dnum * (s.limbs + s.special) * s.n * s.log_n * CPU_S_PER_UNIT * 4 + span * s.n * 1e-8
    return Cost(BASE_BYTES + resident, cpu, "compute/matmul")


# A bootstrap's CPU time in units of one key switching at the top of the chain. CoeffsToSlots,
# EvalMod and SlotsToCoeffs make ~100 key switchings, but most run well below the top level
# (fewer limbs) and the baby steps are hoisted; 24 full-size equivalents put the n65536 estimate
# at ~30 s against 18.4-25 s of CPU measured per warm bootstrap on one thread (AMD EPYC Zen 4,
# ifma path; `benchmarks/bench_bootstrap.py`, docs/bootstrapping.md "Measurements"). It was 100
# (125 s), which refused a bootstrap to every plan below Scale.
BOOTSTRAP_KEYSWITCH_EQUIVALENTS = 24


def bootstrap_cost(params: dict[str, Any], iterations: int = 1, slots: int | None = None) -> Cost:
    """``compute/bootstrap``: CoeffsToSlots / EvalMod / SlotsToCoeffs at the top of the chain —
    about 40 ciphertexts resident, the encoded DFT factors of the configuration (``slots``;
    ``Bootstrapper.cache_bytes``: ~1.6 GB at N = 2^16, full slots, with the idle baby-rotation
    workspace) and the CPU of
    ``BOOTSTRAP_KEYSWITCH_EQUIVALENTS`` key switchings at the top level (the key set itself is
    already loaded with the key and counted there); ``iterations`` = 2 (META-BTS) runs two
    bootstraps one after the other: twice the CPU, the same memory plus the input, the first
    result and the scaled copy of the last SlotsToCoeffs factor.

    The DFT factors are counted in every bootstrap's bytes, whether this job encodes them or
    finds them encoded: they are resident while it runs either way (they stay cached per
    context and configuration after it, ``SHARED_TRANSFORMS`` of them at most).
    Raises ParameterError (no bootstrap preset, bad ``slots``) → 400."""
    s = ckks_shape(params)
    resident = (40 + 2 * (iterations - 1)) * s.ct_bytes(s.limbs + s.special)
    cpu = iterations * BOOTSTRAP_KEYSWITCH_EQUIVALENTS * s.dnum * (s.limbs + s.special) * s.n * s.log_n \
        * CPU_S_PER_UNIT * 4
    return Cost(BASE_BYTES + resident + bootstrap_cache_bytes(params, iterations, slots), cpu, "compute/bootstrap")


def bootstrap_cache_bytes(params: dict[str, Any], iterations: int = 1, slots: int | None = None) -> int:
    """The encoded DFT factors of a bootstrap configuration (``Bootstrapper.cache_bytes``; cached
    per parameter set, slots and iterations, so only the first request of a configuration plans
    the factors). 0 for parameters without a bootstrap preset (the job answers MISSING_KEY).
    Raises ParameterError for invalid ``slots``."""
    from wavis.ckks import CkksParameters  # noqa: PLC0415
    from wavis.ckks.bootstrap import Bootstrapper  # noqa: PLC0415

    p = CkksParameters.from_dict(params)
    if p.bootstrap_preset is None:
        return 0
    return Bootstrapper.cache_bytes(p, slots, iterations)


def model_infer_cost(params: dict[str, Any], model_id: str) -> Cost:
    """``models/{id}/infer``: each linear layer as a matmul of its block-local shape (the packed
    block-diagonal matrix has the same rows + cols − 1 diagonals, ``wavis.models.runtime``) plus
    its encoded diagonals, which stay cached per parameter set (NTT form: span × limbs × N
    words; compact above N = 2^14: span × N); polynomials and products as a few ciphertexts.
    Raises ParameterError for an unknown model (→ 404 before this in the route)."""
    from wavis import models  # noqa: PLC0415

    s = ckks_shape(params)
    model = models.get(model_id)
    cached, transient, cpu = 0, 0, 0.0
    for node in model.graph.nodes:
        if node.op != "linear":
            cpu += 2 * s.dnum * (s.limbs + s.special) * s.n * s.log_n * CPU_S_PER_UNIT * 4
            continue
        rows, cols = node.weight.shape
        c = matmul_cost(params, rows, cols)
        span = len(model.graph.local_diagonals(node))  # the non-zero ones: what is encoded
        cached += span * s.n * 8 * (1 if model.graph.compact_cache(s.n // 2) else s.limbs)
        transient = max(transient, c.bytes - BASE_BYTES)
        cpu += c.cpu_s
    boots = model.graph.bootstraps_needed(int(params.get("max_depth", 0))) if params.get("bootstrap_preset") else 0
    if boots:
        bc = bootstrap_cost(params)
        cpu += boots * bc.cpu_s
        transient = max(transient, bc.bytes - BASE_BYTES)
    return Cost(BASE_BYTES + cached + transient + 8 * s.ct_bytes(), cpu, f"models/{model_id}/infer")


def tfhe_session_cost(preset: str, server_keygen: bool) -> Cost:
    """``POST /tfhe/session`` (server key generation) and ``/tfhe/eval-session`` (parse and
    expand a client's server key): the expanded key in memory plus its wire form."""
    from wavis.tfhe import get_preset  # noqa: PLC0415

    p = get_preset(preset)
    n, k, big_n = p.n, p.k, p.big_n
    bsk = n * (k + 1) ** 2 * int(p.pbs_level) * (big_n // 2) * 16  # complex128, Fourier domain
    ksk = k * big_n * int(p.ks_level) * (n + 1) * 4  # torus32 words
    wire = n * (k + 1) ** 2 * int(p.pbs_level) * big_n * 4 + ksk
    cpu = (n * (k + 1) * int(p.pbs_level) * big_n * 2e-8) * (3 if server_keygen else 1)
    return Cost(BASE_BYTES + bsk + ksk + wire, cpu, "tfhe/session" if server_keygen else "tfhe/eval-session")


@dataclass(frozen=True)
class Operation:
    name: str
    cost: Callable[..., Cost]
    heavy: bool = True  # counts toward the account's concurrent heavy jobs


REGISTRY: dict[str, Operation] = {
    "keys/generate": Operation("keys/generate", keygen_cost),
    "keys/upload": Operation("keys/upload", upload_cost),
    "keys/galois-keys": Operation("keys/galois-keys", upload_cost),
    "compute/matmul": Operation("compute/matmul", matmul_cost),
    "compute/bootstrap": Operation("compute/bootstrap", bootstrap_cost),
    "models/infer": Operation("models/infer", model_infer_cost),
    "tfhe/session": Operation("tfhe/session", lambda preset: tfhe_session_cost(preset, True)),
    "tfhe/eval-session": Operation("tfhe/eval-session", lambda: tfhe_eval_session_cost()),
}


def tfhe_eval_session_cost() -> Cost:
    """An uploaded server key's preset is known only once parsed: the largest offered one."""
    from wavis.tfhe import PUBLIC_PRESETS  # noqa: PLC0415

    return max((tfhe_session_cost(name, False) for name in PUBLIC_PRESETS), key=lambda c: c.bytes)


def fcu(operation: str) -> int:
    """FCU of a compute operation (API.md's table, ``pricing.FCU_PER_OPERATION``)."""
    from .pricing import ckks_fcu  # noqa: PLC0415

    return ckks_fcu(operation)
