"""pydantic v2 models of the TFHE endpoints (API.md "TFHE (Boolean gates)")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, ConfigDict, Field, RootModel, model_validator

from .schemas import B64, Id, Request, Response

MAX_BATCH = 1024  # gates per /tfhe/batch (more → 400 BATCH_TOO_LARGE); bits per encrypt/decrypt

Preset = Literal["fast_128", "standard_128", "conservative_128"]
GateName = Literal["NAND", "AND", "OR", "XOR", "NOR", "XNOR", "NOT", "MUX"]
ARITY: dict[str, tuple[str, ...]] = {
    "NAND": ("a", "b"), "AND": ("a", "b"), "OR": ("a", "b"), "XOR": ("a", "b"), "NOR": ("a", "b"),
    "XNOR": ("a", "b"), "NOT": ("a",), "MUX": ("a", "b", "sel"),
}


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


def _bit(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if type(v) is int and v in (0, 1):
        return bool(v)
    raise ValueError("a bit is true/false (or 0/1)")


Op = Annotated[GateName, BeforeValidator(_upper)]
Bit = Annotated[bool, BeforeValidator(_bit)]
# a ciphertext (base64 of the wire format) or, in a batch, "$k": the output of gate k
Operand = Annotated[str, Field(min_length=1)]


def _check_operands(op: str, present: dict[str, Any]) -> None:
    needed = ARITY[op]
    missing = [n for n in needed if present.get(n) is None]
    extra = [n for n, v in present.items() if v is not None and n not in needed]
    if missing:
        raise ValueError(f"{op} needs operand(s) {', '.join(missing)}")
    if extra:
        raise ValueError(f"{op} takes no operand(s) {', '.join(extra)}")


# --- sessions -------------------------------------------------------------------------------------

class TfheSessionRequest(Request):
    preset: Preset = "standard_128"


class TfheEvalSessionRequest(Request):
    eval_key_b64: B64


class TfheSessionResponse(Response):
    session_id: str
    preset: str
    n: int
    big_n: int
    is_blind: bool
    created_at: datetime
    expires_at: datetime  # last use + the idle timeout (1 h); every use extends it


class DeletedResponse(Response):
    deleted: bool


class TfheEncryptRequest(Request):
    bit: Bit | None = None
    bits: Annotated[list[Bit], Field(min_length=1, max_length=MAX_BATCH)] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.bit is None) == (self.bits is None):
            raise ValueError("give exactly one of bit or bits")
        return self


class TfheEncryptOneResponse(Response):
    ciphertext_b64: str


class TfheEncryptManyResponse(Response):
    ciphertexts_b64: list[str]


class TfheEncryptResponse(RootModel[Union[TfheEncryptOneResponse, TfheEncryptManyResponse]]):
    """``{ciphertext_b64}`` for ``{bit}``, ``{ciphertexts_b64}`` for ``{bits}`` (the OpenAPI view)."""


class TfheDecryptRequest(Request):
    ciphertext_b64: B64 | None = None
    ciphertexts_b64: Annotated[list[B64], Field(min_length=1, max_length=MAX_BATCH)] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.ciphertext_b64 is None) == (self.ciphertexts_b64 is None):
            raise ValueError("give exactly one of ciphertext_b64 or ciphertexts_b64")
        return self


class TfheDecryptOneResponse(Response):
    bit: bool


class TfheDecryptManyResponse(Response):
    bits: list[bool]


class TfheDecryptResponse(RootModel[Union[TfheDecryptOneResponse, TfheDecryptManyResponse]]):
    """``{bit}`` for ``{ciphertext_b64}``, ``{bits}`` for ``{ciphertexts_b64}`` (the OpenAPI view)."""


# --- gates ------------------------------------------------------------------------------------------

class TfheGateRequest(Request):
    """MUX returns ``a`` where ``sel`` = 1 and ``b`` where ``sel`` = 0; NOT takes only ``a``."""

    session_id: Id
    op: Op
    a: B64
    b: B64 | None = None
    sel: B64 | None = None
    async_: bool = Field(default=False, alias="async", strict=True)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _arity(self):
        _check_operands(self.op, {"a": self.a, "b": self.b, "sel": self.sel})
        return self


class TfheGateResponse(Response):
    result_b64: str
    op: str
    bootstraps: int
    compute_time_ms: float
    queue_time_ms: float
    cost_units: int
    cost_jpy: float
    cost_usd: float = Field(0.0, description="list price in USD (pricing.py; cost_jpy at the fixed JPY_PER_USD rate)")
    job_id: str | None = None
    batch_size: int = 1  # jobs that shared this job's batched bootstrap


class TfheBatchGate(Request):
    op: Op
    a: Operand
    b: Operand | None = None
    sel: Operand | None = None

    @model_validator(mode="after")
    def _arity(self):
        _check_operands(self.op, {"a": self.a, "b": self.b, "sel": self.sel})
        return self


def _batch_size_first(v: Any) -> Any:
    """400 BATCH_TOO_LARGE before any gate is validated (a 1025-gate list with a bad gate is
    still "too large", and 100k gates are not validated one by one first). Raised as ApiError,
    which pydantic lets through (it only collects ValueError/AssertionError)."""
    if isinstance(v, list) and len(v) > MAX_BATCH:
        from .errors import ApiError  # noqa: PLC0415

        raise ApiError(400, "BATCH_TOO_LARGE", f"a batch holds at most {MAX_BATCH} gates, got {len(v)}",
                       {"max_gates": MAX_BATCH, "gates": len(v)})
    return v


class TfheBatchRequest(Request):
    session_id: Id
    gates: Annotated[list[TfheBatchGate], Field(min_length=1), BeforeValidator(_batch_size_first)]
    async_: bool = Field(default=False, alias="async", strict=True)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TfheBatchResponse(Response):
    results_b64: list[str]
    bootstraps: int
    levels: int  # circuit depth: 1 when every gate is independent
    compute_time_ms: float
    queue_time_ms: float
    cost_units: int
    cost_jpy: float
    cost_usd: float = Field(0.0, description="list price in USD (pricing.py; cost_jpy at the fixed JPY_PER_USD rate)")
    discount_pct: int
    job_id: str | None = None
    batch_size: int = 1  # jobs that shared this job's batched bootstrap


# --- pricing ----------------------------------------------------------------------------------------

class TfheGatePrice(Response):
    op: str
    bootstraps: int
    price: float


class TfheBatchDiscount(Response):
    min_ops: int
    pct: int


class TfhePresetMeasured(Response):
    """A failure run of the preset (benchmarks/bench_tfhe.py --failure-gates)."""

    gates: int
    bootstraps: int
    failures: int
    max_abs_error: float  # largest phase error seen (the decision margin is 0.125)
    output_var_single_ratio: float  # measured output variance / model V_out
    output_var_mux_ratio: float  # measured MUX output variance / model V_mux
    command: str


class TfhePresetInfo(Response):
    """One public preset: parameters, security by the current curves, failure probability
    (log2 per bootstrap) modelled and measured (wavis.tfhe.params.published_presets)."""

    name: str
    n: int
    k: int
    big_n: int
    pbs_base_log: int
    pbs_level: int
    ks_base_log: int
    ks_level: int
    lwe_noise_std: float
    glwe_noise_std: float
    security_bits: float  # the smaller of the two pairs' estimates
    security_bits_lwe: float
    security_bits_glwe: float
    security_source: str
    p_fail_bound_log2: int
    p_fail_log2_worst: float  # what the bound is checked against
    p_fail_log2_typical: float
    p_fail_log2_tfhe_rs_model: float
    output_noise_std: float
    measured: TfhePresetMeasured | None
    source: str


class TfhePricingResponse(Response):
    currency: Literal["JPY"]
    per_bootstrap: float
    batch_discount: TfheBatchDiscount
    gates: list[TfheGatePrice]
    presets: list[TfhePresetInfo]
