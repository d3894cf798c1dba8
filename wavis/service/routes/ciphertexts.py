"""Ciphertexts: upload, get, delete; server-mode encrypt / decrypt; POST /decrypt → 501.

Blobs live in the per-account LRU store with a TTL (``ctstore``); evictions caused by a
request are collected on the request (``state.EVICTED``, see ``evicted_ids``) and reported in
that response's ``evicted_ciphertext_ids``."""

from __future__ import annotations

import math
from datetime import timedelta

import asyncpg
from aiohttp import web

from .. import ctstore, fhe, ratelimit, repo, serverkeys
from ..sealing import Sealer
from ..access import Access, RouteBodyLimit, access, body_limit, doc, principal
from ..bodies import parse, read_body
from ..errors import ApiError, not_found, payload_too_large
from ..ids import new_id, utcnow
from ..schemas import (CiphertextCreated, CiphertextData, CiphertextUploadRequest, DecryptResponse, EncryptRequest,
                       ErrorResponse)
from ..state import ENGINE, EVICTED, PRINCIPAL, REDIS, SETTINGS
from .keys import params_for, secret_aad
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
    """Blob into the account's LRU store in Redis (TTL), then metadata into Postgres; an orphan
    blob just expires. Ids evicted to make room are added to ``evicted_ids(request)``."""
    settings = request.app[SETTINGS]
    p = principal(request)
    ct_id = ct_id or new_id("ct")
    ttl = settings.ciphertext_ttl_s
    capacity = ratelimit.plan_of(settings.plans, p.plan).ciphertext_store_bytes
    async with upstream_timeout(request):
        evicted = await ctstore.put_lru(request.app[REDIS], settings.redis_prefix, p.account_id, ct_id, info.blob,
                                        ttl, capacity)
    evicted_ids(request).extend(evicted)
    try:
        async with db(request) as conn:
            return await repo.insert_ciphertext(
                conn, ct_id=ct_id, account_id=p.account_id, key_id=key_id, level=info.level,
                scale=info.scale, slots=info.slots, size_bytes=len(info.blob), source=source,
                expires_at=utcnow() + timedelta(seconds=ttl),
            )
    except asyncpg.ForeignKeyViolationError:
        # the key was deleted while this request ran: drop the blob (it would count against the
        # account's store for its whole TTL) and answer as for a missing key
        async with upstream_timeout(request):
            await ctstore.delete(request.app[REDIS], settings.redis_prefix, [ct_id], p.account_id)
        raise not_found("key", key_id=key_id, reason="the key was deleted during the request") from None


def evicted_ids(request: web.Request) -> list[str]:
    """Ciphertext ids the LRU store evicted while handling this request (report them)."""
    ids = request.get(EVICTED)
    if ids is None:
        ids = request[EVICTED] = []
    return ids


def created(request: web.Request, row: asyncpg.Record) -> web.Response:
    return json_response(CiphertextCreated(**meta(row), evicted_ciphertext_ids=list(evicted_ids(request))),
                         status=201)


async def blob_of(request: web.Request, account_id: str, ct_id: str) -> tuple[asyncpg.Record, bytes]:
    async with db(request) as conn:
        rows = await repo.get_ciphertexts(conn, account_id, [ct_id])
    row = rows.get(ct_id)
    if row is None:
        raise not_found("ciphertext")
    async with upstream_timeout(request):
        (blob,) = await ctstore.get_many(request.app[REDIS], request.app[SETTINGS].redis_prefix, [ct_id], account_id)
    if blob is None:
        raise not_found("ciphertext", reason="expired or evicted from the ciphertext store")
    return row, blob


def blind_key() -> ApiError:
    return ApiError(409, "BLIND_KEY", "this key is blind: the server has no secret key to encrypt or decrypt with")


@routes.post("/ciphertexts")
@access(Access.TRIAL_PLUS)
@body_limit(RouteBodyLimit(CEILING, _account_limit))
@doc("Upload a ciphertext", request=CiphertextUploadRequest,
     responses={201: CiphertextCreated, 400: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse})
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
    return created(request, row)


@routes.post("/ciphertexts/encrypt")
@access(Access.TRIAL_PLUS)
@doc("Encrypt values under a server-mode key", request=EncryptRequest,
     responses={201: CiphertextCreated, 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse})
async def encrypt(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, EncryptRequest)
    async with db(request) as conn:
        key = await repo.get_fhe_key(conn, p.account_id, req.key_id)
        if key is None:
            raise not_found("key", key_id=req.key_id)
        public_key = await conn.fetchval("SELECT public_key FROM fhe_keys WHERE id = $1", key["id"])
    if key["is_blind"]:
        raise blind_key()
    if len(req.values) > key["slot_count"]:
        raise ApiError(400, "INVALID_PARAMS", f"at most {key['slot_count']} values fit this key",
                       {"slot_count": key["slot_count"]})
    engine = request.app[ENGINE]
    params = await params_for(engine, key)
    info = await engine.run(serverkeys.encrypt, params, public_key, req.values)
    row = await store_ciphertext(request, key_id=key["id"], info=info, source="upload")
    return created(request, row)


@routes.post("/ciphertexts/{ciphertext_id}/decrypt")
@access(Access.WRITE_PLUS)
@doc("Decrypt a ciphertext under a server-mode key",
     responses={200: DecryptResponse, 404: ErrorResponse, 409: ErrorResponse})
async def decrypt(request: web.Request) -> web.Response:
    p = principal(request)
    row, blob = await blob_of(request, p.account_id, request.match_info["ciphertext_id"])
    async with db(request) as conn:
        key = await repo.get_fhe_key(conn, p.account_id, row["key_id"])
        sealed = await repo.get_secret_key_sealed(conn, p.account_id, row["key_id"])
    if key is None:
        raise not_found("ciphertext")
    if key["is_blind"] or sealed is None:
        raise blind_key()
    settings = request.app[SETTINGS]
    secret = Sealer(settings.master_key).open(bytes(sealed), secret_aad(key["id"], p.account_id))
    engine = request.app[ENGINE]
    params = await params_for(engine, key)
    values = await engine.run(serverkeys.decrypt, params, secret, blob)
    return json_response(DecryptResponse(values=values))


@routes.get("/ciphertexts/{ciphertext_id}")
@access(Access.READ_PLUS)
@doc("Ciphertext metadata and data", responses={200: CiphertextData, 404: ErrorResponse})
async def get_ciphertext(request: web.Request) -> web.Response:
    p = principal(request)
    row, blob = await blob_of(request, p.account_id, request.match_info["ciphertext_id"])
    text = await request.app[ENGINE].run(fhe.b64encode, blob)
    return json_response(CiphertextData(**meta(row), ciphertext_b64=text))


@routes.delete("/ciphertexts/{ciphertext_id}")
@access(Access.WRITE_PLUS)
@doc("Delete a ciphertext", responses={204: None, 404: ErrorResponse})
async def delete_ciphertext(request: web.Request) -> web.Response:
    p = principal(request)
    ct_id = request.match_info["ciphertext_id"]
    async with db(request) as conn:
        found = await repo.delete_ciphertext(conn, p.account_id, ct_id)
    if not found:
        raise not_found("ciphertext")
    async with upstream_timeout(request):
        await ctstore.delete(request.app[REDIS], request.app[SETTINGS].redis_prefix, [ct_id], p.account_id)
    return web.Response(status=204)


@routes.post("/decrypt")
@access(Access.ANY)
@doc("Always 501: in blind mode the server cannot decrypt", responses={501: ErrorResponse})
async def decrypt_blind(request: web.Request) -> web.Response:
    raise ApiError(501, "NOT_IMPLEMENTED",
                   "the server cannot decrypt: keys are blind; decrypt on the client "
                   "(server-mode keys: POST /ciphertexts/{id}/decrypt)")
