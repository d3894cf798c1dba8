"""pydantic v2 models of the CKKS compute requests (one per operation shape) and of the
``?matmul_shape=`` extension of ``GET /keys/{id}``. The common request fields and the
response (``ComputeRequest``, ``ComputeResponse``) live in ``schemas.py``.

Float fields accept any JSON number, and also the non-standard ``NaN`` / ``Infinity``
literals: the operation itself rejects non-finite values with 400 (API.md: "non-finite →
400"), so such a body is a clear ``INVALID_PLAINTEXT``, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt

from .schemas import ComputeRequest, Id, KeyResponse, Response

# more than 65 coefficients is a 400 from the operation (API.md: ≤ 65); this only bounds the list
MAX_POLY_COEFFS_BODY = 1024
# plain operands are checked against the key's slot count (≤ 32768) by the operation;
# this bound only keeps a hostile body from becoming a huge Python list first
MAX_PLAIN_VALUES = 65536



# JSON numbers only: strict mode refuses "1" and true (an int is still a valid float)
Number = Annotated[float, Field(strict=True)]

class BinaryOp(ComputeRequest):
    """add, subtract, multiply, inner-product: two ciphertexts under ``key_id``."""

    ciphertext_ids: Annotated[list[Id], Field(min_length=2, max_length=2)]


class UnaryOp(ComputeRequest):
    """negate, rescale, conjugate, sum, bootstrap: one ciphertext."""

    ciphertext_ids: Annotated[list[Id], Field(min_length=1, max_length=1)]


class PlainOp(UnaryOp):
    """add-plain, multiply-plain: ``plain_operand`` (≤ slot_count values, zero-padded)."""

    plain_operand: Annotated[list[Number], Field(min_length=1, max_length=MAX_PLAIN_VALUES)]


class RotateOp(UnaryOp):
    """rotate: any integer; normalised modulo slot_count; positive = left; 0 = copy."""

    steps: StrictInt


class MatmulOp(UnaryOp):
    """matmul: plaintext matrix M (rows × cols, both ≤ slot_count); result slots = M·x."""

    matrix: Annotated[list[Annotated[list[Number], Field(min_length=1)]], Field(min_length=1)]


class PolyEvalOp(UnaryOp):
    """poly-eval: ≤ 65 coefficients, lowest degree first."""

    polynomial_coeffs: Annotated[list[Number], Field(min_length=1, max_length=MAX_POLY_COEFFS_BODY)]
    basis: Literal["power", "chebyshev"] = "power"
    interval: tuple[Number, Number] | None = None


class BootstrapOp(UnaryOp):
    """bootstrap: ``slots`` (sparse packing: a power of two < N/2; the message must be
    slots-periodic), ``input_range`` (declared bound R on |Re|, |Im| of every slot; default 1),
    ``iterations`` (1, default, or 2: META-BTS, two bootstraps for a more precise result,
    charged per iteration: ``pricing.PRICED_PER_ITERATION``)."""

    slots: StrictInt | None = None
    input_range: Number | None = None
    iterations: StrictInt | None = None


class ComputeRequestDoc(ComputeRequest):
    """Every field any operation takes (the OpenAPI document's view of the request); each
    operation accepts only its own (``BinaryOp``, ``UnaryOp``, ``PlainOp``, ``RotateOp``,
    ``MatmulOp``, ``PolyEvalOp``): 1 id for unary operations, 2 for add, subtract, multiply and
    inner-product."""

    plain_operand: list[Number] | None = None
    steps: int | None = None
    matrix: list[list[Number]] | None = None
    polynomial_coeffs: list[Number] | None = None
    basis: Literal["power", "chebyshev"] | None = None
    interval: tuple[Number, Number] | None = None
    slots: int | None = None
    input_range: Number | None = None
    iterations: int | None = Field(
        None, description="bootstrap only: 1 (default) or 2 (META-BTS: two bootstraps for a more precise result; "
                          "charged per iteration, 2 × 50 FCU, and admitted at twice the CPU)")


class MatmulKeyInfo(Response):
    """What a ``rows × cols`` matmul needs from this key (``GET /keys/{id}?matmul_shape=RxC``)."""

    rows: int
    cols: int
    galois_steps_required: list[int]
    galois_steps_missing: list[int]  # required steps without a Galois key of their own
    composable: bool  # every missing step can be composed from the key's other Galois keys (slower)
    ready: bool  # matmul of this shape will run (directly or composed)


class KeyWithMatmulResponse(KeyResponse):
    """``GET /keys/{id}``; ``matmul`` only with ``?matmul_shape=ROWSxCOLS``."""

    matmul: MatmulKeyInfo | None = None
