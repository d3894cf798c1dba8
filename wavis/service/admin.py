"""Operator commands (``wavis admin …``) sharing the server's settings and database code."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

from . import db, embedded, maintenance as maint, repo
from .access import Role
from .settings import Settings

PLANS = ("free", "payg", "starter", "pro", "scale", "enterprise")


def _with_db(settings: Settings, work):
    """Run ``work(conn, settings)`` on the database of ``settings`` (the running server's embedded
    PostgreSQL, or one started for this command only), migrated first."""
    settings = settings.with_pepper()
    emb = embedded.attach(settings.data_dir, database_url=settings.database_url, redis_url=None, need_redis=False)

    async def go():
        pool = await db.create_pool(emb.database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
                return await work(conn, replace(settings, database_url=emb.database_url))
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    finally:
        emb.close()


def create_account(settings: Settings, *, email: str, plan: str = "free", environment: str = "live") -> repo.NewKey:
    """``wavis admin create-account``: an account and its first account_admin key."""
    return _with_db(settings, lambda conn, s: repo.create_account(
        conn, s.api_key_pepper, email=email, plan=plan, role=Role.ACCOUNT_ADMIN, environment=environment))


def create_key(settings: Settings, *, account_id: str, role: str = "developer",
               environment: str = "live") -> repo.NewKey | None:
    """``wavis admin create-key``: another API key of an existing account (None: no such account)."""

    async def work(conn, s):
        if await conn.fetchval("SELECT id FROM accounts WHERE id = $1", account_id) is None:
            return None
        return await repo.create_api_key(conn, s.api_key_pepper, account_id=account_id, role=Role(role),
                                         environment=environment)

    return _with_db(settings, work)


def revoke_key(settings: Settings, key: str) -> str | None:
    """``wavis admin revoke-key``: revoke by id (``apikey_…``) or by the key itself (``wvs_…``);
    returns the key's id, or None when this database has no such key."""
    from . import apikeys  # noqa: PLC0415

    async def work(conn, s):
        if key.startswith("apikey_"):
            row = await conn.fetchrow("SELECT id, account_id FROM api_keys WHERE id = $1", key)
        else:
            row = await conn.fetchrow("SELECT id, account_id FROM api_keys WHERE key_hash = $1",
                                      apikeys.key_hash(s.api_key_pepper, key))
        if row is None:
            return None
        await repo.revoke_api_key(conn, row["account_id"], row["id"])
        return row["id"]

    return _with_db(settings, work)


async def apply_plan(conn, account_id: str, *, plan: str | None = None, monthly_fcu: int | None = None,
                     monthly_usd: Decimal | None = None, clear_overrides: bool = False) -> dict | None:
    """Change an account's plan and, for Enterprise, its per-account terms
    (``accounts.monthly_fcu_override``: FCU included per month; ``monthly_usd_override``: the
    monthly price in USD; docs/billing.md "Plans"). Returns the account's plan and overrides
    after the change, or None when this database has no such account. Raises ValueError for an
    unknown plan, a negative value, or an override on a plan other than Enterprise (the other
    plans' terms live in ``wavis.service.pricing`` only). Takes effect at the next admission:
    the quota is read from PostgreSQL under the period row lock (``billing.admit_job``)."""
    if plan is not None and plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r} (one of {', '.join(PLANS)})")
    if (monthly_fcu is not None and monthly_fcu < 0) or (monthly_usd is not None and monthly_usd < 0):
        raise ValueError("monthly_fcu and monthly_usd must be >= 0")
    async with conn.transaction():
        row = await conn.fetchrow("SELECT plan FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if row is None:
            return None
        target = plan or row["plan"]
        if target != "enterprise" and (monthly_fcu is not None or monthly_usd is not None):
            raise ValueError(f"per-account terms are for the enterprise plan only (the account's plan would be {target!r})")
        if clear_overrides or target != "enterprise":
            await conn.execute("UPDATE accounts SET monthly_fcu_override = NULL, monthly_usd_override = NULL "
                               "WHERE id = $1", account_id)
        if plan is not None:
            await conn.execute("UPDATE accounts SET plan = $2 WHERE id = $1", account_id, plan)
        if monthly_fcu is not None:
            await conn.execute("UPDATE accounts SET monthly_fcu_override = $2 WHERE id = $1", account_id, monthly_fcu)
        if monthly_usd is not None:
            await conn.execute("UPDATE accounts SET monthly_usd_override = $2 WHERE id = $1", account_id, monthly_usd)
        out = await conn.fetchrow("SELECT plan, monthly_fcu_override, monthly_usd_override FROM accounts "
                                  "WHERE id = $1", account_id)
    return {"account_id": account_id, "plan": out["plan"], "monthly_fcu_override": out["monthly_fcu_override"],
            "monthly_usd_override": None if out["monthly_usd_override"] is None else str(out["monthly_usd_override"])}


def set_plan(settings: Settings, account_id: str, **terms) -> dict | None:
    """``wavis admin set-plan``: :func:`apply_plan` on the running server's database."""
    return _with_db(settings, lambda conn, s: apply_plan(conn, account_id, **terms))


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
