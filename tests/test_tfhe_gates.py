"""The one gate table (wavis/tfhe/gates.py): its linear combinations compute every gate's truth
table on noiseless phases, and batched evaluation on the CPU backend matches plaintext logic for
mixed batches, single-gate batches and bootstrap-free (NOT-only) batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wavis import tfhe
from wavis.tfhe.gates import GATE_ARITY, GATE_BOOTSTRAPS, GATES, MU, OPS

TRUTH = {"NAND": lambda a, b, s: not (a and b), "AND": lambda a, b, s: a and b, "OR": lambda a, b, s: a or b,
         "XOR": lambda a, b, s: a != b, "NOR": lambda a, b, s: not (a or b), "XNOR": lambda a, b, s: a == b,
         "NOT": lambda a, b, s: not a, "MUX": lambda a, b, s: a if s else b}


def _phase(x: int) -> float:
    """Signed torus phase of a uint32 word, in [-1/2, 1/2)."""
    return ((x + 2**31) % 2**32 - 2**31) / 2**32


@pytest.mark.parametrize("name", sorted(GATES))
def test_table_computes_the_truth_table_on_noiseless_phases(name):
    g = GATES[name]
    for a, b, s in itertools.product([False, True], repeat=3):
        enc = [MU if v else -MU for v in (a, b, s)]
        if g.linear is not None:
            out = sum(c * e for c, e in zip(g.linear[:3], enc)) + g.linear[3] * MU
        else:
            boots = []
            for ca, cb, cs, off in g.terms:
                ph = _phase((ca * enc[0] + cb * enc[1] + cs * enc[2] + off * MU) % 2**32)
                assert abs(abs(ph) - 0.25) < 0.25 and ph != 0  # a bootstrap input well inside a half
                boots.append(MU if ph > 0 else -MU)
            out = sum(boots) + g.post * MU
        assert _phase(out % 2**32) == (0.125 if TRUTH[name](a, b, s) else -0.125), (name, a, b, s)


def test_derived_tables():
    assert GATE_BOOTSTRAPS == {"NAND": 1, "AND": 1, "OR": 1, "XOR": 1, "NOR": 1, "XNOR": 1, "NOT": 0, "MUX": 2}
    assert GATE_ARITY["MUX"] == 3 and GATE_ARITY["NOT"] == 1 and len(set(OPS.values())) == 8
    assert tfhe.GATE_BOOTSTRAPS is GATE_BOOTSTRAPS and tfhe.OPS is OPS  # one table, re-exported


@pytest.fixture(scope="module")
def keys():
    return tfhe.keygen("testing", seed=b"g" * 32)


@pytest.mark.parametrize("ops", [
    ["NOT", "NOT", "NOT"],                                   # no bootstrap at all
    ["MUX"] * 5,                                             # one gate type, two terms each
    ["XOR", "NOT", "MUX", "AND", "MUX", "NAND", "OR", "NOR", "XNOR", "NOT"],  # mixed, MUX interleaved
])
def test_batched_evaluation_matches_plaintext(keys, ops):
    ck, sk = keys
    rng = np.random.default_rng(len(ops))
    x, y, s = (rng.integers(0, 2, len(ops)).astype(bool) for _ in range(3))
    out = sk.evaluate_batch(ops, ck.encrypt(x), ck.encrypt(y), ck.encrypt(s))
    want = [TRUTH[o](bool(a), bool(b), bool(c)) for o, a, b, c in zip(ops, x, y, s)]
    assert list(ck.decrypt(out)) == want
