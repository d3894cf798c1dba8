"""Shared fixtures. Service tests run against REAL PostgreSQL and Redis (never mocks):

* PostgreSQL: ``WAVIS_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
  each test session creates its own database ``wavis_test_<random>`` and drops it at the end.
* Redis: ``WAVIS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``); each session uses its own
  key prefix, and the keys under it are deleted before each test and at the end (so concurrent
  runs on one machine do not flush each other's data).

When either server is unreachable the service tests are skipped with the reason (``-ra``).
Other areas may append their fixtures below the service section.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import pytest

# every `wavis serve` a test starts records itself for discovery (wavis.client.discovery): in a
# directory of this test session, never in the user's own state directory
if not os.environ.get("WAVIS_STATE_DIR"):
    import tempfile

    os.environ["WAVIS_STATE_DIR"] = tempfile.mkdtemp(prefix="wavis-test-state-")

# ---------------------------------------------------------------------------------------------
# service: real PostgreSQL and Redis
# ---------------------------------------------------------------------------------------------

TEST_PG_URL = os.environ.get("WAVIS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("WAVIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_PEPPER = b"wavis-test-pepper-0123456789abcdef0123456789abcdef"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def service_database_url():
    """A fresh database for this test session (dropped at the end)."""
    asyncpg = pytest.importorskip("asyncpg")
    name = f"wavis_test_{secrets.token_hex(6)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(TEST_PG_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        pytest.skip(f"PostgreSQL not available at {TEST_PG_URL}: {exc!r}")
    try:
        yield _with_database(TEST_PG_URL, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


TEST_REDIS_PREFIX = f"wavis_test_{secrets.token_hex(6)}:"


async def clear_redis_prefix(url: str, prefix: str = TEST_REDIS_PREFIX) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
    except Exception:  # noqa: BLE001 - an unreachable Redis is part of some tests
        pass
    finally:
        await r.aclose()


@pytest.fixture(scope="session")
def service_redis_url():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not available at {TEST_REDIS_URL}: {exc!r}")
    finally:
        client.close()
    yield TEST_REDIS_URL
    asyncio.run(clear_redis_prefix(TEST_REDIS_URL))


@pytest.fixture
def service_settings(service_database_url, service_redis_url, tmp_path):
    from wavis.service.settings import Settings

    return Settings(
        data_dir=tmp_path, database_url=service_database_url, redis_url=service_redis_url,
        redis_prefix=TEST_REDIS_PREFIX,
        api_key_pepper=TEST_PEPPER, compute_threads=2, db_pool_max=5,
        allow_insecure_params=True,  # most service tests use small `testing` keys (refusal: test_security.py)
    )


@pytest.fixture
async def make_client(aiohttp_client):
    """``await make_client(settings)`` → a TestClient of a fresh app (this session's Redis keys cleared)."""
    from wavis.service import create_app

    async def factory(settings, setup=None):
        """``setup(app)`` may add test-only routes before the app starts."""
        from aiohttp.test_utils import TestServer

        from wavis.service.server import RUNNER_OPTIONS

        await clear_redis_prefix(settings.redis_url, settings.redis_prefix)
        remote = TEST_ENGINE == "remote" and settings.engine == "embedded"
        if remote:
            from dataclasses import replace

            settings = replace(settings, engine="remote")
        app = create_app(settings)
        if remote:
            app.cleanup_ctx.append(_remote_workers_ctx)
        if setup is not None:
            setup(app)
        server = TestServer(app)
        await server.start_server(**RUNNER_OPTIONS)  # as `wavis serve` runs it (bodies decoded by the app)
        return await aiohttp_client(server)

    return factory


# WAVIS_TEST_ENGINE=remote: every test app runs as `wavis serve --engine remote` with two
# separate workers (own consumer names, replies through Redis, shards split between them), so
# the same end-to-end suite checks the scale-out path (tests/test_engine_scaleout.py runs it).
TEST_ENGINE = os.environ.get("WAVIS_TEST_ENGINE", "embedded")


async def _remote_workers_ctx(app):
    from wavis.service.worker import Worker

    workers = [Worker(app), Worker(app)]
    for w in workers:
        await w.start()
    for w in workers:  # both see each other before the first request
        await w._heartbeat_once()
    try:
        yield
    finally:
        for w in workers:
            await w.stop()


def add_account_helper(client) -> None:
    """``await client.account(role=…, plan=…)`` → a new account's API key;
    ``await client.key_for(key, role=…)`` → another key of the same account."""

    async def account(role: str = "developer", environment: str = "test", **kw) -> str:
        from wavis.service import repo
        from wavis.service.access import Role
        from wavis.service.state import DB

        async with client.app[DB].acquire() as conn:
            new = await repo.create_account(conn, TEST_PEPPER, email=None, role=Role(role),
                                            environment=environment, **kw)
        return new.api_key

    async def key_for(key: str, role: str = "viewer", environment: str = "test") -> str:
        from wavis.service import repo
        from wavis.service.access import Role
        from wavis.service.state import DB

        async with client.app[DB].acquire() as conn:
            acct = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", key[:16])
            new = await repo.create_api_key(conn, TEST_PEPPER, account_id=acct, role=Role(role),
                                            environment=environment)
        return new.api_key

    client.account = account
    client.key_for = key_for


@pytest.fixture
async def api(make_client, service_settings):
    """A TestClient of the service, with ``api.account(role=…)`` to make accounts/keys."""
    client = await make_client(service_settings)
    add_account_helper(client)
    return client


@pytest.fixture(scope="session")
def ckks_pair_factory():
    """Small CKKS key pairs (``testing`` security: fast), cached per (depth, index)."""
    from wavis.client import KeyPair

    cache: dict = {}

    def make(max_depth: int = 1, index: int = 0, poly_degree: int = 2048):
        k = (max_depth, index, poly_degree)
        if k not in cache:
            cache[k] = KeyPair.generate({"poly_degree": poly_degree, "scale_bits": 40, "max_depth": max_depth,
                                         "security_level": "testing"})
        return cache[k]

    return make



# --- helpers shared by the service tests ---------------------------------------------------------

def bearer(key: str, ip: str | None = None) -> dict[str, str]:
    """Authorization header for an API key (and X-Forwarded-For when ``ip`` is given)."""
    h = {"Authorization": f"Bearer {key}"}
    if ip:
        h["X-Forwarded-For"] = ip
    return h


async def error_of(resp, status: int, code: str) -> dict:
    """Assert an API error of ``status``/``code`` in the contract's shape; returns its body."""
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in body["error"]["message"]
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]
    return body["error"]
