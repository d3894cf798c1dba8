"""Where the bits of a bootstrap go: each stage's own error, as the slot error it alone leaves.

A diagnostic for tests and benchmarks (``benchmarks/bootstrap_noise.py``): it needs the secret
key, decrypts every intermediate ciphertext exactly and separates each stage's own error from
what the stage inherits (full packing; the input at any level):

* ``encapsulation``: the ModRaise output minus m·Δ_0·2^k + q_0·I (the s → s′ → s key switches);
* ``coeffs_to_slots``: the decoded slots minus t/K, t the exact ModRaise output over q_0;
* ``evalmod_sine``: sin(2πt)/c − m, the sine's own deviation from the identity near integers
  (c = 2π·Δ_0·2^k/q_0; it grows with |m|: (2π·m·2^k·Δ_0/q_0)²/6 relative); with the preset's
  arcsine correction, the arcsine polynomial of sin(2πt) instead;
* ``evalmod_approximation``: the NumPy EvalMod model on the exact t, minus m (the sine and the
  Chebyshev/double-angle approximation);
* ``evalmod_rounding``: the homomorphic EvalMod output (real and imaginary parts) minus the
  NumPy model applied to the CtS output actually decrypted (rescaling and key-switching noise);
* ``slots_to_coeffs``: the final slots minus U·(the decrypted EvalMod output);
* ``total``: the final slots minus the decrypted input.

A coefficient-domain error e (in units of the message coefficients) reaches the slots as U·e
(``Encoder.embed``, U of Cheon–Kim–Kim–Song 2017 §3.2), so every entry is comparable with the
end-to-end figure. Precision is reported as in the issue and in Bossuat et al. (EUROCRYPT 2021,
§6): mean over the slots of −log2 |error|, the minimum, and −log2 of the RMS error.
"""

from __future__ import annotations

import numpy as np

from ..encryptor import Decryptor
from ..encoder import Encoder
from ..structures import Ciphertext, SecretKey
from . import dft
from .bootstrapper import Bootstrapper
from .evalmod import arcsine_coefficients, reference_evalmod


def precision_bits(err: np.ndarray) -> dict[str, float]:
    """{"mean_bits", "min_bits", "rms_bits"} of an error vector (|error| floored at 2^-60)."""
    a = np.maximum(np.abs(np.asarray(err)), 2.0**-60)
    return dict(mean_bits=float(np.mean(-np.log2(a))), min_bits=float(-np.log2(np.max(a))),
                rms_bits=float(-0.5 * np.log2(np.mean(a * a))))


def _coeffs(bs: Bootstrapper, dec: Decryptor, ct: Ciphertext) -> np.ndarray:
    """The decrypted polynomial's coefficients, centred, as Python ints (exact CRT)."""
    d = dec.decrypt(ct).data.copy()
    idx = list(range(ct.level + 1))
    bs.ctx.intt(d, idx)
    return np.array([int(v) for v in bs.ctx.crt_compose(d, idx)], dtype=object)


def stage_errors(bs: Bootstrapper, secret_key: SecretKey, ct: Ciphertext) -> dict[str, dict[str, float]]:
    """Bootstrap ``ct`` stage by stage and return each stage's error (see the module docstring)
    as :func:`precision_bits` dicts, plus ``max_abs_I`` (the largest |I| seen after ModRaise).

    Raises ParameterError for sparse packing (only full packing is decomposed) and whatever
    :meth:`Bootstrapper.check_input` raises."""
    from ...errors import ParameterError

    params, pre = bs.params, bs.preset
    if bs.slots != params.slot_count or bs.input_range != 1.0:
        raise ParameterError("stage_errors decomposes full-packing bootstraps with input_range 1 only")
    bs.check_input(ct)
    n = params.slot_count
    enc, dec = Encoder(bs.ev.context), Decryptor(params, secret_key)
    q0, d0 = params.moduli[0], params.level_scale(0)
    boost = 2.0**bs.sine_headroom_bits
    c = 2 * np.pi * d0 * boost / q0  # sin(2πt) ≈ c·m near integers
    m = np.array([float(v) for v in _coeffs(bs, dec, ct)]) / params.level_scale(ct.level)
    br = dft.bit_reverse_indices(n)

    def slots(e_w: np.ndarray) -> np.ndarray:  # w-domain error (n complex) → slot error U·e
        return enc.embed(np.concatenate([e_w.real, e_w.imag]))

    def pair(v) -> np.ndarray:  # 2n coefficients (or the two CtS/EvalMod parts) → w = lo + i·hi
        return v[0] + 1j * v[1] if isinstance(v, list) else v[:n] + 1j * v[n:]

    out: dict = {}
    raised = bs.mod_raise(ct)
    cf = _coeffs(bs, dec, raised)
    ii = np.array([(2 * int(v) + q0) // (2 * q0) for v in cf])
    rem = np.array([float(int(v) - int(i) * q0) for v, i in zip(cf, ii)])
    t = ii.astype(np.float64) + rem / q0
    out["encapsulation"] = precision_bits(slots(pair(rem / (d0 * boost) - m)))
    out["max_abs_I"] = int(np.max(np.abs(ii)))
    parts = bs.coeffs_to_slots(raised)
    t_cts = np.zeros(2 * n)
    for k, p in enumerate(parts):
        t_cts[br + k * n] = enc.decode(dec.decrypt(p)).real * bs.k
    out["coeffs_to_slots"] = precision_bits(slots(pair((t_cts - t) * 2 * np.pi / c)))
    mods = [bs.eval_mod(p) for p in parts]
    got = []
    for p in mods:
        g = np.zeros(n, dtype=np.complex128)
        g[br] = enc.decode(dec.decrypt(p)) * 2.0 ** (pre.sine_headroom_bits - bs.sine_headroom_bits)
        got.append(g)
    model = (lambda x: reference_evalmod(x, pre.eval_mod_k, pre.double_angle, pre.cheb_degree,
                                         pre.arcsine_degree) / c)
    sine = np.sin(2 * np.pi * t)
    if pre.arcsine_degree:  # the function EvalMod approximates: arcsine polynomial of the sine
        sine = np.polynomial.polynomial.polyval(sine, arcsine_coefficients(pre.arcsine_degree))
    out["evalmod_sine"] = precision_bits(slots(pair(sine / c - m)))
    out["evalmod_approximation"] = precision_bits(slots(pair(model(t) - m)))
    out["evalmod_rounding"] = precision_bits(slots(pair(got) - pair(model(t_cts))))
    final = enc.decode(dec.decrypt(bs.slots_to_coeffs(mods)))
    out["slots_to_coeffs"] = precision_bits(final - slots(pair(got)))
    out["total"] = precision_bits(final - enc.embed(m))
    return out
