"""TFHE Boolean gates (API.md "TFHE (Boolean gates)"): sessions (server-managed and blind),
encrypt/decrypt for server-managed sessions, single gates, batches/circuits, pricing.

FCU: one per bootstrap (API.md's table). The count depends on the gates in the body: the
routes' ``@fcu`` prices read it (``_gate_fcu``, ``_batch_fcu``; validated once, ``bodies.parse``),
so the rate_limit middleware counts it in the same Redis call as the other windows and gives it
back when the answer is an error; the job meters it when it completes."""

from __future__ import annotations

import asyncio
import logging
import time

from datetime import timedelta

import asyncpg
from aiohttp import web

from .. import admission, jobs, metering, pricing as prices, repo, repo_tfhe, tfhe_store
from ..dispatch import tfhe_batch_key, timings
from ..access import Access, Principal, access, body_limit, doc, fcu, principal
from ..bodies import parse
from ..errors import ApiError, not_found
from ..ids import new_id
from ..schemas import ErrorResponse
from ..schemas_tfhe import (
    MAX_BATCH, DeletedResponse, TfheBatchDiscount, TfheBatchRequest, TfheBatchResponse, TfheDecryptManyResponse,
    TfheDecryptOneResponse, TfheDecryptRequest, TfheDecryptResponse, TfheEncryptManyResponse, TfheEncryptOneResponse,
    TfheEncryptRequest, TfheEncryptResponse,
    TfheEvalSessionRequest, TfheGatePrice, TfheGateRequest, TfheGateResponse, TfhePresetInfo, TfhePricingResponse,
    TfheSessionRequest, TfheSessionResponse,
)
from ..schemas_jobs import JobAccepted
from ..state import DISPATCHER, ENGINE, IDEM_JOB_KEY, REPLAYED, TFHE_SESSION_IN_USE
from ..tfhe_store import TFHE_STORE, SessionKeys
from .compute import charge_refund, job_accepted
from .util import db, json_response

routes = web.RouteTableDef()
log = logging.getLogger("wavis.service")

MiB = 1024 * 1024
EVAL_KEY_BODY_LIMIT = 40 * MiB
GATE_BODY_LIMIT = 2 * MiB  # API.md: a TFHE ciphertext 2 MB (ours are ~3–5 KB in base64)
BATCH_BODY_LIMIT = 16 * MiB  # [ours] 1024 gates × 3 operands × ≤ 4.5 KB of base64

GATE_ORDER = ("NAND", "AND", "OR", "XOR", "NOR", "XNOR", "NOT", "MUX")


def session_response(request: web.Request, row: asyncpg.Record, n: int, big_n: int) -> TfheSessionResponse:
    idle = request.app[TFHE_STORE].config.idle_s
    return TfheSessionResponse(
        session_id=row["id"], preset=row["preset"], n=n, big_n=big_n, is_blind=row["is_blind"],
        created_at=row["created_at"], expires_at=row["last_used_at"] + timedelta(seconds=idle),
    )


async def _session_cap(request: web.Request, p: Principal) -> None:
    store = request.app[TFHE_STORE]
    async with db(request) as conn:
        live = await repo_tfhe.count_live_sessions(conn, p.account_id, store.config.idle_s)
    cap = store.config.max_sessions_per_account
    if live >= cap:
        raise ApiError(409, "TOO_MANY_SESSIONS",
                       f"this account has {live} live TFHE sessions (at most {cap}); delete one first",
                       {"live_sessions": live, "max_sessions": cap})


async def _insert(request: web.Request, p: Principal, session_id: str, new: tfhe_store.NewSession,
                  is_blind: bool) -> web.Response:
    store = request.app[TFHE_STORE]
    cap = store.config.max_sessions_per_account
    async with db(request) as conn:
        async with conn.transaction():
            # the cap is checked again under a per-account lock: concurrent creations (each past
            # the cheap pre-check in _session_cap) cannot overshoot it
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tfhe_sessions:' || $1))", p.account_id)
            live = await repo_tfhe.count_live_sessions(conn, p.account_id, store.config.idle_s)
            if live >= cap:
                raise ApiError(409, "TOO_MANY_SESSIONS",
                               f"this account has {live} live TFHE sessions (at most {cap}); delete one first",
                               {"live_sessions": live, "max_sessions": cap})
            row = await repo_tfhe.insert_session(
                conn, session_id=session_id, account_id=p.account_id, preset=new.preset, is_blind=is_blind,
                key_id=new.key_id, server_key=new.server_blob, client_key_sealed=new.client_sealed,
            )
    request.app[TFHE_STORE].keys.put(session_id, new.keys)
    return json_response(session_response(request, row, new.n, new.big_n), status=201)


@routes.post("/tfhe/session")
@access(Access.TRIAL_PLUS)
@doc("Open a server-managed TFHE session (the server generates and seals the keys)", request=TfheSessionRequest,
     responses={201: TfheSessionResponse, 409: ErrorResponse, 422: ErrorResponse})
async def create_session(request: web.Request) -> web.Response:
    """Server-managed session: the server generates the keys and keeps the client key sealed."""
    p = principal(request)
    req = await parse(request, TfheSessionRequest)
    await _session_cap(request, p)
    admission.admit(request, "tfhe/session", req.preset)
    session_id = new_id("sess")
    store = request.app[TFHE_STORE]
    engine = request.app[ENGINE]
    new = await engine.run(tfhe_store.new_server_managed, req.preset, session_id, p.account_id, store.sealer,
                           engine.contexts)
    return await _insert(request, p, session_id, new, is_blind=False)


@routes.post("/tfhe/eval-session")
@access(Access.TRIAL_PLUS)
@body_limit(EVAL_KEY_BODY_LIMIT)
@doc("Open a blind TFHE session from an uploaded server (evaluation) key", request=TfheEvalSessionRequest,
     responses={201: TfheSessionResponse, 400: ErrorResponse, 409: ErrorResponse, 413: ErrorResponse})
async def create_eval_session(request: web.Request) -> web.Response:
    """Blind session: only the server (evaluation) key is uploaded; the server can evaluate
    gates but never decrypt."""
    p = principal(request)
    req = await parse(request, TfheEvalSessionRequest)
    await _session_cap(request, p)
    admission.admit(request, "tfhe/eval-session")
    session_id = new_id("sess")
    engine = request.app[ENGINE]
    new = await engine.run(tfhe_store.new_blind, req.eval_key_b64, session_id, engine.contexts)
    del req
    return await _insert(request, p, session_id, new, is_blind=True)


async def touched_session(request: web.Request, session_id: str) -> asyncpg.Record:
    """The caller's live session row, touched (404 when unknown, another account's or idle)."""
    p = principal(request)
    store = request.app[TFHE_STORE]
    async with db(request) as conn:
        row = await repo_tfhe.touch_session(conn, p.account_id, session_id, store.config.idle_s)
    if row is None:
        raise repo_tfhe.session_gone(session_id)
    request[TFHE_SESSION_IN_USE] = session_id
    return row


async def live_session(request: web.Request, session_id: str) -> tuple[asyncpg.Record, SessionKeys]:
    """The caller's live session (touched) and its keys from the LRU (loaded on a miss)."""
    row = await touched_session(request, session_id)
    return row, await tfhe_store.session_keys(request.app, session_id)


def _tagging(request: web.Request, session_id: str) -> tfhe_store.Tagging:
    return tfhe_store.Tagging(request.app[TFHE_STORE].tags, principal(request).account_id, session_id)


async def _server_managed(request: web.Request) -> tuple[asyncpg.Record, SessionKeys]:
    row, keys = await live_session(request, request.match_info["session_id"])
    if row["is_blind"] or keys.client is None:
        raise ApiError(409, "BLIND_SESSION",
                       "this is a blind session: the server holds no secret key, so it cannot encrypt or decrypt; "
                       "do that on the client", {"session_id": row["id"]})
    return row, keys


@routes.post("/tfhe/session/{session_id}/encrypt")
@access(Access.TRIAL_PLUS)
@doc("Encrypt bits in a server-managed session ({bit} → {ciphertext_b64}, {bits} → {ciphertexts_b64})",
     request=TfheEncryptRequest, responses={200: TfheEncryptResponse, 404: ErrorResponse, 409: ErrorResponse})
async def encrypt(request: web.Request) -> web.Response:
    req = await parse(request, TfheEncryptRequest)
    _, keys = await _server_managed(request)
    bits = [req.bit] if req.bits is None else req.bits
    out = await request.app[ENGINE].run(tfhe_store.encrypt, keys, _tagging(request, keys.session_id), bits)
    if req.bits is None:
        return json_response(TfheEncryptOneResponse(ciphertext_b64=out[0]))
    return json_response(TfheEncryptManyResponse(ciphertexts_b64=out))


@routes.post("/tfhe/session/{session_id}/decrypt")
@access(Access.TRIAL_PLUS)
@body_limit(BATCH_BODY_LIMIT)
@doc("Decrypt ciphertexts this server-managed session produced ({ciphertext_b64} → {bit}, {ciphertexts_b64} → "
     "{bits}); anything else → 403 NOT_SERVER_PRODUCED", request=TfheDecryptRequest,
     responses={200: TfheDecryptResponse, 400: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse,
                409: ErrorResponse})
async def decrypt(request: web.Request) -> web.Response:
    req = await parse(request, TfheDecryptRequest)
    _, keys = await _server_managed(request)
    texts = [req.ciphertext_b64] if req.ciphertexts_b64 is None else req.ciphertexts_b64
    bits = await request.app[ENGINE].run(tfhe_store.decrypt, keys, _tagging(request, keys.session_id), texts,
                                         req.ciphertexts_b64 is not None)
    if req.ciphertexts_b64 is None:
        return json_response(TfheDecryptOneResponse(bit=bits[0]))
    return json_response(TfheDecryptManyResponse(bits=bits))


@routes.delete("/tfhe/session/{session_id}")
@access(Access.TRIAL_PLUS)
@doc("Delete a TFHE session and free its keys", responses={200: DeletedResponse, 404: ErrorResponse})
async def delete_session(request: web.Request) -> web.Response:
    p = principal(request)
    session_id = request.match_info["session_id"]
    store = request.app[TFHE_STORE]
    async with db(request) as conn:
        deleted = await repo_tfhe.delete_session(conn, p.account_id, session_id, store.config.idle_s)
    if not deleted:
        raise not_found("TFHE session", session_id=session_id)
    store.keys.discard(session_id)  # frees the expanded key (this process; others evict it by LRU)
    return json_response(DeletedResponse(deleted=True))


async def _reserve(request: web.Request) -> None:
    p = principal(request)
    if p.ops_limit is None:
        return
    async with db(request) as conn:
        if not await repo.reserve_operation(conn, p.api_key_id):
            raise ApiError(402, "QUOTA_EXHAUSTED", "this key has used all of its operations",
                           {"ops_limit": p.ops_limit})


async def _release(request: web.Request) -> None:
    p = principal(request)
    if p.ops_limit is not None:
        async with db(request) as conn:
            await repo.release_operation(conn, p.api_key_id)


async def _run_job(request: web.Request, fcu: int, operation: str, session_id: str, gates: list[dict],
                   is_async: bool, price: prices.Price) -> tuple[asyncpg.Record, dict | None]:
    """Run a gate evaluation as a job: ``fcu`` FCU to the monthly window and one operation of
    a trial key, both given back if it fails (by this handler for a synchronous job, by the
    worker or DELETE /jobs for an asynchronous one).

    The session must be live (404 NOT_FOUND otherwise). A request under an Idempotency-Key
    touches it first; any other request leaves the touch to the dispatcher, which does it in
    the job's admission statement (``jobs.insert_admitted(session=…)``: one PostgreSQL round
    trip less per gate). A repeated request whose answer was stored never gets here: the
    idempotency middleware replays it (24 h, API.md) even after the session went idle; only a
    retry whose job completed but whose answer was lost is replayed here, and needs the
    session live."""
    p = principal(request)
    started = time.monotonic()
    store = request.app[TFHE_STORE]
    idem = request.get(IDEM_JOB_KEY)
    if idem:
        await touched_session(request, session_id)
    else:
        request[TFHE_SESSION_IN_USE] = session_id
    # a retry (same Idempotency-Key and body) whose job completed but whose answer was lost:
    # answered from that job's stored outputs, charged nothing more
    replay = await request.app[DISPATCHER].replay(p.account_id, request.get(IDEM_JOB_KEY), is_async)
    if replay is not None:
        request[REPLAYED] = True  # the request's FCU charge is given back (rate_limit middleware)
        metering.forget(request, fcu)
        return replay
    await _reserve(request)
    spec = jobs.JobSpec(
        account_id=p.account_id, api_key_id=p.api_key_id, kind="tfhe", operation=operation,
        batch_key=tfhe_batch_key(session_id), affinity=session_id,
        payload={"session_id": session_id, "gates": gates, "single": operation == "gate",
                 "refund": charge_refund(request, fcu),
                 "metering": metering.defer_to_job(request, fcu, f"tfhe:{operation}")},
        cost_units=fcu, cost_jpy=float(price.cost_jpy), is_async=is_async, idem_key=idem,
        session=None if idem else (session_id, store.config.idle_s),
    )
    try:
        row, reply = await request.app[DISPATCHER].run(spec)
    except BaseException:
        await _release(request)  # the FCU: the rate_limit middleware gives them back (an error answer)
        raise
    # touched at the start; touched again only after a long evaluation (one round trip less
    # for every short request: a session cannot go idle within a quarter of its idle time)
    if reply is not None and time.monotonic() - started > store.config.idle_s / 4:
        try:
            async with db(request) as conn:
                await repo_tfhe.refresh_session(conn, p.account_id, session_id)
        except Exception:  # noqa: BLE001 - best effort: the result is already computed
            log.warning("could not refresh TFHE session %s after evaluation", session_id)
    return row, reply


def _outputs(reply: dict) -> dict:
    res = reply.get("result") or {}
    if "results_b64" not in res:
        # a redelivered message of a synchronous job that completed unseen, whose outputs could
        # not be computed again (worker.py recomputes them from the message when it can)
        raise ApiError(503, "RESULT_UNAVAILABLE", "the job completed but its result was not kept; retry the request",
                       headers={"Retry-After": "1"})
    return res


def _replayed(reply: dict) -> dict[str, str] | None:
    return {"Idempotent-Replayed": "true"} if reply.get("replayed") else None


async def _gate_fcu(request: web.Request) -> int:
    """The gate's FCU (one per bootstrap), charged to the monthly window by the rate_limit
    middleware, from the body (validated once: ``bodies.parse`` keeps it for the handler); a
    body that does not validate costs nothing (the handler answers its error)."""
    try:
        req = await parse(request, TfheGateRequest)
    except ApiError:
        return 0
    return tfhe_store.gate_bootstraps()[req.op]


async def _batch_fcu(request: web.Request) -> int:
    """The batch's FCU (its gates' bootstraps), as ``_gate_fcu``."""
    try:
        req = await parse(request, TfheBatchRequest)
    except ApiError:
        return 0
    per_gate = tfhe_store.gate_bootstraps()
    return sum(per_gate[g.op] for g in req.gates)


@routes.post("/tfhe/gate")
@access(Access.TRIAL_PLUS)
@body_limit(GATE_BODY_LIMIT)
@fcu(_gate_fcu, job=True)
@doc("Evaluate one gate (MUX: a where sel = 1, b where sel = 0); \"async\": true → 202 with job_id",
     request=TfheGateRequest,
     responses={200: TfheGateResponse, 202: JobAccepted, 400: ErrorResponse, 402: ErrorResponse, 404: ErrorResponse,
                422: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse})
async def gate(request: web.Request) -> web.Response:
    req = await parse(request, TfheGateRequest)
    boots = tfhe_store.gate_bootstraps()[req.op]
    price = prices.tfhe_price(boots, 1)
    g = {"op": req.op, "a": req.a}
    if req.b is not None:
        g["b"] = req.b
    if req.sel is not None:
        g["sel"] = req.sel
    row, reply = await _run_job(request, boots, "gate", req.session_id, [g], req.async_, price)
    if reply is None:
        return json_response(job_accepted(row, "gate"), status=202)
    queue_ms, compute_ms = timings(reply)
    return json_response(TfheGateResponse(
        result_b64=_outputs(reply)["results_b64"][0], op=req.op, bootstraps=boots, compute_time_ms=compute_ms,
        queue_time_ms=queue_ms, **price.fields(), job_id=row["id"],
        batch_size=int(reply.get("batch_size") or 1),
    ), headers=_replayed(reply))


@routes.post("/tfhe/batch")
@access(Access.TRIAL_PLUS)
@body_limit(BATCH_BODY_LIMIT)
@fcu(_batch_fcu, job=True)
@doc("Evaluate 1–1024 gates; an operand may be \"$k\", the result of gate k < its own index; "
     "\"async\": true → 202 with job_id",
     request=TfheBatchRequest,
     responses={200: TfheBatchResponse, 202: JobAccepted, 400: ErrorResponse, 402: ErrorResponse, 404: ErrorResponse,
                422: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse})
async def batch(request: web.Request) -> web.Response:
    req = await parse(request, TfheBatchRequest)
    if len(req.gates) > MAX_BATCH:
        raise ApiError(400, "BATCH_TOO_LARGE", f"a batch holds at most {MAX_BATCH} gates, got {len(req.gates)}",
                       {"max_gates": MAX_BATCH, "gates": len(req.gates)})
    gates = [g.model_dump(exclude_none=True) for g in req.gates]
    per_gate = tfhe_store.gate_bootstraps()
    boots = sum(per_gate[g["op"]] for g in gates)
    price = prices.tfhe_price(boots, len(gates))
    row, reply = await _run_job(request, boots, "batch", req.session_id, gates, req.async_, price)
    if reply is None:
        return json_response(job_accepted(row, "batch"), status=202)
    out = _outputs(reply)
    queue_ms, compute_ms = timings(reply)
    return json_response(TfheBatchResponse(
        results_b64=out["results_b64"], bootstraps=boots, levels=out["levels"], compute_time_ms=compute_ms,
        queue_time_ms=queue_ms, **price.fields(), discount_pct=price.discount_pct, job_id=row["id"],
        batch_size=int(reply.get("batch_size") or 1),
    ), headers=_replayed(reply))


@routes.get("/tfhe/pricing")
@access(Access.PUBLIC)
@doc("Price per gate (bootstraps from the library), the batch discount, and the presets with their security "
     "and failure probability", responses={200: TfhePricingResponse})
async def pricing(request: web.Request) -> web.Response:
    per_gate = tfhe_store.gate_bootstraps()
    # computed once per process (~0.1 s per preset: the failure-probability integrals), then
    # cached; off the event loop, and not through the compute queue (a public read never 503s)
    presets = await asyncio.to_thread(tfhe_store.published_presets)
    return json_response(TfhePricingResponse(
        currency="JPY", per_bootstrap=float(prices.TFHE_JPY_PER_BOOTSTRAP),
        batch_discount=TfheBatchDiscount(min_ops=prices.BATCH_DISCOUNT_MIN_OPS, pct=prices.BATCH_DISCOUNT_PCT),
        gates=[TfheGatePrice(op=op, bootstraps=per_gate[op],
                             price=prices.jpy_float(prices.tfhe_price(per_gate[op], 1).cost_jpy))
               for op in GATE_ORDER],
        presets=[TfhePresetInfo(**p) for p in presets],
    ))
