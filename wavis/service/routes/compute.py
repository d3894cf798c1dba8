"""POST /api/v1/compute/{operation}: CKKS operations on stored ciphertexts."""

from __future__ import annotations

from aiohttp import web

from .. import ctstore, fhe, repo
from ..access import Access, access, principal
from ..bodies import parse
from ..errors import ApiError, not_found
from ..ids import new_id
from ..schemas import BinaryComputeRequest, ComputeRequest, ComputeResponse, UnaryComputeRequest
from ..state import ENGINE, REDIS, SETTINGS
from .ciphertexts import meta, store_ciphertext
from .keys import evaluator_for
from .util import db, json_response, upstream_timeout

routes = web.RouteTableDef()


def request_model(operation: str) -> type[ComputeRequest]:
    if operation in fhe.BINARY_OPS:
        return BinaryComputeRequest
    if operation in fhe.UNARY_OPS:
        return UnaryComputeRequest
    return ComputeRequest


@routes.post("/compute/{operation}")
@access(Access.TRIAL_PLUS)
async def compute(request: web.Request) -> web.Response:
    operation = request.match_info["operation"]
    if operation not in fhe.ALL_OPERATIONS:
        raise not_found("operation", operation=operation)
    if operation not in fhe.BINARY_OPS | fhe.UNARY_OPS:
        raise ApiError(501, "NOT_IMPLEMENTED", f"operation {operation!r} is not available yet",
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
            raise not_found("ciphertext", ciphertext_id=ct_id)
        if row["key_id"] != key["id"]:
            raise ApiError(400, "KEY_MISMATCH", "every operand must be a ciphertext under key_id",
                           {"ciphertext_id": ct_id, "ciphertext_key_id": row["key_id"], "key_id": key["id"]})

    async with upstream_timeout(request):
        blobs = await ctstore.get_many(request.app[REDIS], request.app[SETTINGS].redis_prefix, req.ciphertext_ids)
    for ct_id, blob in zip(req.ciphertext_ids, blobs):
        if blob is None:
            raise not_found("ciphertext", ciphertext_id=ct_id, reason="expired or evicted from the ciphertext store")

    params, evaluator = await evaluator_for(request, key)

    if p.ops_limit is not None:
        async with db(request) as conn:
            if not await repo.reserve_operation(conn, p.api_key_id):
                raise ApiError(402, "QUOTA_EXHAUSTED", "this key has used all of its operations",
                               {"ops_limit": p.ops_limit})
    engine = request.app[ENGINE]
    try:
        timed = await engine.submit(fhe.compute, operation, params, evaluator, blobs)
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
        noise_budget_remaining=budget, evicted_ciphertext_ids=[], cost_units=units,
        cost_jpy=round(units * fhe.JPY_PER_UNIT, 4), bootstrap_applied=False, bootstrap_effective_degree=None,
        bootstrap_degraded=False, expires_at=row["expires_at"],
    )
    headers = {"X-Noise-Budget-Remaining": f"{budget:g}", "X-Noise-Budget-Warning": "true" if budget < 50 else "false"}
    if budget < 50:
        headers["X-Noise-Budget-Recovery"] = "POST /api/v1/compute/bootstrap restores levels"
    return json_response(body, headers=headers)
