"""pydantic v2 models of the encrypted-inference endpoints (API.md §Models): the catalogue
(``GET /models``) and ``POST /models/{id}/infer``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .schemas import ComputeRequest, ComputeResponse, Id, Response


class ModelEntry(Response):
    """One catalogue model (docs/models.md explains every field)."""

    id: str
    name: str
    task: str
    input_shape: list[int]
    output_shape: list[int]
    input_encoding: dict[str, Any]
    output_decoding: dict[str, Any]
    params_required: dict[str, Any]
    levels_consumed: int
    galois_steps_required: list[int]
    bootstrappable: bool
    min_levels: int  # levels a key needs at least (between bootstraps for a bootstrappable model)
    bootstraps_per_inference: int  # at params_required
    operations: dict[str, int]
    fcu_per_inference: int
    async_only: bool  # served as an asynchronous job only (latency > half the request timeout)
    accuracy_plaintext: float | None
    accuracy_encrypted: float | None
    accuracy_ci95: list[float] | None = None
    accuracy_samples: int | None = None
    latency_ms_cpu: float | None
    latency_note: str | None = None
    measured_by: str | None = None
    dataset: str
    trained_by: str


class ModelList(Response):
    models: list[ModelEntry]


class InferRequest(ComputeRequest):
    """``key_id`` and one ciphertext of inputs packed as the model's ``input_encoding`` says
    (up to ``max_batch`` samples per ciphertext)."""

    ciphertext_ids: Annotated[list[Id], Field(min_length=1, max_length=1)]


class InferResponse(ComputeResponse):
    """The encrypted output (like a compute response) plus the model and how to read it."""

    model_id: str
    levels_consumed: int
    output_decoding: dict[str, Any]
