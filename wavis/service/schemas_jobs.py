"""pydantic models of the job endpoints (API.md "Compute": GET/DELETE /jobs/{id}, GET /jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .schemas import Response

JobStatus = Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]


class JobAccepted(Response):
    """202 of an ``"async": true`` request: poll ``GET /jobs/{job_id}``."""

    job_id: str
    status: Literal["QUEUED"]
    operation: str
    created_at: datetime
    expires_at: datetime


class JobError(Response):
    code: str
    message: str
    status: int
    details: dict[str, Any] | None = None


class JobResponse(Response):
    """A job and, once COMPLETED, its result fields: CKKS ``result_ciphertext_id`` (fetch it
    with GET /ciphertexts/{id}), ``level``, ``scale_bits``, ``noise_budget_remaining``; TFHE
    ``result_b64`` (gate) or ``results_b64`` (batch) for asynchronous jobs (synchronous TFHE
    outputs travel only in their response and are not kept)."""

    job_id: str
    kind: str
    operation: str
    status: JobStatus
    batch_size: int | None  # jobs that shared its backend call
    attempts: int
    cost_units: int
    cost_jpy: float
    cost_usd: float = Field(0.0, description="list price in USD (pricing.py; cost_jpy at the fixed JPY_PER_USD rate)")
    queue_time_ms: float | None
    compute_time_ms: float | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime
    error: JobError | None = None
    result_ciphertext_id: str | None = None
    level: int | None = None
    scale_bits: float | None = None
    noise_budget_remaining: float | None = None
    evicted_ciphertext_ids: list[str] | None = None
    result_b64: str | None = None
    results_b64: list[str] | None = None
    levels: int | None = None


class JobList(Response):
    data: list[JobResponse]
    next_cursor: str | None
    has_more: bool


class JobCancelled(Response):
    job_id: str
    status: Literal["CANCELLED"]
