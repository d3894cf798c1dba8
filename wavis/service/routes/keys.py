"""FHE keys: POST /keys/upload (blind keys), POST /keys/generate (server mode, deprecated),
GET /keys (list), GET /keys/{key_id}, DELETE /keys/{key_id} (with all its ciphertexts)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from .. import admission, fhe, pagination, repo, serverkeys
from ..sealing import Sealer
from ..access import Access, RouteBodyLimit, access, body_limit, doc, principal
from ..bodies import parse
from ..engine import ComputeEngine
from ..errors import not_found
from ..ids import new_id
from ..schemas import (ErrorResponse, GaloisKeysRequest, KeyDeleted, KeyGenerated, KeyGenerateRequest, KeyList,
                       KeyResponse, KeyUploadRequest)
from ..schemas_compute import KeyWithMatmulResponse
from ..state import CTSTORE, DB, ENGINE, SETTINGS
from .util import db, json_response

routes = web.RouteTableDef()

KEY_UPLOAD_LIMIT = 40 * 1024 * 1024  # the ceiling; Settings.limits.key_upload_body may lower it


def key_upload_limit(settings) -> int:
    """The key-upload body limit this server enforces: ``Settings.limits.key_upload_body`` (40 MiB),
    never above ``KEY_UPLOAD_LIMIT`` (``GET /health`` reports it in ``limits``)."""
    return min(settings.limits.key_upload_body, KEY_UPLOAD_LIMIT)


async def _upload_body_limit(request: web.Request) -> int:
    return key_upload_limit(request.app[SETTINGS])


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
        insecure=is_insecure(row["params"]),
        magnitude_bound=float(2 ** fhe.magnitude_bits_of(row["params"])),
    )


def is_insecure(params: dict) -> bool:
    """`testing` parameters: no security bound at all (N as small as 16)."""
    return params.get("security_level") == "testing"


def refuse_insecure(request: web.Request, params: dict) -> None:
    """400 INSUFFICIENT_SECURITY for `testing` parameters unless the operator turned on
    ``WAVIS_ALLOW_INSECURE_PARAMS`` (issue 15)."""
    from ..errors import ApiError  # noqa: PLC0415

    if is_insecure(params) and not request.app[SETTINGS].allow_insecure_params:
        raise ApiError(400, "INSUFFICIENT_SECURITY",
                       "security_level 'testing' has no security at all and is refused by this server; use "
                       "'128-bit', '192-bit' or '256-bit' (the operator can allow insecure keys for development with "
                       "WAVIS_ALLOW_INSECURE_PARAMS=1)", {"security_level": "testing", "field": "params.security_level"})


async def params_for(engine: ComputeEngine, row: asyncpg.Record):
    """Parsed ``CkksParameters`` of a key row, cached by key id."""
    return await engine.params.get(row["id"], lambda: engine.run(fhe.build_params, row["params"]))


async def evaluator_for(request: web.Request, row: asyncpg.Record):
    """The key's ``Evaluator`` from the LRU, loading its evaluation key from Postgres once."""
    return await evaluator_for_app(request.app, row)


async def evaluator_for_app(app: web.Application, row: asyncpg.Record):
    """``(params, evaluator)`` of a key row without a request (the compute workers use it);
    the evaluator LRU is bounded in entries and bytes (``engine.ComputeEngine``)."""
    engine = app[ENGINE]
    params = await params_for(engine, row)

    async def load():
        async with app[DB].acquire(timeout=app[SETTINGS].upstream_timeout_s) as conn:
            blob = await repo.get_eval_key_blob(conn, row["id"])
            parts = await repo.get_eval_key_parts(conn, row["id"]) if blob is not None else []
        if blob is None:
            raise not_found("key", key_id=row["id"])
        return await engine.run(fhe.load_evaluator, params, blob, parts, engine.contexts)

    return params, await engine.evaluators.get(row["id"], load)


SECURITY_WARNING = "these parameters are for testing only and are not secure"


def _galois_steps(steps: list[int]) -> set[int]:
    """Distinct non-zero rotation steps (each one Galois key; the count admission prices)."""
    return {int(s) for s in steps} - {0}


def security_headers_for(parsed: fhe.ParsedKeys) -> dict[str, str]:
    """``X-Security-Warning`` for ``testing`` parameters or rings below N = 4096 (64, 256 …)."""
    if not parsed.is_secure or parsed.slot_count * 2 < 4096 \
            or parsed.params_dict.get("security_level") == "testing":
        return {"X-Security-Warning": SECURITY_WARNING}
    return {}


def secret_aad(key_id: str, account_id: str) -> bytes:
    return f"fhe_key:{key_id}:{account_id}".encode()


@routes.post("/keys/upload")
@access(Access.TRIAL_PLUS)
@doc("Upload a public key and evaluation keys (blind mode)", request=KeyUploadRequest,
     responses={200: KeyResponse, 400: ErrorResponse, 413: ErrorResponse})
@body_limit(RouteBodyLimit(KEY_UPLOAD_LIMIT, _upload_body_limit))
async def upload_key(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, KeyUploadRequest)
    params_in = fhe.request_params(req.params)  # resolved once: a preset's fields filled in, max_depth 1–24
    refuse_insecure(request, params_in)
    engine = request.app[ENGINE]
    limits = request.app[SETTINGS].limits
    admission.admit(request, "keys/upload", params_in, len(req.eval_key or ""))
    parsed: fhe.ParsedKeys = await engine.run(
        fhe.parse_key_upload, params_in, req.public_key, req.eval_key, limits, engine.contexts
    )
    del req  # drop the base64 text early
    async with db(request) as conn:
        row = await repo.insert_fhe_key(
            conn, account_id=p.account_id, scheme="rns-ckks", params=parsed.params_dict,
            fingerprint=parsed.fingerprint, key_tag=parsed.key_tag, slot_count=parsed.slot_count,
            max_level=parsed.max_level, galois_steps=parsed.galois_steps, conjugation=parsed.conjugation,
            public_key=parsed.public_key, eval_key=parsed.eval_key,
            ciphertext_body_limit=parsed.ciphertext_body_limit, key_digests=parsed.key_digests,
        )
    engine.params.put(row["id"], parsed.params)
    engine.evaluators.put(row["id"], parsed.evaluator)
    return json_response(key_response(row), headers=security_headers_for(parsed))




async def _chunk_body_limit(request: web.Request) -> int:
    """The upload body limit (40 MiB), or one key-switching key of the key's parameters (base64
    + 10 %) when larger (one Galois key at N = 2^16 is ~43 MB; the relinearization key at
    N = 2^15, depth 16 ~41.6 MB), ≤ fhe.KEY_CHUNK_CEILING (96 MiB)."""
    default = await _upload_body_limit(request)
    async with db(request) as conn:
        row = await repo.get_fhe_key(conn, principal(request).account_id, request.match_info["key_id"])
    if row is None:
        return default  # the handler answers 404
    params = await params_for(request.app[ENGINE], row)
    return fhe.key_chunk_limit(params, default)


@routes.post("/keys/{key_id}/galois-keys")
@access(Access.TRIAL_PLUS)
@doc("Add a chunk of evaluation keys to an uploaded key, for key sets too large for one request (matmul at "
     "N ≥ 16384, bootstrapping keys, a relinearization key that does not fit beside the public key): Galois keys, "
     "the relinearization key, "
     "and for bootstrap presets the encapsulation keys; ≤ 40 MB, or one key-switching key when that is larger "
     "(≤ 96 MiB)",
     request=GaloisKeysRequest,
     responses={200: KeyResponse, 400: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse})
@body_limit(RouteBodyLimit(fhe.KEY_CHUNK_CEILING, _chunk_body_limit))
async def add_galois_keys(request: web.Request) -> web.Response:
    p = principal(request)
    key_id = request.match_info["key_id"]
    req = await parse(request, GaloisKeysRequest)
    async with db(request) as conn:
        row = await repo.get_fhe_key(conn, p.account_id, key_id)
    if row is None:
        raise not_found("key", key_id=key_id)
    engine = request.app[ENGINE]
    admission.admit(request, "keys/galois-keys", row["params"], len(req.eval_key))
    params = await params_for(engine, row)
    chunk: fhe.GaloisChunk = await engine.run(fhe.parse_galois_chunk, params, bytes(row["key_tag"]), req.eval_key)
    del req
    async with db(request) as conn:
        updated, added = await repo.add_eval_key_part(conn, p.account_id, key_id, chunk.blob, chunk.galois_steps,
                                                      chunk.conjugation, chunk.other_keys, chunk.digests)
    if updated is None:
        raise not_found("key", key_id=key_id)
    if added:
        engine.evaluators.discard(key_id)  # reloaded with every stored chunk on next use
    return json_response(key_response(updated))


@routes.post("/keys/generate")
@access(Access.TRIAL_PLUS)
@doc("Generate a key pair on the server (deprecated; server mode)", request=KeyGenerateRequest,
     responses={200: KeyGenerated, 400: ErrorResponse, 501: ErrorResponse}, deprecated=True)
async def generate_key(request: web.Request) -> web.Response:
    from ..errors import ApiError  # noqa: PLC0415

    p = principal(request)
    req = await parse(request, KeyGenerateRequest)
    settings = request.app[SETTINGS]
    # resolved once (a preset's fields filled in, max_depth 1–24), so the insecure-parameter check
    # sees a `testing` preset's security level even when the request leaves it out
    params_in = fhe.request_params(req.params, req.bootstrap_preset)
    refuse_insecure(request, params_in)
    if req.bootstrappable and params_in.get("bootstrap_preset") is None:
        from wavis.ckks.presets import BOOTSTRAP_PRESETS  # noqa: PLC0415

        raise ApiError(400, "INVALID_PARAMS",
                       "bootstrappable keys need a bootstrap preset: set bootstrap_preset (or params.bootstrap_preset) "
                       f"to one of {sorted(BOOTSTRAP_PRESETS)}",
                       {"field": "bootstrap_preset", "presets": sorted(BOOTSTRAP_PRESETS)})
    engine = request.app[ENGINE]
    extra_keys = 0
    if req.bootstrappable:  # the bootstrapping keys count in the admission cost too
        extra_keys = await engine.run(serverkeys.bootstrap_key_count, params_in, req.bootstrap_slots)
    admission.admit(request, "keys/generate", params_in, len(_galois_steps(req.rotation_steps)) + extra_keys)
    gen: serverkeys.Generated = await engine.run(serverkeys.generate, params_in, req.rotation_steps,
                                                 settings.limits, req.bootstrappable, req.bootstrap_slots)
    parsed = gen.parsed
    key_id = new_id("key")
    sealed = Sealer(settings.master_key).seal(gen.secret_key, secret_aad(key_id, p.account_id))
    async with db(request) as conn:
        row = await repo.insert_fhe_key(
            conn, account_id=p.account_id, scheme="rns-ckks", params=parsed.params_dict,
            fingerprint=parsed.fingerprint, key_tag=parsed.key_tag, slot_count=parsed.slot_count,
            max_level=parsed.max_level, galois_steps=parsed.galois_steps, conjugation=parsed.conjugation,
            public_key=parsed.public_key, eval_key=parsed.eval_key,
            ciphertext_body_limit=parsed.ciphertext_body_limit, key_id=key_id, secret_key_sealed=sealed,
            key_digests=parsed.key_digests,
        )
        for part in gen.parts:  # key sets over one request's size (bootstrapping keys at N ≥ 2^15)
            row, _ = await repo.add_eval_key_part(conn, p.account_id, key_id, part.blob, part.galois_steps,
                                                  part.conjugation, part.other_keys, part.digests)
    engine.params.put(row["id"], parsed.params)
    if gen.parts:
        engine.evaluators.discard(row["id"])  # loaded with every chunk on first use
    else:
        engine.evaluators.put(row["id"], parsed.evaluator)
    secret = None
    if settings.allow_sk_in_response:
        secret = await engine.run(fhe.b64encode, gen.secret_key)
    body = KeyGenerated(**key_response(row).model_dump(), secret_key=secret)
    headers = {"Deprecation": "true", **security_headers_for(parsed)}
    return json_response(body, headers=headers)


@routes.get("/keys")
@access(Access.READ_PLUS)
@doc("List this account's FHE keys", responses={200: KeyList, 400: ErrorResponse}, query=pagination.QUERY_DOC)
async def list_keys(request: web.Request) -> web.Response:
    p = principal(request)
    scope = pagination.scope_of("fhe_keys", p.account_id)
    page = pagination.page_from(request, scope)
    async with db(request) as conn:
        rows = await repo.list_fhe_keys(conn, p.account_id, page.limit, page.after)
    return json_response(KeyList(**pagination.page_body(request, scope, page, rows, key_response)))


@routes.delete("/keys/{key_id}")
@access(Access.WRITE_PLUS)
@doc("Delete a key and every ciphertext under it", responses={200: KeyDeleted, 404: ErrorResponse})
async def delete_key(request: web.Request) -> web.Response:
    p = principal(request)
    key_id = request.match_info["key_id"]
    async with db(request) as conn:
        ct_ids = await repo.delete_fhe_key(conn, p.account_id, key_id)
    if ct_ids is None:
        raise not_found("key")
    engine = request.app[ENGINE]
    engine.params.discard(key_id)
    engine.evaluators.discard(key_id)
    await request.app[CTSTORE].drop(p.account_id, ct_ids)
    return json_response(KeyDeleted(deleted=True, ciphertexts_deleted=len(ct_ids)))


@routes.get("/keys/{key_id}")
@access(Access.READ_PLUS)
@doc("FHE key metadata (never a secret); with ?matmul_shape=ROWSxCOLS also the Galois steps that matmul needs",
     responses={200: KeyWithMatmulResponse, 400: ErrorResponse, 404: ErrorResponse},
     query={"matmul_shape": {"type": "string", "pattern": "^[0-9]+[xX×,][0-9]+$"}})
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
