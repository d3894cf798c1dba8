"""GET/HEAD /api/v1/health (dependency probes) and /livez, /readyz for orchestrators."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

import wavis

from .. import maintenance, pools
from ..access import Access, access, doc, operational
from ..schemas import BodyLimits, Dependency, HealthResponse, ProbeResponse
from ..state import PROBE_DB, PROBE_REDIS, DB, ENGINE, METRICS, REDIS, SETTINGS, SHUTTING_DOWN, STARTED_AT
from .util import json_response

routes = web.RouteTableDef()   # mounted under /api/v1
probes = web.RouteTableDef()   # mounted at the root

DEGRADED_MS = {"postgres": 500.0, "redis": 1000.0}


async def _probe(name: str, coro_fn, timeout: float) -> Dependency:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await coro_fn()
    except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return Dependency(name=name, status="unavailable", latency_ms=None, error=reason)
    ms = round((time.perf_counter() - start) * 1e3, 2)
    status = "degraded" if ms > DEGRADED_MS[name] else "healthy"
    return Dependency(name=name, status=status, latency_ms=ms)


async def probe_postgres(app: web.Application, timeout: float) -> Dependency:
    """PostgreSQL through /health's own small pool (``PROBE_DB``); a saturated request pool
    is reported as ``degraded`` (overload), not as PostgreSQL being unavailable."""
    async def q():
        async with app[PROBE_DB].acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1")

    return _saturated(await _probe("postgres", q, timeout), app[DB].saturation())


async def probe_redis(app: web.Application, timeout: float) -> Dependency:
    return _saturated(await _probe("redis", app[PROBE_REDIS].ping, timeout), pools.redis_saturation(app[REDIS]))


def _saturated(dep: Dependency, saturation: tuple[int, int, int] | None) -> Dependency:
    """``degraded`` when every pooled connection is in use and requests wait for one."""
    if dep.status == "unavailable" or saturation is None:
        return dep
    in_use, size, waiting = saturation
    if waiting > 0 and in_use >= size:
        return dep.model_copy(update={"status": "degraded",
                                      "error": f"connection pool saturated ({in_use}/{size} in use, {waiting} waiting)"})
    return dep


async def _cache_usage(app: web.Application) -> float | None:
    try:
        async with asyncio.timeout(0.5):
            info = await app[PROBE_REDIS].info("memory")
        maxmem = int(info.get("maxmemory", 0))
        if maxmem <= 0:
            return None
        return round(100.0 * int(info.get("used_memory", 0)) / maxmem, 2)
    except Exception:  # noqa: BLE001
        return None


async def _redis_value(app: web.Application, fn, timeout: float = 0.5):
    try:
        async with asyncio.timeout(timeout):
            return await fn(app[PROBE_REDIS], app[SETTINGS].redis_prefix)
    except Exception:  # noqa: BLE001 - the redis probe reports the outage
        return None


async def _live_sessions(app: web.Application, timeout: float = 0.5) -> int | None:
    """Live TFHE sessions of every account (None when PostgreSQL does not answer in time)."""
    from .. import repo_tfhe  # noqa: PLC0415
    from ..tfhe_store import TFHE_STORE  # noqa: PLC0415

    try:
        async with asyncio.timeout(timeout):
            async with app[PROBE_DB].acquire() as conn:
                return int(await repo_tfhe.count_all_live_sessions(conn, app[TFHE_STORE].config.idle_s))
    except Exception:  # noqa: BLE001 - the postgres probe reports the outage
        return None


async def _deletion_totals(app: web.Application, timeout: float = 0.5) -> dict[str, int] | None:
    """Ciphertexts deleted from the durable store since it began, per reason (lru, ttl,
    key_deleted, deleted); None when PostgreSQL does not answer in time."""
    from .. import repo  # noqa: PLC0415

    try:
        async with asyncio.timeout(timeout):
            async with app[PROBE_DB].acquire() as conn:
                return await repo.deletion_totals(conn)
    except Exception:  # noqa: BLE001 - the postgres probe reports the outage
        return None


async def _webhook_backlog(app: web.Application, timeout: float = 0.5) -> tuple[int, float] | None:
    """(pending webhook events, age of the oldest in seconds); None when PostgreSQL does not answer."""
    from .. import repo_webhooks  # noqa: PLC0415

    try:
        async with asyncio.timeout(timeout):
            async with app[DB].acquire() as conn:
                return await repo_webhooks.backlog(conn)
    except Exception:  # noqa: BLE001 - the postgres probe reports the outage
        return None


async def backend_info(app: web.Application) -> tuple[str, object | None, str | None]:
    """(backend kind "cpu"/"cuda", its :class:`wavis.backend.BackendInfo` or None, error) of the
    engine's device (the settings' ``WAVIS_BACKEND``). While the backend is not built yet (the
    first call; every call when it cannot start) it is built in a thread: on ``cuda`` that imports
    CuPy and probes the device, which must not block the event loop."""
    from wavis.errors import BackendError  # noqa: PLC0415

    contexts = app[ENGINE].contexts
    configured = contexts.backend_name if contexts is not None else app[SETTINGS].compute_backend
    try:
        if contexts is None:
            info = None
        elif contexts.built:
            info = contexts.info()
        else:
            info = await asyncio.to_thread(contexts.info)
    except BackendError as exc:
        return ("cuda" if configured == "cuda" else "cpu"), None, str(exc)
    if info is None:
        return "cpu", None, None
    return info.kind, info, None


def body_limits(settings) -> BodyLimits:
    """The body limits the routes enforce (the key routes' own functions, so they cannot drift)."""
    from .. import fhe  # noqa: PLC0415
    from .keys import key_upload_limit  # noqa: PLC0415

    upload = key_upload_limit(settings)
    return BodyLimits(default_body_bytes=settings.limits.default_body,
                      ciphertext_body_bytes=settings.limits.ciphertext_body,
                      key_upload_body_bytes=upload, key_chunk_max_bytes=max(upload, fhe.KEY_CHUNK_CEILING))


@routes.get("/health")  # aiohttp registers HEAD with the same handler
@access(Access.PUBLIC)
@operational
@doc("Service health with per-dependency probes", responses={200: HealthResponse, 503: HealthResponse})
async def health(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    pg, rd, usage, deletions, maint, sessions = await asyncio.gather(
        probe_postgres(app, settings.probe_timeout_s), probe_redis(app, settings.probe_timeout_s), _cache_usage(app),
        # the PostgreSQL counters run beside the probe and get its deadline (API.md: 2 s): with 0.5 s
        # a loaded host answered active_sessions 0 while sessions were live
        _deletion_totals(app, settings.probe_timeout_s), _redis_value(app, maintenance.get),
        _live_sessions(app, settings.probe_timeout_s),
    )
    stripe = Dependency(name="stripe", status="healthy" if settings.stripe_configured else "not_configured")
    counted = [pg, rd]
    if any(d.status == "unavailable" for d in counted):
        overall = "unavailable"
    elif any(d.status == "degraded" for d in counted):
        overall = "degraded"
    else:
        overall = "healthy"
    engine = app[ENGINE]
    kind, info, backend_error = await backend_info(app)
    body = HealthResponse(
        status=overall,
        version=wavis.__version__,
        uptime_seconds=round(time.monotonic() - app[STARTED_AT], 3),
        fhe_engine="wavis-ckks",
        backend=kind,
        gpu_available=bool(info is not None and info.gpu),
        gpu_name=info.device_name if info is not None and info.gpu else None,
        device_name=info.device_name if info is not None else None,
        simd_path=info.simd_path if info is not None else None,
        backend_error=backend_error,
        active_sessions=sessions if sessions is not None else 0,
        active_jobs=engine.running,
        queue_depth=await job_queue_depth(app),
        ciphertext_cache_usage_pct=usage,
        ciphertext_cache_warning=bool(usage is not None and usage >= 80.0),
        ciphertext_evictions_total=deletions.get("lru") if deletions is not None else None,
        ciphertext_deletions_total=deletions,
        maintenance=bool(settings.maintenance or maint is not None),
        limits=body_limits(settings),
        dependencies=[pg, rd, stripe],
    )
    return json_response(body, status=503 if overall == "unavailable" else 200)


@probes.get("/livez")
@access(Access.PUBLIC)
@operational
@doc("Liveness: the process answers", responses={200: ProbeResponse})
async def livez(request: web.Request) -> web.Response:
    return json_response(ProbeResponse(status="ok"))


@probes.get("/readyz")
@access(Access.PUBLIC)
@operational
@doc("Readiness: PostgreSQL and Redis reachable, not shutting down",
     responses={200: ProbeResponse, 503: ProbeResponse})
async def readyz(request: web.Request) -> web.Response:
    app = request.app
    if app[SHUTTING_DOWN][0]:
        return json_response(ProbeResponse(status="shutting_down"), status=503)
    timeout = app[SETTINGS].probe_timeout_s
    pg, rd = await asyncio.gather(probe_postgres(app, timeout), probe_redis(app, timeout))
    checks = {d.name: d.status for d in (pg, rd)}
    ok = all(d.status != "unavailable" for d in (pg, rd))
    return json_response(ProbeResponse(status="ok" if ok else "unavailable", checks=checks), status=200 if ok else 503)


async def job_queue_depth(app: web.Application) -> int:
    """Jobs queued or running in the whole deployment (the job streams' length, ``streams``);
    this process's pool queue when Redis does not answer."""
    from .. import streams  # noqa: PLC0415

    s = app[SETTINGS]
    try:
        async with asyncio.timeout(s.probe_timeout_s):
            return await streams.queue_depth(app[REDIS], s.redis_prefix, s.job_shards)
    except Exception:  # noqa: BLE001 - health never fails over a counter
        return app[ENGINE].queue_depth


@probes.get("/metrics")
@access(Access.PUBLIC)
@operational
@doc("Prometheus metrics (text exposition format)", responses={200: None})
async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

    app = request.app
    m = app[METRICS]
    engine = app[ENGINE]
    m.queue_depth.set(await job_queue_depth(app))
    m.running.set(engine.running)
    usage = await _cache_usage(app)
    m.cache_usage.set(float("nan") if usage is None else usage / 100.0)
    deletions = await _deletion_totals(app)
    if deletions is not None:
        m.evictions.set(deletions.get("lru", 0))
        for reason, n in deletions.items():
            m.deletions.labels(reason).set(n)
    backlog = await _webhook_backlog(app)
    if backlog is not None:
        m.webhook_pending.set(backlog[0])
        m.webhook_oldest.set(backlog[1])
    body = generate_latest(m.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
