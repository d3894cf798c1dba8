"""The application factory. ``create_app(settings)`` needs ``settings.database_url`` and
``settings.redis_url`` resolved (``server.py`` starts the embedded servers when they are unset,
so embedded and external servers go through exactly this code)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from . import blobstore, db, fhe, metrics, openapi, pools, protocol
from .admission import Admission, default_memory_budget
from .protocol import SERVER_NAME
from .access import Access, access, doc
from .ctstore import CiphertextStore
from .engine import ComputeEngine
from .middleware import CHAIN
from .routes import apikeys, billing, ciphertexts, compute, health, jobs, keys, models, onboarding, tfhe, webhooks
from .settings import Settings
from .state import (ADMISSION, CTSTORE, DB, DISPATCHER, ENGINE, LOOP_LAG, METRICS, PROBE_DB, PROBE_REDIS, REDIS,
                    SETTINGS, SHUTTING_DOWN, STARTED_AT, WEBHOOK_RESOLVER, WEBHOOK_WORKER, WORKER)
from .stripe_gateway import stripe_ctx
from .sweeper import sweeper_ctx
from .tfhe_store import tfhe_ctx

log = logging.getLogger("wavis.service")

API_PREFIX = "/api/v1"
ROUTE_MODULES = (health, onboarding, apikeys, keys, ciphertexts, compute, models, tfhe, jobs, webhooks, billing)
OPENAPI = web.AppKey("openapi", list)  # one-element cache, filled on first request


@access(Access.PUBLIC)
@doc("This OpenAPI 3.1 document")
async def openapi_json(request: web.Request) -> web.Response:
    box = request.app[OPENAPI]
    if not box:
        box.append(openapi.build(request.app))
    origin = f"{request.scheme}://{request.host}"
    return web.json_response(openapi.with_servers(box[0], request.app[SETTINGS].public_url, origin))


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """The request pool (``pools.PgPool``: a bounded wait, then 503) and /health's own small
    pool, so a saturated request pool reads as "degraded", never as PostgreSQL being down."""
    s = app[SETTINGS]
    raw = await db.create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
    probe = None
    try:
        async with raw.acquire() as conn:
            await db.migrate(conn)
        probe = await db.create_pool(s.database_url, min_size=0, max_size=3, command_timeout=s.probe_timeout_s)
        app[DB] = pools.PgPool(raw, s.pool_wait_s)
        app[PROBE_DB] = probe
        yield
    finally:
        if probe is not None:
            await _close_pool(probe, s.pool_wait_s)
        await _close_pool(raw, s.pool_wait_s)


async def _close_pool(pool, wait_s: float) -> None:
    """asyncpg's ``Pool.close`` waits for every acquired connection to be released, without a
    bound: one connection held by a task that never finishes (a cancelled job, a stuck
    handler) would hang shutdown for ever (seen in a test teardown). Wait a bounded time, then
    terminate the pool's connections (asyncpg's documented pattern)."""
    try:
        async with asyncio.timeout(max(5.0, 2 * wait_s)):
            await pool.close()
    except TimeoutError:
        log.warning("PostgreSQL pool did not close in time (a connection still held); terminating it")
        pool.terminate()


async def warn_if_redis_evicts(client) -> str | None:
    """Log a warning when Redis may evict keys on its own (any policy but noeviction): it would
    silently drop ciphertexts of other tenants, idempotency records and rate-limit counters.
    Returns the policy (None where CONFIG is not allowed, as on some managed services)."""
    try:
        policy = (await client.config_get("maxmemory-policy")).get("maxmemory-policy")
    except Exception:  # noqa: BLE001 - CONFIG may be disabled; nothing to check then
        return None
    policy = policy.decode() if isinstance(policy, bytes) else policy
    if policy and policy != "noeviction":
        log.warning("Redis maxmemory-policy is %r: set it to noeviction (Redis must not evict keys; the "
                    "service's per-account store evicts and reports ciphertexts)", policy)
    return policy


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    client = pools.redis_client(s.redis_url, max_connections=s.redis_max_connections, wait_s=s.pool_wait_s,
                                socket_timeout=s.upstream_timeout_s)
    app[PROBE_REDIS] = pools.redis_client(s.redis_url, max_connections=4, wait_s=s.probe_timeout_s,
                                          socket_timeout=s.probe_timeout_s)
    try:
        try:
            await client.ping()
            await warn_if_redis_evicts(client)
        except Exception as exc:  # noqa: BLE001 - start anyway; /health and /readyz report it
            log.warning("Redis is not reachable at start-up (%s); requests that need it answer 502", type(exc).__name__)
        app[REDIS] = client
        yield
    finally:
        await client.aclose()
        await app[PROBE_REDIS].aclose()


async def ctstore_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    blobs = blobstore.open_store(s.blob_store, s.data_dir)
    app[CTSTORE] = CiphertextStore(blobs, app[REDIS], s.redis_prefix, s.ciphertext_cache_ttl_s)
    try:
        yield
    finally:
        await blobs.close()


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    lag = app[LOOP_LAG] = pools.LoopLag()
    task = asyncio.create_task(lag.run())
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    engine = ComputeEngine(s.compute_threads, s.compute_queue_max, s.eval_key_cache_entries,
                           s.eval_key_cache_bytes)
    engine.contexts = fhe.DeviceContexts(s.compute_backend)  # one context per parameter set on the device
    app[ENGINE] = engine
    try:
        yield
    finally:
        engine.close()


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The in-process webhook delivery worker (``webhook_worker.py``), unless
    ``WAVIS_WEBHOOK_WORKER=0`` leaves delivery to separate ``wavis webhooks`` processes."""
    from . import webhook_worker  # noqa: PLC0415

    s = app[SETTINGS]
    if not s.webhook_worker:
        yield
        return
    worker, task = await webhook_worker.worker_ctx_start(app[DB], s, app.get(WEBHOOK_RESOLVER))
    app[WEBHOOK_WORKER] = worker
    try:
        yield
    finally:
        await webhook_worker.stop_worker(worker, task, s.webhook_timeout_s + 2)


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the engine and TFHE store): the dispatcher (jobs in, replies
    out) and — unless ``engine == "remote"`` — a worker in this process (the embedded engine)."""
    from .dispatch import Dispatcher  # noqa: PLC0415
    from .worker import Worker  # noqa: PLC0415

    s = app[SETTINGS]
    dispatcher = Dispatcher(app)
    app[DISPATCHER] = dispatcher
    worker = Worker(app, local_reply=dispatcher.deliver) if s.engine != "remote" else None
    app[WORKER] = worker
    started = []
    try:
        try:
            await dispatcher.start()
            started.append(dispatcher)
            if worker is not None:
                await worker.start()
                started.append(worker)
        except Exception as exc:  # noqa: BLE001 - Redis down at start: requests answer 502; /health says so
            log.warning("compute engine could not start (%r); compute requests will fail until restart", exc)
        yield
    finally:
        for part in reversed(started):
            await part.stop()


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context of a ``wavis worker`` process: the worker alone (no API, no dispatcher)."""
    from .worker import Worker  # noqa: PLC0415

    worker = Worker(app)
    app[WORKER] = worker
    await worker.start()
    try:
        yield
    finally:
        await worker.stop()


def create_worker_app(settings: Settings) -> web.Application:
    """The app state of ``wavis worker``: PostgreSQL pool, Redis, compute pool, key LRUs and the
    worker consuming the job streams; no routes (it serves no HTTP)."""
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_worker_app needs database_url and redis_url")
    settings = settings.with_master_key()
    app = web.Application()
    app[SETTINGS] = settings
    app[STARTED_AT] = time.monotonic()
    app[SHUTTING_DOWN] = [False]
    app.cleanup_ctx.extend([postgres_ctx, redis_ctx, ctstore_ctx, engine_ctx, tfhe_ctx, worker_ctx])
    return app


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No banner with versions (aiohttp would send ``Python/3.x aiohttp/3.y``)."""
    response.headers["Server"] = SERVER_NAME


async def _mark_shutdown(app: web.Application) -> None:
    app[SHUTTING_DOWN][0] = True


def create_app(settings: Settings) -> web.Application:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs database_url and redis_url (see wavis.service.server)")
    if not settings.api_key_pepper:
        raise ValueError("create_app needs api_key_pepper (Settings.with_pepper())")
    if settings.engine not in ("embedded", "remote"):
        raise ValueError(f"engine must be 'embedded' or 'remote', got {settings.engine!r} (WAVIS_ENGINE)")
    settings = settings.with_master_key()
    app = web.Application(middlewares=CHAIN, client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[STARTED_AT] = time.monotonic()
    app[SHUTTING_DOWN] = [False]
    app[METRICS] = metrics.create()
    app[OPENAPI] = []
    app.cleanup_ctx.extend([loop_lag_ctx, postgres_ctx, redis_ctx, ctstore_ctx, engine_ctx, tfhe_ctx, sweeper_ctx,
                            webhooks_ctx, jobs_ctx, stripe_ctx])
    app.on_shutdown.append(_mark_shutdown)
    app.on_response_prepare.append(_server_header)
    protocol.install()  # the HTTP layer's own errors: typed JSON, no version banner
    app[ADMISSION] = Admission(settings.memory_budget_bytes or default_memory_budget())

    api = web.RouteTableDef()
    for module in ROUTE_MODULES:
        for route in module.routes:
            api.route(route.method, API_PREFIX + route.path, **route.kwargs)(route.handler)
    api.get(API_PREFIX + "/openapi.json")(openapi_json)
    app.add_routes(api)
    app.add_routes(health.probes)
    return app
