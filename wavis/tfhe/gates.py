"""The one gate table of TFHE Boolean gate bootstrapping, and batched gate evaluation on a backend's
:class:`~wavis.backend.protocol.LweOps`.

Encoding: true = +1/8, false = −1/8 on the 32-bit torus (:data:`MU` = 2^29). A gate is a list of
bootstrap *terms*; each term is the linear combination ``c_a·a + c_b·b + c_sel·sel + offset·MU`` of
the operands (all mod 2^32), bootstrapped with the test vector MU·(1 + X + … + X^{N−1}) (its sign
gives ±MU); the big-key results of a gate's terms are summed, ``post·MU`` is added, and the sum is
key-switched back to the small key. A gate without terms is linear (NOT: −a, no bootstrap).
(Chillotti–Gama–Georgieva–Izabachène, J. Cryptology 33 (2020), §5: gate bootstrapping; MUX as
two bootstraps summed before one key switch.)

This table is the only place the gates are written: the C++ core and the CUDA kernels get the
linear combinations already applied and only the test-vector value ``MU`` as a parameter, and
the service's pricing reads :data:`GATE_BOOTSTRAPS` from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

MU = 1 << 29  # 1/8 on the 32-bit torus
_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Gate:
    """One Boolean gate: ``terms`` ((c_a, c_b, c_sel, offset) per bootstrap, offset in units of MU),
    ``post`` (added to the sum of the bootstrapped terms, units of MU), ``linear`` (the output
    combination of a gate without bootstrap), ``arity`` (operands read: a, b, sel)."""

    name: str
    code: int
    arity: int
    terms: tuple[tuple[int, int, int, int], ...] = ()
    post: int = 0
    linear: tuple[int, int, int, int] | None = None

    @property
    def bootstraps(self) -> int:
        return len(self.terms)


#: name -> gate (MUX(a, b, sel) = a if sel else b)
GATES: dict[str, Gate] = {g.name: g for g in (
    Gate("NAND", 0, 2, ((-1, -1, 0, 1),)),
    Gate("AND", 1, 2, ((1, 1, 0, -1),)),
    Gate("OR", 2, 2, ((1, 1, 0, 1),)),
    Gate("XOR", 3, 2, ((2, 2, 0, 2),)),
    Gate("NOR", 4, 2, ((-1, -1, 0, -1),)),
    Gate("XNOR", 5, 2, ((-2, -2, 0, -2),)),
    Gate("NOT", 6, 1, linear=(-1, 0, 0, 0)),
    # sel AND a, (NOT sel) AND b: exactly one is +1/8; their sum + 1/8 is ±1/8 as a is
    Gate("MUX", 7, 3, ((1, 0, 1, -1), (0, 1, -1, -1)), post=1),
)}

#: gate name -> op code (stable; the wire format of circuits names gates, not codes)
OPS = {name: g.code for name, g in GATES.items()}
#: bootstraps each gate costs (what /tfhe/pricing charges): NOT 0, MUX 2, the others 1
GATE_BOOTSTRAPS = {name: g.bootstraps for name, g in GATES.items()}
#: operands each gate reads (a, b, sel)
GATE_ARITY = {name: g.arity for name, g in GATES.items()}


def normalize_op(op: str) -> str:
    """The canonical (upper-case) gate name. Raises ParameterError for an unknown gate."""
    name = str(op).upper()
    if name not in GATES:
        raise ParameterError(f"unknown TFHE gate {op!r}", allowed=list(GATES))
    return name


def bootstraps(op: str) -> int:
    """Bootstraps one gate costs (0 for NOT, 2 for MUX, else 1)."""
    return GATES[normalize_op(op)].bootstraps


def _combine(coeffs: tuple[int, int, int, int], A: np.ndarray, B: np.ndarray, S: np.ndarray) -> np.ndarray:
    """c_a·A + c_b·B + c_sel·S (+ offset·MU on the body), mod 2^32, rows (g, n+1) uint32."""
    ca, cb, cs, off = coeffs
    out = np.zeros(A.shape, dtype=np.uint32)
    for c, x in ((ca, A), (cb, B), (cs, S)):
        if c:
            out += np.uint32(c & _M32) * x
    out[:, -1] += np.uint32((off * MU) & _M32)
    return out


def evaluate(lwe, key, names: list[str], A: np.ndarray, B: np.ndarray, S: np.ndarray, threads: int = 0) -> np.ndarray:
    """Evaluate m gates ``names`` on operand rows A, B, S (uint32 (m, n+1), already key-checked; rows
    a gate does not read are ignored) with the backend's LweOps ``lwe`` and resident server key
    ``key``: linear combinations here, one batched :meth:`bootstrap` of every term, the term sums,
    one batched :meth:`key_switch`. Returns uint32 (m, n+1)."""
    m = len(names)
    present = [GATES[nm] for nm in dict.fromkeys(names)]  # distinct gates, first-seen order
    if len(present) == 1 and present[0].linear is not None:  # e.g. only NOT: no bootstrap at all
        return _combine(present[0].linear, A, B, S)
    out = np.empty(A.shape, dtype=np.uint32)
    if len(present) == 1:
        rows_of = {present[0].name: np.arange(m)}
    else:
        arr = np.asarray(names)
        rows_of = {g.name: np.nonzero(arr == g.name)[0] for g in present}
    boot_mask = np.zeros(m, dtype=bool)
    for g in present:
        if g.bootstraps:
            boot_mask[rows_of[g.name]] = True
    boot = np.nonzero(boot_mask)[0]  # gates that bootstrap, in gate order
    pos_of = np.full(m, -1, dtype=np.int64)
    pos_of[boot] = np.arange(boot.size)
    jobs: list[np.ndarray] = []
    first = np.empty(boot.size, dtype=np.int64)  # job of each bootstrapped gate's first term
    extra: list[tuple[np.ndarray, np.ndarray]] = []  # (gate positions, jobs) of further terms
    posts = np.zeros(boot.size, dtype=np.int64)
    J = 0
    for g in present:
        rows = rows_of[g.name]
        if g.linear is not None:
            out[rows] = _combine(g.linear, A[rows], B[rows], S[rows])
            continue
        pos = pos_of[rows]
        for t, coeffs in enumerate(g.terms):
            jobs.append(_combine(coeffs, A[rows], B[rows], S[rows]))
            idx = np.arange(J, J + rows.size)
            J += rows.size
            if t == 0:
                first[pos] = idx
            else:
                extra.append((pos, idx))
        posts[pos] = g.post
    if J == 0:
        return out
    big = lwe.bootstrap(key, lwe.asarray(np.concatenate(jobs)), MU, threads)
    if extra or not np.array_equal(first, np.arange(boot.size)):
        acc = big[lwe.asarray(first)]
        for pos, idx in extra:
            p = lwe.asarray(pos)
            acc[p] = acc[p] + big[lwe.asarray(idx)]
        big = acc
    if np.any(posts):
        big[:, -1] += lwe.asarray(((posts * MU) & _M32).astype(np.uint32))
    out[boot] = lwe.to_numpy(lwe.key_switch(key, big, threads))
    return out
