"""Operator commands (``wavis admin …``) sharing the server's settings and database code."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from . import db, embedded, maintenance as maint, repo
from .access import Role
from .settings import Settings

PLANS = ("free", "payg", "starter", "pro", "scale", "enterprise")


async def _create_account(settings: Settings, email: str, plan: str, environment: str) -> repo.NewKey:
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
            return await repo.create_account(conn, settings.api_key_pepper, email=email, plan=plan,
                                             role=Role.ACCOUNT_ADMIN, environment=environment)
    finally:
        await pool.close()


def create_account(settings: Settings, *, email: str, plan: str = "free", environment: str = "live") -> repo.NewKey:
    settings = settings.with_pepper()
    emb = embedded.attach(settings.data_dir, database_url=settings.database_url, redis_url=None, need_redis=False)
    try:
        settings = replace(settings, database_url=emb.database_url)
        return asyncio.run(_create_account(settings, email, plan, environment))
    finally:
        emb.close()


async def _maintenance(settings: Settings, mode: str, retry_after: int) -> bool:
    import redis.asyncio as aioredis  # noqa: PLC0415

    client = aioredis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        if mode in ("on", "off"):
            await maint.set_mode(client, settings.redis_prefix, mode == "on", retry_after)
        return await maint.get(client, settings.redis_prefix) is not None
    finally:
        await client.aclose()


def maintenance(settings: Settings, mode: str, retry_after: int = 300) -> bool:
    """``wavis admin maintenance on|off|status``: the flag in the same Redis as ``wavis serve``
    (WAVIS_REDIS_URL, or the embedded Redis of the data directory). Returns whether it is on."""
    emb = embedded.attach(settings.data_dir, database_url="unused", redis_url=settings.redis_url)
    try:
        return asyncio.run(_maintenance(replace(settings, redis_url=emb.redis_url), mode, retry_after))
    finally:
        emb.close()
