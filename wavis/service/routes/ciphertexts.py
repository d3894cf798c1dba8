"""Ciphertexts: POST /api/v1/ciphertexts (upload), GET /api/v1/ciphertexts/{id}."""

from __future__ import annotations

import math
from datetime import timedelta

import asyncpg
from aiohttp import web

from .. import ctstore, fhe, repo
from ..access import Access, RouteBodyLimit, access, body_limit, principal
from ..bodies import parse, read_body
from ..errors import not_found, payload_too_large
from ..ids import new_id, utcnow
from ..schemas import CiphertextData, CiphertextMeta, CiphertextUploadRequest
from ..state import ENGINE, PRINCIPAL, REDIS, SETTINGS
from .keys import params_for
from .util import db, json_response, upstream_timeout

routes = web.RouteTableDef()

CEILING = 64 * 1024 * 1024


async def _account_limit(request: web.Request) -> int:
    """2 MB, or more when one of the caller's keys makes fresh ciphertexts larger."""
    base = request.app[SETTINGS].limits.ciphertext_body
    p = request.get(PRINCIPAL)
    if p is None:
        return base
    async with db(request) as conn:
        biggest = await repo.max_ciphertext_body_limit(conn, p.account_id)
    return max(base, biggest)


def meta(row: asyncpg.Record) -> dict:
    return dict(
        ciphertext_id=row["id"], key_id=row["key_id"], level=row["level"],
        scale_bits=round(math.log2(row["scale"]), 6) if row["scale"] > 0 else 0.0,
        slots=row["slots"], size_bytes=row["size_bytes"], created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


async def store_ciphertext(request: web.Request, *, key_id: str, info: fhe.CiphertextInfo, source: str,
                           ct_id: str | None = None) -> asyncpg.Record:
    """Blob into Redis (TTL), then metadata into Postgres; an orphan blob just expires."""
    settings = request.app[SETTINGS]
    ct_id = ct_id or new_id("ct")
    ttl = settings.ciphertext_ttl_s
    async with upstream_timeout(request):
        await ctstore.put(request.app[REDIS], settings.redis_prefix, ct_id, info.blob, ttl)
    async with db(request) as conn:
        return await repo.insert_ciphertext(
            conn, ct_id=ct_id, account_id=principal(request).account_id, key_id=key_id, level=info.level,
            scale=info.scale, slots=info.slots, size_bytes=len(info.blob), source=source,
            expires_at=utcnow() + timedelta(seconds=ttl),
        )


@routes.post("/ciphertexts")
@access(Access.TRIAL_PLUS)
@body_limit(RouteBodyLimit(CEILING, _account_limit))
async def upload_ciphertext(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, CiphertextUploadRequest)
    async with db(request) as conn:
        key = await repo.get_fhe_key(conn, p.account_id, req.key_id)
    if key is None:
        raise not_found("key", key_id=req.key_id)
    body_len = len(await read_body(request))
    if body_len > key["ciphertext_body_limit"]:
        raise payload_too_large(key["ciphertext_body_limit"])
    engine = request.app[ENGINE]
    params = await params_for(engine, key)
    info = await engine.run(fhe.parse_ciphertext, params, key["key_tag"], req.ciphertext_b64)
    row = await store_ciphertext(request, key_id=key["id"], info=info, source="upload")
    return json_response(CiphertextMeta(**meta(row)), status=201)


@routes.get("/ciphertexts/{ciphertext_id}")
@access(Access.READ_PLUS)
async def get_ciphertext(request: web.Request) -> web.Response:
    p = principal(request)
    ct_id = request.match_info["ciphertext_id"]
    async with db(request) as conn:
        rows = await repo.get_ciphertexts(conn, p.account_id, [ct_id])
    row = rows.get(ct_id)
    if row is None:
        raise not_found("ciphertext")
    async with upstream_timeout(request):
        (blob,) = await ctstore.get_many(request.app[REDIS], request.app[SETTINGS].redis_prefix, [ct_id])
    if blob is None:
        raise not_found("ciphertext", reason="expired or evicted from the ciphertext store")
    text = await request.app[ENGINE].run(fhe.b64encode, blob)
    return json_response(CiphertextData(**meta(row), ciphertext_b64=text))
