"""Encrypted inference (API.md §Models): ``GET /models`` (public catalogue), ``GET /models/{id}``
and ``POST /models/{id}/infer`` (TRIAL+). An inference is one engine job (operation
``model-infer``, run by ``fhe.compute`` on the compute threads like every CKKS operation),
admitted by its cost (``ops.REGISTRY["models/infer"]``) and charged the model's FCU."""

from __future__ import annotations

import math

from aiohttp import web

from .. import admission, fhe, jobs, metering, pricing, repo
from ..access import Access, access, doc, fcu, principal
from ..bodies import parse
from ..dispatch import ckks_batch_key, timings
from ..errors import ApiError, not_found
from ..schemas import ErrorResponse
from ..schemas_jobs import JobAccepted
from ..schemas_models import InferRequest, InferResponse, ModelEntry, ModelList
from ..state import DISPATCHER, ENGINE, IDEM_JOB_KEY, REPLAYED, SETTINGS
from .ciphertexts import evicted_ids
from .compute import BOOTSTRAP_FIELDS, charge_refund, job_accepted, load_operands, result_with_blob, run_job
from .keys import evaluator_for
from .util import db, json_response

routes = web.RouteTableDef()


def _model(model_id: str):
    from wavis import models  # noqa: PLC0415

    if model_id not in models.model_ids():
        raise not_found("model", model_id=model_id, models=models.model_ids())
    return models.get(model_id)


def async_only(model, settings) -> bool:
    """A model whose measured latency exceeds half the synchronous request budget is served as
    an asynchronous job only (a request without ``"async": true`` gets the 202 anyway): the
    latency was measured at one host load, and a synchronous request past the timeout would
    only end in 504 JOB_TIMEOUT."""
    ms = model.entry.get("latency_ms_cpu")
    return ms is not None and ms / 1e3 > settings.request_timeout_s / 2


def entry(model, settings) -> ModelEntry:
    return ModelEntry(**model.entry, fcu_per_inference=fhe.model_fcu(model),
                      async_only=async_only(model, settings))


def _infer_fcu(request: web.Request) -> int:
    try:
        return fhe.model_fcu(_model(request.match_info.get("model_id", "")))
    except ApiError:
        return 0  # the handler answers 404


@routes.get("/models")
@access(Access.PUBLIC)
@doc("The models that run entirely under CKKS on this server, with their measured accuracy and latency",
     responses={200: ModelList})
async def list_models(request: web.Request) -> web.Response:
    from wavis import models  # noqa: PLC0415

    settings = request.app[SETTINGS]
    return json_response(ModelList(models=[entry(models.get(i), settings) for i in models.model_ids()]))


@routes.get("/models/{model_id}")
@access(Access.PUBLIC)
@doc("One catalogue model", responses={200: ModelEntry, 404: ErrorResponse})
async def get_model(request: web.Request) -> web.Response:
    return json_response(entry(_model(request.match_info["model_id"]), request.app[SETTINGS]))


def check_key(model, key) -> None:
    """400 MODEL_PARAMS_MISMATCH (naming what the model needs) when the key's parameters
    cannot run ``model``: too few levels, a scale below the model's, too few slots for one
    block, or not a CKKS key."""
    params = key["params"] or {}
    need = model.params_required
    problems = []
    if key["scheme"] not in ("ckks", "rns-ckks"):
        problems.append(f"the key is a {key['scheme']} key; models run under CKKS")
    levels = int(key["max_level"])
    if levels < model.depth:
        if not model.graph.bootstrappable:
            problems.append(f"the key has {levels} levels; the model consumes {model.depth}")
        elif not params.get("bootstrap_preset"):
            problems.append(f"the key has {levels} levels and no bootstrap preset; the model consumes {model.depth} "
                            f"levels, or {model.graph.min_levels} between bootstraps with a bootstrap preset")
        elif levels < model.graph.min_levels:
            problems.append(f"the key has {levels} levels; the model needs {model.graph.min_levels} between bootstraps")
    if int(params.get("scale_bits", 0)) < int(need["scale_bits"]):
        problems.append(f"the key's scale is 2^{params.get('scale_bits')}; the model needs ≥ 2^{need['scale_bits']}")
    slots = int(key["slot_count"])
    if slots < model.block or slots % model.block:
        problems.append(f"the key has {slots} slots; the model packs samples in blocks of {model.block}")
    if problems:
        raise ApiError(400, "MODEL_PARAMS_MISMATCH", f"key {key['id']} cannot run model {model.id}: "
                       + "; ".join(problems), {
                           "model_id": model.id, "params_required": need, "levels_consumed": model.depth,
                           "block": model.block, "problems": problems,
                           "key": {"key_id": key["id"], "max_level": int(key["max_level"]), "slot_count": slots,
                                   "scale_bits": params.get("scale_bits")}})


@routes.post("/models/{model_id}/infer")
@access(Access.TRIAL_PLUS)
@fcu(_infer_fcu, job=True)
@doc("Encrypted inference: the model's output as a ciphertext under the caller's key",
     request=InferRequest,
     responses={200: InferResponse, 202: JobAccepted, 400: ErrorResponse, 402: ErrorResponse, 404: ErrorResponse,
                409: ErrorResponse, 413: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse, 504: ErrorResponse})
async def infer(request: web.Request) -> web.Response:
    model = _model(request.match_info["model_id"])
    p = principal(request)
    req = await parse(request, InferRequest)
    key, rows = await load_operands(request, req.key_id, req.ciphertext_ids)
    check_key(model, key)
    level = int(rows[req.ciphertext_ids[0]]["level"])
    needed = model.graph.min_levels if (key["params"] or {}).get("bootstrap_preset") else model.depth
    if level < needed:
        raise ApiError(409, "DEPTH_EXHAUSTED", f"model {model.id} needs {needed} levels; the ciphertext "
                       f"is at level {level} (encrypt at the key's top level)",
                       {"needed": needed, "level": level, "model_id": model.id})
    params, evaluator = await evaluator_for(request, key)
    info = await request.app[ENGINE].run(fhe.model_info, params, evaluator, model.id)
    if info["galois_steps_missing"] or not info["relinearization"]:
        missing = ([] if info["relinearization"] else ["relinearization"]) + (
            ["galois"] if info["galois_steps_missing"] else [])
        code = "MISSING_ROTATION_KEY" if info["galois_steps_missing"] else "MISSING_KEY"
        raise ApiError(400, code, f"model {model.id} needs Galois keys for rotation steps "
                       f"{info['galois_steps_required']} and a relinearization key; key {key['id']} lacks "
                       f"{info['galois_steps_missing'] or 'the relinearization key'} (generate the key with "
                       "exactly galois_steps_required at this slot count)",
                       {"model_id": model.id, "galois_steps_required": info["galois_steps_required"],
                        "galois_steps_missing": info["galois_steps_missing"], "missing": missing,
                        "slot_count": int(key["slot_count"])})

    price = pricing.fcu_price(fhe.model_fcu(model))
    units = price.cost_units
    operation = fhe.MODEL_OPERATION
    # a retry (same Idempotency-Key and body) of an inference whose job completed but whose answer
    # was lost: answered from that job, charged nothing more
    replayed = await request.app[DISPATCHER].replay(p.account_id, request.get(IDEM_JOB_KEY), req.async_)
    if replayed is not None:
        request[REPLAYED] = True
        metering.forget(request, units)
        job_row, reply = replayed
        if reply is None:
            return json_response(job_accepted(job_row, operation), status=202)
        return await _answer(request, model, units, operation, job_row, reply)

    # held for as long as the job is QUEUED or RUNNING, across processes (admission.admit_job)
    admitted = admission.admit_job(request, "models/infer", key["params"], model.id)
    if p.ops_limit is not None:
        async with db(request) as conn:
            if not await repo.reserve_operation(conn, p.api_key_id):
                raise ApiError(402, "QUOTA_EXHAUSTED", "this key has used all of its operations",
                               {"ops_limit": p.ops_limit})
    args = {"model_id": model.id}
    spec = jobs.JobSpec(
        account_id=p.account_id, api_key_id=p.api_key_id, kind="ckks", operation=operation,
        batch_key=ckks_batch_key(key["id"], operation, level, args), affinity=key["id"],
        payload={"key_id": key["id"], "ciphertext_ids": list(req.ciphertext_ids), "args": args, "plan": p.plan,
                 "refund": charge_refund(request, units),
                 "metering": metering.defer_to_job(request, units, operation)},
        cost_units=units, cost_jpy=float(price.cost_jpy),
        is_async=req.async_ or async_only(model, request.app[SETTINGS]),
        idem_key=request.get(IDEM_JOB_KEY), heavy_bytes=admitted.cost.bytes, admit=admitted.check,
    )
    job_row, reply = await run_job(request, spec)
    if reply is None:
        return json_response(job_accepted(job_row, operation), status=202)
    return await _answer(request, model, units, operation, job_row, reply)


async def _answer(request: web.Request, model, units: int, operation: str, job_row, reply: dict) -> web.Response:
    price = pricing.fcu_price(units)
    res = await result_with_blob(request, job_row, reply)
    evicted_ids(request).extend(res.get("evicted_ciphertext_ids") or [])
    queue_ms, compute_ms = timings(reply)
    body = InferResponse(
        job_id=job_row["id"], status="COMPLETED", operation=operation, model_id=model.id,
        levels_consumed=model.depth, output_decoding=model.entry["output_decoding"],
        result_ciphertext_id=res["result_ciphertext_id"], result_ciphertext=res["result_ciphertext"],
        level=res["level"], scale_bits=round(math.log2(res["scale"]), 6) if res["scale"] > 0 else 0.0,
        compute_time_ms=compute_ms, queue_time_ms=queue_ms,
        noise_budget_remaining=float(res["noise_budget_remaining"]),
        evicted_ciphertext_ids=list(evicted_ids(request)), **price.fields(), expires_at=res["expires_at"],
        batch_size=int(reply.get("batch_size") or 1), **BOOTSTRAP_FIELDS,
    )
    return json_response(body, headers={"Idempotent-Replayed": "true"} if reply.get("replayed") else None)
