"""Jobs (API.md "Compute"): GET /jobs/{id}, GET /jobs (newest first, cursor pagination),
DELETE /jobs/{id} (cancels a job still QUEUED; 409 otherwise). Another account's job, and an
expired one, is 404."""

from __future__ import annotations

import math
from typing import Any

import asyncpg
from aiohttp import web

from .. import jobs, pagination, pricing
from ..dispatch import refund
from ..access import Access, access, doc, principal
from ..errors import ApiError, not_found
from ..schemas import ErrorResponse
from ..schemas_jobs import JobCancelled, JobList, JobResponse
from .util import db, json_response

routes = web.RouteTableDef()

LIST_SCOPE = "jobs"


def job_response(row: asyncpg.Record) -> JobResponse:
    result: dict[str, Any] = row["result"] or {}
    fields: dict[str, Any] = {}
    if row["status"] == jobs.COMPLETED and result:
        if row["kind"] == "ckks":
            scale = float(result.get("scale") or 0.0)
            fields = dict(result_ciphertext_id=result.get("result_ciphertext_id"), level=result.get("level"),
                          scale_bits=round(math.log2(scale), 6) if scale > 0 else None,
                          noise_budget_remaining=result.get("noise_budget_remaining"),
                          evicted_ciphertext_ids=result.get("evicted_ciphertext_ids"))
        elif row["kind"] == "tfhe":
            outs = result.get("results_b64")
            fields = dict(levels=result.get("levels"))
            if outs is not None and row["operation"] == "gate":
                fields["result_b64"] = outs[0]
            elif outs is not None:
                fields["results_b64"] = outs
    err = row["error"]
    return JobResponse(
        job_id=row["id"], kind=row["kind"], operation=row["operation"], status=row["status"],
        batch_size=row["batch_size"], attempts=row["attempts"], cost_units=row["cost_units"],
        cost_jpy=pricing.jpy_float(pricing.Decimal(str(row["cost_jpy"]))),
        cost_usd=pricing.usd_float(pricing.jpy_to_usd(row["cost_jpy"])),
        queue_time_ms=None if row["queue_ms"] is None else round(row["queue_ms"], 3),
        compute_time_ms=None if row["compute_ms"] is None else round(row["compute_ms"], 3),
        queued_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        expires_at=row["expires_at"],
        error=None if not err else dict(code=err.get("code", "INTERNAL_ERROR"), message=err.get("message", ""),
                                        status=int(err.get("status", 500)), details=err.get("details")),
        **fields,
    )


@routes.get("/jobs/{job_id}")
@access(Access.READ_PLUS)
@doc("A job: status, attempts, batch_size, timings, and its result or error",
     responses={200: JobResponse, 404: ErrorResponse})
async def get_job(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        row = await jobs.get(conn, p.account_id, request.match_info["job_id"])
    if row is None:
        raise not_found("job", job_id=request.match_info["job_id"])
    return json_response(job_response(row))


@routes.get("/jobs")
@access(Access.READ_PLUS)
@doc("This account's jobs, newest first (cursor pagination)", query=pagination.QUERY_DOC,
     responses={200: JobList, 400: ErrorResponse})
async def list_jobs(request: web.Request) -> web.Response:
    p = principal(request)
    scope = pagination.scope_of(LIST_SCOPE, p.account_id)
    page = pagination.page_from(request, scope)
    async with db(request) as conn:
        rows = await jobs.list_page(conn, p.account_id, page.limit, page.after)
    body = pagination.page_body(request, scope, page, rows, job_response)
    return json_response(JobList(**body))


@routes.delete("/jobs/{job_id}")
@access(Access.WRITE_PLUS)
@doc("Cancel a job still QUEUED (409 JOB_NOT_CANCELLABLE once it runs or ended)",
     responses={200: JobCancelled, 404: ErrorResponse, 409: ErrorResponse})
async def cancel_job(request: web.Request) -> web.Response:
    p = principal(request)
    job_id = request.match_info["job_id"]
    async with db(request) as conn:
        cancelled, status, payload = await jobs.cancel(conn, p.account_id, job_id)
    if status is None:
        raise not_found("job", job_id=job_id)
    if not cancelled:
        raise ApiError(409, "JOB_NOT_CANCELLABLE", f"the job is {status}; only a QUEUED job can be cancelled",
                       {"job_id": job_id, "status": status})
    await refund(request.app, payload)
    return json_response(JobCancelled(job_id=job_id, status="CANCELLED"))
