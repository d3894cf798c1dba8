"""POST /onboarding/temp-key: a trial key (30 min, 10 operations) for a new trial account;
DELETE /onboarding/temp-key/{key_prefix} revokes one."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from .. import ratelimit, repo
from ..access import Access, Role, access, doc
from ..errors import ApiError, not_found
from ..middleware import client_ip, too_many_auth_failures
from ..schemas import ErrorResponse, TempKeyResponse, TempKeyRevoked
from ..state import REDIS, SETTINGS
from .util import db, json_response, upstream_timeout

routes = web.RouteTableDef()

WINDOW_S = 60


# INCR and start the window on first use, atomically (a Lua script: works on Redis 6 and 7).
_FIXED_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""


async def _count_per_ip(request: web.Request, limit: int) -> None:
    """Fixed-window counter per client IP in Redis."""
    ip = request.remote or "unknown"
    key = f"{request.app[SETTINGS].redis_prefix}rl:temp-key:{ip}"
    async with upstream_timeout(request):
        count, ttl = await request.app[REDIS].eval(_FIXED_WINDOW, 1, key, WINDOW_S)
    if count > limit:
        retry = max(int(ttl), 1)
        raise ApiError(429, "RATE_LIMITED", f"at most {limit} temporary keys per minute from one address",
                       {"limit": limit, "window_seconds": WINDOW_S}, headers={"Retry-After": str(retry)})


@routes.post("/onboarding/temp-key")
@access(Access.PUBLIC)
@doc("Create a trial key (30 minutes, 10 operations)", responses={200: TempKeyResponse, 429: ErrorResponse})
async def create_temp_key(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await _count_per_ip(request, settings.temp_keys_per_ip_per_min)
    async with db(request) as conn:
        new = await repo.create_account(
            conn, settings.api_key_pepper, email=None, plan="trial", role=Role.TRIAL, environment="trial",
            is_trial=True, ops_limit=settings.trial_ops_limit, ttl=timedelta(seconds=settings.trial_key_ttl_s),
        )
    body = TempKeyResponse(
        api_key=new.api_key,
        expires_at=new.expires_at,
        ops_limit=settings.trial_ops_limit,
        message=(f"Trial key valid for {settings.trial_key_ttl_s // 60} minutes and "
                 f"{settings.trial_ops_limit} operations. It is shown only once."),
    )
    return json_response(body)


@routes.delete("/onboarding/temp-key/{key_prefix}")
@access(Access.PUBLIC)
@doc("Revoke a trial key by its first 16+ characters (misses count towards the per-IP lockout)",
     responses={200: TempKeyRevoked, 404: ErrorResponse, 429: ErrorResponse})
async def revoke_temp_key(request: web.Request) -> web.Response:
    """A 16-character prefix leaves only 24 random bits, so a miss counts as a failed
    authentication of the caller's IP (the brute-force lockout of API.md §1 applies): guessing
    prefixes to revoke other people's trial keys is locked out after a few tries."""
    settings, redis = request.app[SETTINGS], request.app[REDIS]
    ip = client_ip(request)
    async with upstream_timeout(request):
        locked = await ratelimit.lockout_remaining(redis, settings.redis_prefix, ip)
    if locked:
        raise too_many_auth_failures(locked)
    prefix = request.match_info["key_prefix"]
    ok = False
    if len(prefix) >= 16 and prefix.startswith("wvs_trial_"):
        async with db(request) as conn:
            ok = await repo.revoke_trial_key_by_prefix(conn, prefix)
    if not ok:
        async with upstream_timeout(request):
            await ratelimit.record_auth_failure(redis, settings.redis_prefix, ip)
        raise not_found("trial key")
    return json_response(TempKeyRevoked(revoked=True))
