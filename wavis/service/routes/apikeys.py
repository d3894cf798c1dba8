"""API keys: GET/POST /api-keys, DELETE /api-keys/{id} (account_admin), and
POST /keys/apikey/rotate (the caller's own key; the old one keeps working 24 h)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from aiohttp import web

from .. import pagination, ratelimit, repo
from ..access import Access, Role, access, doc, principal
from ..bodies import parse
from ..errors import ApiError, not_found
from ..schemas import ApiKeyCreated, ApiKeyCreateRequest, ApiKeyItem, ApiKeyList, ApiKeyRotated, ErrorResponse
from ..state import SETTINGS
from .util import db, json_response

routes = web.RouteTableDef()

ROTATION_GRACE = timedelta(hours=24)


def item(row: asyncpg.Record) -> ApiKeyItem:
    return ApiKeyItem(id=row["id"], prefix=row["prefix"], environment=row["environment"], role=row["role"],
                      created_at=row["created_at"], last_used_at=row["last_used_at"], revoked_at=row["revoked_at"],
                      expires_at=row["expires_at"])


@routes.get("/api-keys")
@access(Access.BILLING_PLUS)
@doc("List this account's API keys (never the keys themselves)", responses={200: ApiKeyList, 400: ErrorResponse},
     query=pagination.QUERY_DOC)
async def list_api_keys(request: web.Request) -> web.Response:
    p = principal(request)
    scope = pagination.scope_of("api_keys", p.account_id)
    page = pagination.page_from(request, scope)
    async with db(request) as conn:
        rows = await repo.list_api_keys(conn, p.account_id, page.limit, page.after)
    return json_response(ApiKeyList(**pagination.page_body(request, scope, page, rows, item)))


@routes.post("/api-keys")
@access(Access.BILLING_PLUS)
@doc("Create an API key (shown once)", request=ApiKeyCreateRequest,
     responses={201: ApiKeyCreated, 429: ErrorResponse})
async def create_api_key(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, ApiKeyCreateRequest)
    settings = request.app[SETTINGS]
    per_hour = ratelimit.plan_of(settings.plans, p.plan).api_keys_per_hour
    async with db(request) as conn:
        new = await repo.create_api_key_limited(conn, settings.api_key_pepper, account_id=p.account_id,
                                                role=Role(req.role), environment=req.environment, per_hour=per_hour)
        if new is None:
            raise ApiError(429, "RATE_LIMITED", f"at most {per_hour} API keys per account per hour",
                           {"limit": per_hour, "window_seconds": 3600}, headers={"Retry-After": "3600"})
        row = await conn.fetchrow(f"SELECT {repo.API_KEY_COLUMNS} FROM api_keys WHERE id = $1", new.api_key_id)
    return json_response(ApiKeyCreated(**item(row).model_dump(), key=new.api_key), status=201)


@routes.delete("/api-keys/{api_key_id}")
@access(Access.BILLING_PLUS)
@doc("Revoke an API key now", responses={204: None, 404: ErrorResponse})
async def revoke_api_key(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        found = await repo.revoke_api_key(conn, p.account_id, request.match_info["api_key_id"])
    if not found:
        raise not_found("API key")
    return web.Response(status=204)


@routes.post("/keys/apikey/rotate")
@access(Access.WRITE_PLUS)
@doc("Rotate the calling API key; the old key keeps working for 24 h", responses={200: ApiKeyRotated})
async def rotate(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        new, old_prefix, ends = await repo.rotate_api_key(conn, request.app[SETTINGS].api_key_pepper, p,
                                                          ROTATION_GRACE)
    return json_response(ApiKeyRotated(new_api_key=new.api_key, old_key_prefix=old_prefix,
                                       grace_period_ends_at=ends, environment=p.environment))
