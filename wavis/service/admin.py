"""Operator commands (``wavis admin …``) sharing the server's settings and database code."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from . import db, embedded, repo
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
    emb = embedded.start(settings.data_dir, database_url=settings.database_url, redis_url=None, need_redis=False)
    try:
        settings = replace(settings, database_url=emb.database_url)
        return asyncio.run(_create_account(settings, email, plan, environment))
    finally:
        emb.close()
