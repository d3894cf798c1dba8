"""POST /api/v1/compute/{operation}: CKKS operations on stored ciphertexts (API.md "Compute
(CKKS)"). One handler for every operation: a per-operation pydantic model checks the body,
the operands are loaded from the ciphertext store, and ``fhe.compute`` runs on the engine."""

from __future__ import annotations

import base64
import json
import math

from aiohttp import web

from .. import admission, fhe, jobs, metering, ops, pricing, repo
from ..dispatch import ckks_batch_key, timings
from ..access import Access, RouteBodyLimit, access, body_limit, doc, fcu, principal
from ..bodies import parse, read_body
from ..errors import ApiError, not_found
from ..schemas import ComputeRequest, ComputeResponse, ErrorResponse
from ..schemas_compute import (
    BinaryOp, BootstrapOp, ComputeRequestDoc, KeyWithMatmulResponse, MatmulKeyInfo, MatmulOp, PlainOp, PolyEvalOp,
    RotateOp, UnaryOp,
)
from ..schemas_jobs import JobAccepted
from ..state import DISPATCHER, ENGINE, IDEM_JOB_KEY, REPLAYED, SETTINGS
from .ciphertexts import evicted_ids, load_blobs, missing_ciphertext
from .keys import evaluator_for
from .util import db, json_response

routes = web.RouteTableDef()


REQUEST_MODELS: dict[str, type[ComputeRequest]] = {
    "add": BinaryOp, "subtract": BinaryOp, "multiply": BinaryOp, "inner-product": BinaryOp,
    "negate": UnaryOp, "rescale": UnaryOp, "conjugate": UnaryOp, "sum": UnaryOp, "bootstrap": BootstrapOp,
    "add-plain": PlainOp, "multiply-plain": PlainOp, "rotate": RotateOp, "matmul": MatmulOp,
    "poly-eval": PolyEvalOp,
}
# the response's bootstrap fields and their values for every other operation (docs/service.md)
BOOTSTRAP_FIELDS = {"bootstrap_applied": False, "bootstrap_effective_degree": None, "bootstrap_degraded": False,
                    "precision_bits_expected": None}
# fields of the request models that are the operation's own arguments (passed to fhe.compute)
OP_ARGS = ("plain_operand", "steps", "matrix", "polynomial_coeffs", "basis", "interval", "slots", "input_range",
           "iterations")

MiB = 1024 * 1024
MATMUL_BODY_LIMIT = 16 * MiB  # [ours] a matrix in JSON: 512×512 ≈ 5 MB


async def _compute_body_limit(request: web.Request) -> int:
    if request.match_info.get("operation") == "matmul":
        return MATMUL_BODY_LIMIT
    return request.app[SETTINGS].limits.default_body


def request_model(operation: str) -> type[ComputeRequest]:
    return REQUEST_MODELS[operation]


def parse_matmul_shape(text: str) -> tuple[int, int]:
    """``ROWSxCOLS`` (also ``×`` or ``,``) → (rows, cols); 400 INVALID_PARAMS otherwise."""
    for sep in ("x", "X", "×", ","):
        parts = text.split(sep)
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            rows, cols = (int(p) for p in parts)
            if rows > 0 and cols > 0:
                return rows, cols
    raise ApiError(400, "INVALID_PARAMS", "matmul_shape must look like ROWSxCOLS with positive integers, e.g. 64x64",
                   {"field": "matmul_shape", "got": text[:40]})


async def key_response_with_matmul(request: web.Request, key, base, shape: str) -> KeyWithMatmulResponse:
    """``GET /keys/{id}?matmul_shape=RxC``: the key's metadata plus the Galois steps a matmul
    of that shape needs and which of them the key lacks."""
    rows, cols = parse_matmul_shape(shape)
    slots = int(key["slot_count"])
    if rows > slots or cols > slots:
        raise ApiError(400, "INVALID_SHAPE", f"matrix {rows}×{cols} is larger than the key's {slots} slots",
                       {"rows": rows, "cols": cols, "slots": slots})
    params, evaluator = await evaluator_for(request, key)
    info = await request.app[ENGINE].run(fhe.matmul_info, params, evaluator, rows, cols)
    return KeyWithMatmulResponse(**base.model_dump(), matmul=MatmulKeyInfo(**info))


# compute operations whose memory/CPU depend on their parameters: ops.REGISTRY["compute/<op>"]
# and the request fields its cost takes
ADMITTED_OPERATIONS = {
    "matmul": lambda req: (len(req.matrix), max(len(r) for r in req.matrix)),
    "bootstrap": lambda req: (_iterations(req), req.slots if isinstance(req.slots, int) else None),
}


async def _operation_fcu(request: web.Request) -> int:
    """FCU of the requested operation (``pricing``), charged to the monthly window. An operation
    priced per iteration (``pricing.PRICED_PER_ITERATION``: bootstrap, whose META-BTS
    ``iterations: 2`` runs two bootstraps) reads ``iterations`` from the body (cached on the
    request by ``read_body`` for the handler); a body that is not JSON is priced as one iteration
    (the handler answers 422 and the charge is refunded)."""
    operation = request.match_info.get("operation", "")
    if operation not in pricing.PRICED_PER_ITERATION:
        return pricing.ckks_fcu(operation)
    try:
        data = json.loads(await read_body(request))
    except ValueError:  # not JSON (UnicodeDecodeError included)
        data = None
    iterations = data.get("iterations") if isinstance(data, dict) else None
    return pricing.ckks_fcu(operation, iterations if type(iterations) is int else 1)


def _iterations(req) -> int:
    """The request's iteration count as priced (``pricing.ckks_fcu``): 1 unless 1 or 2 is asked."""
    it = getattr(req, "iterations", None)
    return it if it in (1, 2) else 1


@routes.post("/compute/{operation}")
@access(Access.TRIAL_PLUS)
@body_limit(RouteBodyLimit(MATMUL_BODY_LIMIT, _compute_body_limit))
@fcu(_operation_fcu, job=True)
@doc("A CKKS operation on stored ciphertexts (operation: add, subtract, multiply, add-plain, multiply-plain, "
     "negate, rescale, rotate, conjugate, matmul, poly-eval, sum, inner-product, bootstrap)",
     request=ComputeRequestDoc,
     responses={200: ComputeResponse, 202: JobAccepted, 400: ErrorResponse, 402: ErrorResponse, 404: ErrorResponse,
                409: ErrorResponse, 422: ErrorResponse, 429: ErrorResponse, 501: ErrorResponse,
                503: ErrorResponse, 504: ErrorResponse})
async def compute(request: web.Request) -> web.Response:
    operation = request.match_info["operation"]
    if operation not in fhe.ALL_OPERATIONS:
        raise not_found("operation", operation=operation)
    if operation in fhe.NOT_BUILT:
        raise ApiError(501, "NOT_IMPLEMENTED",
                       f"operation {operation!r} is not available on this server yet (CKKS bootstrapping is not "
                       "built); plan the circuit's depth within max_depth, or re-encrypt fresh on the client",
                       {"operation": operation})
    p = principal(request)
    req = await parse(request, request_model(operation))
    key, rows = await load_operands(request, req.key_id, req.ciphertext_ids)

    # a retry (same Idempotency-Key and body) of a request whose job completed but whose answer
    # was lost: answered from that job, charged nothing more (it was metered when it completed)
    replay = await request.app[DISPATCHER].replay(p.account_id, request.get(IDEM_JOB_KEY), req.async_)
    if replay is not None:
        job_row, reply = replay
        request[REPLAYED] = True  # the request's FCU charge is given back (rate_limit middleware)
        metering.forget(request, pricing.ckks_fcu(operation, _iterations(req)))
        if reply is None:
            return json_response(job_accepted(job_row, operation), status=202)
        return await _answer(request, key, operation, job_row, reply, pricing.ckks_price(operation, _iterations(req)))

    heavy = ADMITTED_OPERATIONS.get(operation)
    admitted = None
    if heavy is not None:  # priced from the parameters before any job is submitted; held while the job lives
        if operation == "bootstrap":  # plan the DFT factors' size on the engine (~0.7 s once per configuration)
            await request.app[ENGINE].run(ops.bootstrap_cache_bytes, key["params"], *heavy(req))
        admitted = admission.admit_job(request, f"compute/{operation}", key["params"], *heavy(req))

    if p.ops_limit is not None:
        async with db(request) as conn:
            if not await repo.reserve_operation(conn, p.api_key_id):
                raise ApiError(402, "QUOTA_EXHAUSTED", "this key has used all of its operations",
                               {"ops_limit": p.ops_limit})
    price = pricing.ckks_price(operation, _iterations(req))
    units = price.cost_units
    args = {f: getattr(req, f) for f in OP_ARGS if hasattr(req, f)}
    level = min(rows[c]["level"] for c in req.ciphertext_ids)
    spec = jobs.JobSpec(
        account_id=p.account_id, api_key_id=p.api_key_id, kind="ckks", operation=operation,
        batch_key=ckks_batch_key(key["id"], operation, level, args), affinity=key["id"],
        payload={"key_id": key["id"], "ciphertext_ids": list(req.ciphertext_ids), "args": args, "plan": p.plan,
                 "refund": charge_refund(request, units),
                 "metering": metering.defer_to_job(request, units, operation)},
        cost_units=units, cost_jpy=float(price.cost_jpy), is_async=req.async_,
        idem_key=request.get(IDEM_JOB_KEY),
        heavy_bytes=admitted.cost.bytes if admitted is not None else None,
        admit=admitted.check if admitted is not None else None,
    )
    job_row, reply = await run_job(request, spec)
    if reply is None:
        return json_response(job_accepted(job_row, operation), status=202)
    return await _answer(request, key, operation, job_row, reply, price)



async def run_job(request: web.Request, spec):
    """Run ``spec`` through the dispatcher: ``(job_row, reply)``, reply None for an async job.
    If the job is not admitted or fails to start, the caller's trial-key operation (reserved by
    the route) is given back before the error propagates. Shared by compute and model routes."""
    p = principal(request)
    try:
        return await request.app[DISPATCHER].run(spec)
    except BaseException:
        if p.ops_limit is not None:
            async with db(request) as conn:
                await repo.release_operation(conn, p.api_key_id)
        raise

async def _answer(request: web.Request, key, operation: str, job_row, reply: dict,
                  price: pricing.Price) -> web.Response:
    """The 200 of a completed CKKS job (``price``: what it was admitted and metered at): from its
    worker's reply, or from its row (a redelivered message of a job that completed unseen, or an
    idempotent replay), then with the result ciphertext read back from the durable store."""
    res = await result_with_blob(request, job_row, reply)
    evicted_ids(request).extend(res.get("evicted_ciphertext_ids") or [])
    budget = float(res["noise_budget_remaining"])
    queue_ms, compute_ms = timings(reply)
    body = ComputeResponse(
        job_id=job_row["id"], status="COMPLETED", operation=operation,
        result_ciphertext_id=res["result_ciphertext_id"], result_ciphertext=res["result_ciphertext"],
        level=res["level"], scale_bits=round(math.log2(res["scale"]), 6) if res["scale"] > 0 else 0.0,
        compute_time_ms=compute_ms, queue_time_ms=queue_ms,
        noise_budget_remaining=budget, evicted_ciphertext_ids=list(evicted_ids(request)), **price.fields(),
        expires_at=res["expires_at"],
        batch_size=int(reply.get("batch_size") or 1),
        **{f: res.get(f, default) for f, default in BOOTSTRAP_FIELDS.items()},
    )
    headers = {"X-Noise-Budget-Remaining": f"{budget:g}", "X-Noise-Budget-Warning": "true" if budget < 50 else "false"}
    if budget < 50:
        # only keys of a bootstrap preset can recover levels on the server
        headers["X-Noise-Budget-Recovery"] = (
            "POST /api/v1/compute/bootstrap restores levels" if (key["params"] or {}).get("bootstrap_preset")
            else "no server-side recovery for this key (its parameters name no bootstrap_preset): "
                 "decrypt and re-encrypt on the client, or use a key of a bootstrap preset")
    if reply.get("replayed"):
        headers["Idempotent-Replayed"] = "true"
    return json_response(body, headers=headers)


async def load_operands(request: web.Request, key_id: str, ciphertext_ids: list[str]):
    """``(key row, {ciphertext_id: row})`` of the caller's account: 404 for an unknown key or
    ciphertext (with why it is gone), 400 KEY_MISMATCH for an operand under another key."""
    p = principal(request)
    async with db(request) as conn:
        key = await repo.get_fhe_key(conn, p.account_id, key_id)
        if key is None:
            raise not_found("key", key_id=key_id)
        rows = await repo.get_ciphertexts(conn, p.account_id, ciphertext_ids)
    for ct_id in ciphertext_ids:
        row = rows.get(ct_id)
        if row is None:
            raise await missing_ciphertext(request, p.account_id, ct_id, ciphertext_id=ct_id)
        if row["key_id"] != key["id"]:
            raise ApiError(400, "KEY_MISMATCH", "every operand must be a ciphertext under key_id",
                           {"ciphertext_id": ct_id, "ciphertext_key_id": row["key_id"], "key_id": key["id"]})
    return key, rows


async def result_with_blob(request: web.Request, job_row, reply: dict) -> dict:
    """A completed CKKS job's result with ``result_ciphertext`` (base64): from the worker's
    reply, or — a reply built from the job row (a redelivered message of a job that completed
    unseen, an idempotent replay) — read back from the durable store (404 if it is gone)."""
    res = dict(reply["result"])
    if "result_ciphertext" not in res:
        p = principal(request)
        ct_id = res["result_ciphertext_id"]
        async with db(request) as conn:
            found = await repo.get_ciphertexts(conn, p.account_id, [ct_id])
        blob = (await load_blobs(request, p.account_id, [ct_id]))[0] if found else None
        if blob is None:
            raise await missing_ciphertext(request, p.account_id, ct_id, ciphertext_id=ct_id, job_id=job_row["id"])
        res["result_ciphertext"] = base64.b64encode(blob).decode("ascii")
    return res


def job_accepted(row, operation: str) -> JobAccepted:
    return JobAccepted(job_id=row["id"], status="QUEUED", operation=operation, created_at=row["created_at"],
                       expires_at=row["expires_at"])


def charge_refund(request: web.Request, fcu: int) -> dict:
    """What an asynchronous job gives back if it fails or is cancelled: the FCU its request
    charged to the monthly window (``ratelimit``) and a trial key's operation."""
    from .. import ratelimit  # noqa: PLC0415
    from .. import clock  # noqa: PLC0415

    p = principal(request)
    settings = request.app[SETTINGS]
    out: dict = {"ops_key_id": p.api_key_id if p.ops_limit is not None else None}
    if fcu > 0:
        plan = ratelimit.plan_of(settings.plans, p.plan)
        monthly = next(w for w in ratelimit.account_windows(settings.redis_prefix, plan, p.account_id, "-", fcu,
                                                            clock.now()) if w.name == "monthly")
        out.update(fcu_key=monthly.key, fcu=fcu)
    return out
