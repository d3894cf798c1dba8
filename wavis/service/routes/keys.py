"""FHE keys: POST /api/v1/keys/upload (blind keys), GET /api/v1/keys/{key_id}."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from .. import fhe, repo
from ..access import Access, access, body_limit, principal
from ..bodies import parse
from ..engine import ComputeEngine
from ..errors import not_found
from ..schemas import KeyResponse, KeyUploadRequest
from ..state import ENGINE, SETTINGS
from .util import db, json_response

routes = web.RouteTableDef()

KEY_UPLOAD_LIMIT = 40 * 1024 * 1024


def key_response(row: asyncpg.Record) -> KeyResponse:
    return KeyResponse(
        key_id=row["id"],
        scheme=row["scheme"],
        slot_count=row["slot_count"],
        params=row["params"],
        galois_steps=list(row["galois_steps"]),
        conjugation=row["conjugation"],
        max_level=row["max_level"],
        created_at=row["created_at"],
        blind_guarantee=row["is_blind"],
        ciphertext_upload_limit_bytes=row["ciphertext_body_limit"],
    )


async def params_for(engine: ComputeEngine, row: asyncpg.Record):
    """Parsed ``CkksParameters`` of a key row, cached by key id."""
    return await engine.params.get(row["id"], lambda: engine.run(fhe.build_params, row["params"]))


async def evaluator_for(request: web.Request, row: asyncpg.Record):
    """The key's ``Evaluator`` from the LRU, loading its evaluation key from Postgres once."""
    engine = request.app[ENGINE]
    params = await params_for(engine, row)

    async def load():
        async with db(request) as conn:
            blob = await repo.get_eval_key_blob(conn, row["id"])
        if blob is None:
            raise not_found("key", key_id=row["id"])
        return await engine.run(fhe.load_evaluator, params, blob)

    return params, await engine.evaluators.get(row["id"], load)


@routes.post("/keys/upload")
@access(Access.TRIAL_PLUS)
@body_limit(KEY_UPLOAD_LIMIT)
async def upload_key(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, KeyUploadRequest)
    engine = request.app[ENGINE]
    limits = request.app[SETTINGS].limits
    parsed: fhe.ParsedKeys = await engine.run(
        fhe.parse_key_upload, req.params.model_dump(), req.public_key, req.eval_key, limits
    )
    del req  # drop the base64 text early
    async with db(request) as conn:
        row = await repo.insert_fhe_key(
            conn, account_id=p.account_id, scheme="rns-ckks", params=parsed.params_dict,
            fingerprint=parsed.fingerprint, key_tag=parsed.key_tag, slot_count=parsed.slot_count,
            max_level=parsed.max_level, galois_steps=parsed.galois_steps, conjugation=parsed.conjugation,
            public_key=parsed.public_key, eval_key=parsed.eval_key,
            ciphertext_body_limit=parsed.ciphertext_body_limit,
        )
    engine.params.put(row["id"], parsed.params)
    engine.evaluators.put(row["id"], parsed.evaluator)
    headers = {}
    if not parsed.is_secure or parsed.slot_count * 2 < 4096:
        headers["X-Security-Warning"] = "these parameters are for testing only and are not secure"
    return json_response(key_response(row), headers=headers)


@routes.get("/keys/{key_id}")
@access(Access.READ_PLUS)
async def get_key(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        row = await repo.get_fhe_key(conn, p.account_id, request.match_info["key_id"])
    if row is None:
        raise not_found("key")
    shape = request.query.get("matmul_shape")
    if shape is not None:  # [ours] the Galois steps a matmul of that shape needs (routes/compute.py)
        from .compute import key_response_with_matmul  # noqa: PLC0415 - compute imports this module

        return json_response(await key_response_with_matmul(request, row, key_response(row), shape))
    return json_response(key_response(row))
