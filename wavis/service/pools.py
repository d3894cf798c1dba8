"""Connection pools with a bounded wait (issue 14): a busy pool is overload, not an outage.

* Redis: redis-py's ``BlockingConnectionPool`` (waits up to ``pool_wait_s`` for a free
  connection instead of failing at once); when the wait runs out, ``PoolExhausted``.
* PostgreSQL: asyncpg's pool behind ``PgPool``, whose ``acquire`` waits at most
  ``pool_wait_s`` (asyncpg waits forever by default) and raises ``PoolExhausted`` when every
  connection is busy — but a timeout while *connecting* (a server that does not answer)
  stays an upstream failure.

``PoolExhausted`` answers 503 ``OVERLOADED`` with ``Retry-After`` (``middleware.to_api_error``),
never 502; ``saturation()`` feeds ``/health`` (``degraded``, not ``unavailable``). Keep
``pool_wait_s`` below ``upstream_timeout_s`` so a wait ends as 503 before the request's
upstream deadline turns it into 502.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError


class PoolExhausted(TimeoutError):
    """Every connection of a pool stayed busy for the whole bounded wait (a TimeoutError, so
    background loops that retry on timeouts treat it as one)."""

    def __init__(self, upstream: str, wait_s: float) -> None:
        super().__init__(f"{upstream} connection pool exhausted after waiting {wait_s:.1f} s")
        self.upstream = upstream
        self.wait_s = wait_s


# --- Redis -------------------------------------------------------------------------------------

class RedisPool(BlockingConnectionPool):
    """``BlockingConnectionPool`` that says ``PoolExhausted`` when its wait runs out (redis-py
    raises a plain ConnectionError("No connection available."), like a refused connection)."""

    waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any):
        self.waiting += 1
        try:
            return await super().get_connection(*args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, (asyncio.TimeoutError, TimeoutError)):
                raise PoolExhausted("redis", float(self.timeout or 0)) from None
            raise
        finally:
            self.waiting -= 1

    def in_use(self) -> int:
        return len(self._in_use_connections)


def redis_client(url: str, *, max_connections: int, wait_s: float, socket_timeout: float) -> aioredis.Redis:
    pool = RedisPool.from_url(url, max_connections=max_connections, timeout=wait_s, socket_timeout=socket_timeout,
                              socket_connect_timeout=socket_timeout, health_check_interval=30)
    return aioredis.Redis(connection_pool=pool)


def redis_saturation(client: aioredis.Redis) -> tuple[int, int, int] | None:
    """(in use, max, waiting) of a client made by ``redis_client``; None for other clients."""
    pool = client.connection_pool
    if not isinstance(pool, RedisPool):
        return None
    return pool.in_use(), pool.max_connections, pool.waiting


# --- PostgreSQL -----------------------------------------------------------------------------

class PgPool:
    """An asyncpg pool whose ``acquire`` waits at most ``wait_s``. Everything else is the
    asyncpg pool's (``close``, ``get_size``, ``fetchval`` …)."""

    def __init__(self, pool: asyncpg.Pool, wait_s: float) -> None:
        self._pool = pool
        self.wait_s = wait_s
        self.waiting = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def _exhausted(self) -> bool:
        return self._pool.get_idle_size() == 0 and self._pool.get_size() >= self._pool.get_max_size()

    async def _acquire(self, timeout: float | None) -> asyncpg.Connection:
        wait = self.wait_s if timeout is None else min(timeout, self.wait_s)
        self.waiting += 1
        try:
            return await self._pool.acquire(timeout=wait)
        except asyncio.TimeoutError:
            if self._exhausted():
                raise PoolExhausted("postgres", wait) from None
            raise
        finally:
            self.waiting -= 1

    def acquire(self, *, timeout: float | None = None):
        """``async with pool.acquire() as conn`` (or ``conn = await pool.acquire()`` then
        ``await pool.release(conn)``), waiting at most ``wait_s`` (or ``timeout`` if shorter)."""
        return _Acquire(self, timeout)

    async def release(self, conn: asyncpg.Connection, *, timeout: float | None = None) -> None:
        await self._pool.release(conn, timeout=timeout)

    def saturation(self) -> tuple[int, int, int]:
        """(in use, max, waiting)."""
        size = self._pool.get_size()
        return size - self._pool.get_idle_size(), self._pool.get_max_size(), self.waiting


class _Acquire:
    def __init__(self, pool: PgPool, timeout: float | None) -> None:
        self._pool, self._timeout, self._conn = pool, timeout, None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await self._pool._acquire(self._timeout)  # noqa: SLF001
        return self._conn

    async def __aexit__(self, *exc: Any) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)

    def __await__(self):
        return self._pool._acquire(self._timeout).__await__()  # noqa: SLF001


# --- overload: is a timeout ours or the upstream's? ---------------------------------------------

class LoopLag:
    """Measures how late the event loop wakes up (``interval`` sleeps). An upstream deadline
    that expires while the loop lags, or while a pool has waiters, is this process being
    overloaded — 503 OVERLOADED — not PostgreSQL or Redis being down (502)."""

    def __init__(self, interval: float = 0.1, threshold: float = 0.25, memory_s: float = 10.0) -> None:
        self.interval, self.threshold, self.memory_s = interval, threshold, memory_s
        self.last_lag_at = float("-inf")
        self.max_lag = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - t0 - self.interval
            if lag > self.threshold:
                self.last_lag_at = loop.time()
                self.max_lag = max(self.max_lag, lag)

    def lagging(self) -> bool:
        return asyncio.get_running_loop().time() - self.last_lag_at < self.memory_s


def overloaded(db_pool: Any, redis: Any, lag: LoopLag | None) -> bool:
    """True when a pool has waiters or the event loop lagged recently."""
    if isinstance(db_pool, PgPool) and db_pool.waiting > 0:
        return True
    sat = redis_saturation(redis) if redis is not None else None
    if sat is not None and sat[2] > 0:
        return True
    return lag is not None and lag.lagging()
