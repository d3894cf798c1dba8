"""The one owner of the lattice security table.

Maximum log2(Q·P) (total ciphertext + special modulus, bits) per ring degree N for a uniform
ternary secret and error σ ≈ 3.2, classical security:

* N ≤ 32768: the Homomorphic Encryption Standard (Albrecht et al., "Homomorphic Encryption
  Security Standard", HomomorphicEncryption.org, 2018, Table 1, ternary secret);
* N = 65536: OpenFHE's extension of that table, ``StdLatticeParm`` entries
  ``HEStd_ternary`` in ``src/core/lib/lattice/stdlatticeparms.cpp`` (openfhe-development,
  e.g. commit 7b8346f4eac27121543e36c17237b919e03ec058): 1747 / 1199 / 929 bits for
  128 / 192 / 256-bit security.

These are the values OpenFHE (and, for N ≤ 32768, SEAL) enforce; every entry is the cited
source's number, not a derived one.
"""

from __future__ import annotations

from ..errors import ParameterError

SECURITY_LEVELS = ("testing", "128-bit", "192-bit", "256-bit")

#: max log2(QP) in bits, indexed [security level][N]
MAX_LOG_QP: dict[str, dict[int, int]] = {
    "128-bit": {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881, 65536: 1747},
    "192-bit": {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611, 65536: 1199},
    "256-bit": {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476, 65536: 929},
}


def max_log_qp(poly_degree: int, security_level: str) -> int | None:
    """Largest admissible log2(Q·P) in bits, or None for ``"testing"`` (no bound).

    Raises:
        ParameterError: unknown security level, or a ring degree the table does not list
            (e.g. N = 64 or 256 at a real security level).
    """
    if security_level not in SECURITY_LEVELS:
        raise ParameterError(
            f"security_level must be one of {SECURITY_LEVELS}, got {security_level!r}",
            field="security_level",
        )
    if security_level == "testing":
        return None
    table = MAX_LOG_QP[security_level]
    if poly_degree not in table:
        raise ParameterError(
            f"poly_degree {poly_degree} has no {security_level} entry in the HE Standard table; "
            f"use one of {sorted(table)} or security_level='testing'",
            field="poly_degree",
        )
    return table[poly_degree]
