"""pydantic v2 models for every request and response body (the OpenAPI document of issue 5
is generated from these). Requests forbid unknown fields so typos fail loudly (422)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from wavis.client.ckks import API_MAX_DEPTH


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


Id = Annotated[str, Field(min_length=1, max_length=64)]
B64 = Annotated[str, Field(min_length=1)]


# --- errors ---------------------------------------------------------------------------------

class ErrorDetail(Response):
    code: str
    message: str
    request_id: str
    details: dict[str, Any] | None = None


class ErrorResponse(Response):
    error: ErrorDetail


# --- health -----------------------------------------------------------------------------------

class Dependency(Response):
    name: Literal["postgres", "redis", "stripe"]
    status: Literal["healthy", "degraded", "unavailable", "not_configured"]
    latency_ms: float | None = None
    error: str | None = None


class BodyLimits(Response):
    """[ours] The request-body limits this server enforces (``Settings.limits``; API.md "Sizes"), so a
    client sizes its uploads from the server it talks to rather than from constants of its own."""

    default_body_bytes: int = Field(description="any body without a limit of its own (413 PAYLOAD_TOO_LARGE above)")
    ciphertext_body_bytes: int = Field(description=(
        "a ciphertext upload; a key whose fresh ciphertexts are larger raises it for that key "
        "(its ciphertext_upload_limit_bytes)"))
    key_upload_body_bytes: int = Field(description=(
        "POST /keys/upload and each POST /keys/{key_id}/galois-keys chunk (the SDK sizes its key chunks from it)"))
    key_chunk_max_bytes: int = Field(description=(
        "a key chunk holding one key-switching key larger than key_upload_body_bytes may reach this size"))


class HealthResponse(Response):
    status: Literal["healthy", "degraded", "unavailable"]
    version: str
    uptime_seconds: float
    fhe_engine: str
    backend: Literal["cpu", "cuda"]
    gpu_available: bool
    gpu_name: str | None
    # [ours] the compute device's name (CPU model, GPU name) and the host core's SIMD path
    # (portable/avx2/avx512/ifma); None when the configured backend cannot start
    device_name: str | None = None
    simd_path: str | None = None
    backend_error: str | None = None  # [ours] why the configured backend (WAVIS_BACKEND) cannot start
    active_sessions: int
    active_jobs: int
    queue_depth: int
    ciphertext_cache_usage_pct: float | None
    ciphertext_cache_warning: bool
    ciphertext_evictions_total: int | None = None  # [ours] LRU evictions since the store began
    # [ours] every deletion from the durable store by reason: lru, ttl, key_deleted, deleted
    ciphertext_deletions_total: dict[str, int] | None = None
    maintenance: bool = False  # [ours]
    limits: BodyLimits | None = None  # [ours] the body limits clients size uploads from
    dependencies: list[Dependency]


class ProbeResponse(Response):
    status: Literal["ok", "unavailable", "shutting_down"]
    checks: dict[str, str] | None = None


# --- onboarding -----------------------------------------------------------------------------

class TempKeyResponse(Response):
    api_key: str
    expires_at: datetime
    ops_limit: int
    message: str


class TempKeyRevoked(Response):
    revoked: bool


# --- API keys -------------------------------------------------------------------------------

class ApiKeyItem(Response):
    id: str
    prefix: str
    environment: Literal["live", "test", "dev", "trial"]
    role: Literal["viewer", "developer", "account_admin", "trial"]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None


class ApiKeyList(Response):
    data: list[ApiKeyItem]
    next_cursor: str | None
    has_more: bool


class ApiKeyCreateRequest(Request):
    environment: Literal["live", "test", "dev"]
    role: Literal["viewer", "developer", "account_admin"] = "developer"


class ApiKeyCreated(ApiKeyItem):
    key: str  # shown once


class ApiKeyRotated(Response):
    new_api_key: str
    old_key_prefix: str
    grace_period_ends_at: datetime
    environment: Literal["live", "test", "dev", "trial"]


# --- FHE keys -------------------------------------------------------------------------------

# API.md "CKKS params": max_depth 1–24 (the library, ``wavis.ckks.CkksParameters``, allows 0..60; the
# API's range is checked with the literal, ``fhe.request_params``, → 400 INVALID_PARAMS). Defined once,
# in the SDK (``wavis.client.ckks.API_MAX_DEPTH``, imported above), so that the CLI refuses the same
# range before it makes keys.


class CkksParams(BaseModel):
    """CKKS parameter literal; values are validated by ``wavis.ckks.CkksParameters``
    (→ 400 INVALID_PARAMS / INSUFFICIENT_SECURITY), ``max_depth`` also against the API's range
    1–24. With ``bootstrap_preset`` the preset fixes ``poly_degree`` (and the fields it names), so
    they may be left out; given, they must agree with it (400 INVALID_PARAMS naming both).
    Extra fields pass through to it."""

    model_config = ConfigDict(extra="allow")
    # JSON integers only (strict): `true` or "40" for a size is a 422, never 1 or 40
    poly_degree: Annotated[int | None, Field(strict=True, description=(
        "ring degree N; required unless bootstrap_preset is given (the preset fixes it)"))] = None
    scale_bits: Annotated[int, Field(strict=True)] = 40
    max_depth: Annotated[int, Field(strict=True, description=(
        f"levels (rescales) a fresh ciphertext allows, {API_MAX_DEPTH[0]}..{API_MAX_DEPTH[1]} (400 INVALID_PARAMS "
        "outside); with bootstrap_preset the levels left after each bootstrap (default: the preset's)"))] = 5
    security_level: Literal["testing", "128-bit", "192-bit", "256-bit"] = "128-bit"
    # [ours] the chain's other sizes (docs/ckks.md "Parameters and security"); left out, the
    # library picks them, and the key's `params` in every response carries what it picked, to be
    # sent back unchanged (a key's fingerprint covers all of them)
    first_mod_bits: Annotated[int | None, Field(strict=True, description=(
        "bits of q_0 (default min(60, scale_bits + 20))"))] = None
    special_mod_bits: Annotated[int | None, Field(strict=True, description=(
        "bits of each special prime, 20..61 (default: 50 or 49 where the chain fits the security bound, "
        "else 61; docs/ckks.md)"))] = None
    dnum: Annotated[int | None, Field(strict=True, description=(
        "key-switching digits (default: the fewest that fit the security bound)"))] = None
    magnitude_bits: Annotated[int | None, Field(strict=True, description=(
        "declared input bound: |values| < 2^magnitude_bits (default 19)"))] = None
    bootstrap_preset: Annotated[str | None, Field(strict=True, description=(
        "a bootstrapping preset (n65536, n32768, …); it fixes poly_degree, scale_bits, first_mod_bits, "
        "special_mod_bits and security_level, and max_depth counts the levels left after each bootstrap"))] = None


class KeyUploadRequest(Request):
    public_key: B64
    # [ours] may be left out for a bootstrap preset's key set: every key then goes up through
    # POST /keys/{id}/galois-keys (at N = 2^16 each key-switching key is ~43 MB, too large to
    # travel beside the public key within one request)
    eval_key: B64 | None = None
    scheme: Literal["ckks", "rns-ckks"] = "rns-ckks"
    params: CkksParams


class GaloisKeysRequest(Request):
    """A chunk of evaluation keys for an uploaded key: base64 of an EvaluationKeys blob of the
    same key pair holding Galois keys and/or the relinearization key (and, for bootstrap presets,
    the encapsulation keys)."""

    eval_key: B64


class KeyGenerateRequest(Request):
    scheme: Literal["ckks", "rns-ckks"] = "rns-ckks"
    params: CkksParams
    rotation_steps: Annotated[list[StrictInt], Field(max_length=64)] = []
    bootstrappable: StrictBool = False  # JSON true/false only, not "yes" or 1
    bootstrap_preset: str | None = None  # [ours] same as params.bootstrap_preset
    bootstrap_slots: StrictInt | None = None  # [ours] sparse packing: the slot count the bootstrap keys are for


class KeyResponse(Response):
    key_id: str
    scheme: str
    slot_count: int
    params: dict[str, Any]
    galois_steps: list[int]
    conjugation: bool
    max_level: int
    created_at: datetime
    blind_guarantee: bool
    ciphertext_upload_limit_bytes: int
    insecure: bool = False  # [ours] `testing` parameters, accepted only in the operator's insecure mode
    magnitude_bound: float | None = None  # [ours] |values| must stay below this (2^magnitude_bits), else they wrap


class KeyGenerated(KeyResponse):
    secret_key: str | None = None  # only with WAVIS_ALLOW_SK_IN_RESPONSE=true


class KeyList(Response):
    data: list[KeyResponse]
    next_cursor: str | None
    has_more: bool


class KeyDeleted(Response):
    deleted: bool
    ciphertexts_deleted: int


# --- ciphertexts ------------------------------------------------------------------------------

class CiphertextUploadRequest(Request):
    key_id: Id
    ciphertext_b64: B64


class CiphertextMeta(Response):
    ciphertext_id: str
    key_id: str
    level: int
    scale_bits: float
    slots: int
    size_bytes: int
    provenance: Literal["server", "client"] = "client"  # [ours] server-produced all the way down, or not
    created_at: datetime
    expires_at: datetime


class CiphertextData(CiphertextMeta):
    ciphertext_b64: str


class CiphertextCreated(CiphertextMeta):
    evicted_ciphertext_ids: list[str] = []  # [ours] ids the LRU store evicted to make room


class EncryptRequest(Request):
    key_id: Id
    values: Annotated[list[float], Field(min_length=1, max_length=65536)]


class DecryptResponse(Response):
    values: list[float]  # noise-flooded, rounded to multiples of 2^-precision_bits
    precision_bits: int  # [ours] absolute precision kept after flooding
    statistical_bits: int  # [ours] s: the flood's standard deviation is 2^s·B
    noise_bound_log2: float  # [ours] log2 B, the bound on the decryption error's norm


# --- compute ----------------------------------------------------------------------------------

class ComputeRequest(Request):
    key_id: Id
    ciphertext_ids: Annotated[list[Id], Field(min_length=1, max_length=2)]
    async_: bool = Field(default=False, alias="async", strict=True)
    scale_stable: bool = Field(default=False, strict=True)  # JSON true/false only, not "yes"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BinaryComputeRequest(ComputeRequest):
    ciphertext_ids: Annotated[list[Id], Field(min_length=2, max_length=2)]


class UnaryComputeRequest(ComputeRequest):
    ciphertext_ids: Annotated[list[Id], Field(min_length=1, max_length=1)]


class ComputeResponse(Response):
    job_id: str
    status: Literal["COMPLETED"]
    operation: str
    result_ciphertext_id: str
    result_ciphertext: str
    level: int
    scale_bits: float
    compute_time_ms: float
    queue_time_ms: float
    noise_budget_remaining: float
    evicted_ciphertext_ids: list[str]
    cost_units: int
    cost_jpy: float
    cost_usd: float = Field(0.0, description="list price in USD (pricing.py; cost_jpy at the fixed JPY_PER_USD rate)")
    bootstrap_applied: bool
    bootstrap_effective_degree: int | None
    bootstrap_degraded: bool
    precision_bits_expected: float | None = None  # [ours] bootstrap: the preset's measured mean precision
    expires_at: datetime
    batch_size: int = 1  # jobs that shared this job's backend call
