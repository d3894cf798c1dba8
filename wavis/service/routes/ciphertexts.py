"""Ciphertexts: upload, get, delete; server-mode encrypt / decrypt; POST /decrypt → 501.

Blobs are durable (``ctstore``: blob store + Redis cache) before the answer; the per-account
quota (LRU) and the TTL are kept in PostgreSQL. Evictions caused by a request are collected on
the request (``state.EVICTED``, see ``evicted_ids``) and reported in that response's
``evicted_ciphertext_ids``."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import asyncpg
from aiohttp import web

from .. import fhe, provenance, ratelimit, repo, serverkeys
from ..sealing import Sealer
from ..access import Access, RouteBodyLimit, access, body_limit, doc, principal
from ..bodies import parse, read_body
from ..errors import ApiError, not_found, payload_too_large
from ..ids import new_id, utcnow
from ..schemas import (CiphertextCreated, CiphertextData, CiphertextUploadRequest, DecryptResponse, EncryptRequest,
                       ErrorResponse)
from ..state import CTSTORE, DB, ENGINE, EVICTED, PRINCIPAL, SETTINGS
from .keys import params_for, secret_aad
from .util import db, json_response

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
        slots=row["slots"], size_bytes=row["size_bytes"], provenance=row["provenance"], created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def blob_tags(app: web.Application) -> provenance.BlobTags:
    return provenance.tags_for(app[SETTINGS].master_key)


async def store_ciphertext(request: web.Request, *, key_id: str, info: fhe.CiphertextInfo, source: str,
                           origin: str, ct_id: str | None = None) -> asyncpg.Record:
    """``persist_ciphertext`` for the caller of this request; the evicted ids are added to
    ``evicted_ids(request)``."""
    p = principal(request)
    row, evicted = await persist_ciphertext(request.app, account_id=p.account_id, plan=p.plan, key_id=key_id,
                                            info=info, source=source, origin=origin, ct_id=ct_id)
    evicted_ids(request).extend(evicted)
    return row


async def persist_ciphertext(app: web.Application, *, account_id: str, plan: str, key_id: str,
                             info: fhe.CiphertextInfo, source: str, origin: str,
                             ct_id: str | None = None) -> tuple[asyncpg.Record, list[str]]:
    """The blob onto durable storage (fsync'd), then — in one transaction under the account's
    store lock — its row and the LRU evictions that make room within the plan's
    ``ciphertext_store_bytes``. Returns the row and the evicted ids; their blobs go after the
    commit (a crash in between leaves orphan files for the sweeper, never a row without its
    blob). Needs no request: the compute workers store results through it.

    ``origin`` is the provenance (``provenance.SERVER`` / ``CLIENT``, issue 15): the blob is first
    given the server's keyed tag over blob, account, key and provenance (``info.blob`` becomes the
    tagged blob) and the row records it."""
    settings = app[SETTINGS]
    info.blob = await app[ENGINE].run(provenance.sign_ckks, blob_tags(app), info.blob, account_id, key_id, origin)
    store = app[CTSTORE]
    ct_id = ct_id or new_id("ct")
    ttl = settings.ciphertext_ttl_s
    capacity = ratelimit.plan_of(settings.plans, plan).ciphertext_store_bytes
    await store.put(account_id, ct_id, info.blob)
    try:
        async with app[DB].acquire(timeout=settings.upstream_timeout_s) as conn:
            async with conn.transaction():
                await repo.lock_ciphertext_store(conn, account_id)
                row = await repo.insert_ciphertext(
                    conn, ct_id=ct_id, account_id=account_id, key_id=key_id, level=info.level,
                    scale=info.scale, slots=info.slots, size_bytes=len(info.blob), source=source,
                    expires_at=utcnow() + timedelta(seconds=ttl), provenance=origin,
                )
                evicted = await repo.evict_lru(conn, account_id, ct_id, capacity)
    except asyncpg.ForeignKeyViolationError:
        # the key was deleted while this request ran: drop the blob and answer as for a missing key
        await store.drop(account_id, [ct_id])
        raise not_found("key", key_id=key_id, reason="the key was deleted during the request") from None
    except BaseException:
        # no row: the blob would be an orphan (the sweeper removes it later if this fails too)
        try:
            await asyncio.shield(store.drop(account_id, [ct_id]))
        except Exception:  # noqa: BLE001
            pass
        raise
    ids = [r["id"] for r in evicted]
    if ids:
        await store.drop(account_id, ids)
    return row, ids


async def load_blobs(request: web.Request, account_id: str, ct_ids: list[str]) -> list[bytes | None]:
    """Blobs of rows already checked to exist (None where the blob store lost one), marking them
    used in the account's LRU order."""
    return await load_blobs_app(request.app, account_id, ct_ids)


async def load_blobs_app(app: web.Application, account_id: str, ct_ids: list[str]) -> list[bytes | None]:
    """``load_blobs`` without a request (the compute workers use it)."""
    async with app[DB].acquire(timeout=app[SETTINGS].upstream_timeout_s) as conn:
        await repo.touch_ciphertexts(conn, account_id, ct_ids)
    return await app[CTSTORE].get_many(account_id, ct_ids)


def evicted_ids(request: web.Request) -> list[str]:
    """Ciphertext ids the LRU store evicted while handling this request (report them)."""
    ids = request.get(EVICTED)
    if ids is None:
        ids = request[EVICTED] = []
    return ids


def created(request: web.Request, row: asyncpg.Record) -> web.Response:
    return json_response(CiphertextCreated(**meta(row), evicted_ciphertext_ids=list(evicted_ids(request))),
                         status=201)


DELETION_REASONS = {
    "lru": "expired or evicted from the ciphertext store (the account's store was full: least recently used)",
    "ttl": "expired or evicted from the ciphertext store (its TTL passed)",
    "key_deleted": "deleted with its key",
    "deleted": "deleted",
}


async def missing_ciphertext(request: web.Request, account_id: str, ct_id: str, **details) -> ApiError:
    """404 for a ciphertext of this account that is not (or no longer) stored, saying why
    (``details.reason`` and ``details.deletion``) when it was deleted."""
    async with db(request) as conn:
        why = await repo.deletion_reason(conn, account_id, ct_id)
    if why is None:
        return not_found("ciphertext", **details)
    return not_found("ciphertext", **details, reason=DELETION_REASONS[why], deletion=why)


async def blob_of(request: web.Request, account_id: str, ct_id: str) -> tuple[asyncpg.Record, bytes]:
    async with db(request) as conn:
        rows = await repo.get_ciphertexts(conn, account_id, [ct_id])
    row = rows.get(ct_id)
    if row is None:
        raise await missing_ciphertext(request, account_id, ct_id)
    (blob,) = await load_blobs(request, account_id, [ct_id])
    if blob is None:  # the row exists but the blob store lost the file (operator error)
        raise not_found("ciphertext", reason="the blob is missing from the blob store")
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
    # an upload is never server-produced, whatever tag it carries (issue 15: client-uploaded
    # ciphertexts and anything computed from them are never decrypted)
    row = await store_ciphertext(request, key_id=key["id"], info=info, source="upload", origin=provenance.CLIENT)
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
    row = await store_ciphertext(request, key_id=key["id"], info=info, source="upload", origin=provenance.SERVER)
    return created(request, row)


@routes.post("/ciphertexts/{ciphertext_id}/decrypt")
@access(Access.WRITE_PLUS)
@doc("Decrypt a ciphertext the server produced under a server-mode key (noise-flooded, rounded)",
     responses={200: DecryptResponse, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse})
async def decrypt(request: web.Request) -> web.Response:
    """Only ciphertexts that are server-produced all the way down (row provenance ``server``
    and the blob's keyed tag for it) are decrypted; the values are noise-flooded
    (σ = 2^30·B, ``wavis.ckks.flooding``) and rounded to the precision left."""
    p = principal(request)
    ct_id = request.match_info["ciphertext_id"]
    row, blob = await blob_of(request, p.account_id, ct_id)
    async with db(request) as conn:
        key = await repo.get_fhe_key(conn, p.account_id, row["key_id"])
        sealed = await repo.get_secret_key_sealed(conn, p.account_id, row["key_id"])
    if key is None:
        raise not_found("ciphertext")
    if key["is_blind"] or sealed is None:
        raise blind_key()
    engine = request.app[ENGINE]
    tag_ok = await engine.run(provenance.ckks_is_server, blob_tags(request.app), blob, p.account_id, key["id"])
    if not tag_ok or row["provenance"] != provenance.SERVER:
        raise provenance.not_server_produced("this ciphertext", ciphertext_id=ct_id, provenance=row["provenance"])
    settings = request.app[SETTINGS]
    secret = Sealer(settings.master_key).open(bytes(sealed), secret_aad(key["id"], p.account_id))
    params = await params_for(engine, key)
    out = await engine.run(serverkeys.decrypt, params, secret, blob)
    return json_response(DecryptResponse(**out))


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
    await request.app[CTSTORE].drop(p.account_id, [ct_id])
    return web.Response(status=204)


@routes.post("/decrypt")
@access(Access.ANY)
@doc("Always 501: in blind mode the server cannot decrypt", responses={501: ErrorResponse})
async def decrypt_blind(request: web.Request) -> web.Response:
    raise ApiError(501, "NOT_IMPLEMENTED",
                   "the server cannot decrypt: keys are blind; decrypt on the client "
                   "(server-mode keys: POST /ciphertexts/{id}/decrypt)")
