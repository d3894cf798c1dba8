"""POST /api/v1/compute/{operation}: CKKS operations on stored ciphertexts (API.md "Compute
(CKKS)"). One handler for every operation: a per-operation pydantic model checks the body,
the operands are loaded from the ciphertext store, and ``fhe.compute`` runs on the engine."""

from __future__ import annotations

from aiohttp import web

from .. import fhe, repo
from ..access import Access, RouteBodyLimit, access, body_limit, doc, fcu, principal
from ..bodies import parse
from ..errors import ApiError, not_found
from ..ids import new_id
from ..schemas import ComputeRequest, ComputeResponse, ErrorResponse
from ..schemas_compute import (
    BinaryOp, ComputeRequestDoc, KeyWithMatmulResponse, MatmulKeyInfo, MatmulOp, PlainOp, PolyEvalOp, RotateOp,
    UnaryOp,
)
from ..state import ENGINE, SETTINGS
from .ciphertexts import evicted_ids, load_blobs, meta, missing_ciphertext, store_ciphertext
from .keys import evaluator_for
from .util import db, json_response

routes = web.RouteTableDef()


REQUEST_MODELS: dict[str, type[ComputeRequest]] = {
    "add": BinaryOp, "subtract": BinaryOp, "multiply": BinaryOp, "inner-product": BinaryOp,
    "negate": UnaryOp, "rescale": UnaryOp, "conjugate": UnaryOp, "sum": UnaryOp, "bootstrap": UnaryOp,
    "add-plain": PlainOp, "multiply-plain": PlainOp, "rotate": RotateOp, "matmul": MatmulOp,
    "poly-eval": PolyEvalOp,
}
# fields of the request models that are the operation's own arguments (passed to fhe.compute)
OP_ARGS = ("plain_operand", "steps", "matrix", "polynomial_coeffs", "basis", "interval")

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


def _operation_fcu(request: web.Request) -> int:
    """FCU of the requested operation (API.md's table), charged to the monthly window."""
    return fhe.COST_UNITS.get(request.match_info.get("operation", ""), 0)


@routes.post("/compute/{operation}")
@access(Access.TRIAL_PLUS)
@body_limit(RouteBodyLimit(MATMUL_BODY_LIMIT, _compute_body_limit))
@fcu(_operation_fcu)
@doc("A CKKS operation on stored ciphertexts (operation: add, subtract, multiply, add-plain, multiply-plain, "
     "negate, rescale, rotate, conjugate, matmul, poly-eval, sum, inner-product; bootstrap → 501)",
     request=ComputeRequestDoc,
     responses={200: ComputeResponse, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse,
                422: ErrorResponse, 501: ErrorResponse})
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
    if req.async_:
        raise ApiError(501, "NOT_IMPLEMENTED", "asynchronous compute is not available yet")

    async with db(request) as conn:
        key = await repo.get_fhe_key(conn, p.account_id, req.key_id)
        if key is None:
            raise not_found("key", key_id=req.key_id)
        rows = await repo.get_ciphertexts(conn, p.account_id, req.ciphertext_ids)
    for ct_id in req.ciphertext_ids:
        row = rows.get(ct_id)
        if row is None:
            raise await missing_ciphertext(request, p.account_id, ct_id, ciphertext_id=ct_id)
        if row["key_id"] != key["id"]:
            raise ApiError(400, "KEY_MISMATCH", "every operand must be a ciphertext under key_id",
                           {"ciphertext_id": ct_id, "ciphertext_key_id": row["key_id"], "key_id": key["id"]})

    blobs = await load_blobs(request, p.account_id, req.ciphertext_ids)
    for ct_id, blob in zip(req.ciphertext_ids, blobs):
        if blob is None:
            raise not_found("ciphertext", ciphertext_id=ct_id, reason="the blob is missing from the blob store")

    params, evaluator = await evaluator_for(request, key)

    if p.ops_limit is not None:
        async with db(request) as conn:
            if not await repo.reserve_operation(conn, p.api_key_id):
                raise ApiError(402, "QUOTA_EXHAUSTED", "this key has used all of its operations",
                               {"ops_limit": p.ops_limit})
    engine = request.app[ENGINE]
    try:
        args = {f: getattr(req, f) for f in OP_ARGS if hasattr(req, f)}
        timed = await engine.submit(fhe.compute, operation, params, evaluator, blobs, args)
    except BaseException:
        if p.ops_limit is not None:
            async with db(request) as conn:
                await repo.release_operation(conn, p.api_key_id)
        raise
    info: fhe.CiphertextInfo = timed.value
    row = await store_ciphertext(request, key_id=key["id"], info=info, source="compute")
    text = await engine.run(fhe.b64encode, info.blob)

    max_level = max(1, key["max_level"])
    budget = round(100.0 * info.level / max_level, 2)
    units = fhe.COST_UNITS[operation]
    m = meta(row)
    body = ComputeResponse(
        job_id=new_id("op"), status="COMPLETED", operation=operation,
        result_ciphertext_id=row["id"], result_ciphertext=text, level=info.level, scale_bits=m["scale_bits"],
        compute_time_ms=round(timed.compute_ms, 3), queue_time_ms=round(timed.queue_ms, 3),
        noise_budget_remaining=budget, evicted_ciphertext_ids=list(evicted_ids(request)), cost_units=units,
        cost_jpy=round(units * fhe.JPY_PER_UNIT, 4), bootstrap_applied=False, bootstrap_effective_degree=None,
        bootstrap_degraded=False, expires_at=row["expires_at"],
    )
    headers = {"X-Noise-Budget-Remaining": f"{budget:g}", "X-Noise-Budget-Warning": "true" if budget < 50 else "false"}
    if budget < 50:
        headers["X-Noise-Budget-Recovery"] = "POST /api/v1/compute/bootstrap restores levels"
    return json_response(body, headers=headers)
