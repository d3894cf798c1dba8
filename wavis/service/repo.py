"""SQL for the service's tables. Every query that reads a tenant's data takes the
``account_id`` so that another account's resource is simply "not found" (API: 404, never 403)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from . import apikeys
from .access import Principal, Role
from .ids import new_id, utcnow


# --- accounts and API keys -------------------------------------------------------------

@dataclass(frozen=True)
class NewKey:
    account_id: str
    api_key_id: str
    api_key: str  # shown once
    expires_at: datetime | None


async def create_account(
    conn: asyncpg.Connection, pepper: bytes, *, email: str | None, plan: str = "free",
    role: Role = Role.ACCOUNT_ADMIN, environment: str = "live", is_trial: bool = False,
    ops_limit: int | None = None, ttl: timedelta | None = None,
) -> NewKey:
    account_id = new_id("acct")
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (id, email, plan, is_trial) VALUES ($1, $2, $3, $4)",
            account_id, email, plan, is_trial,
        )
        new = await create_api_key(conn, pepper, account_id=account_id, role=role, environment=environment,
                                   ops_limit=ops_limit, ttl=ttl)
    return new


async def create_api_key(
    conn: asyncpg.Connection, pepper: bytes, *, account_id: str, role: Role, environment: str,
    ops_limit: int | None = None, ttl: timedelta | None = None,
) -> NewKey:
    key = apikeys.generate(environment)
    key_id = new_id("apikey")
    expires_at = utcnow() + ttl if ttl else None
    await conn.execute(
        """INSERT INTO api_keys (id, account_id, key_hash, prefix, environment, role, ops_limit, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        key_id, account_id, apikeys.key_hash(pepper, key), apikeys.prefix(key), environment, role.value,
        ops_limit, expires_at,
    )
    return NewKey(account_id, key_id, key, expires_at)


async def authenticate(conn: asyncpg.Connection, key_hash: bytes) -> Principal | None:
    """The live (not revoked, not expired) key with this hash, touching ``last_used_at``."""
    row = await conn.fetchrow(
        """UPDATE api_keys SET last_used_at = now()
           WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
           RETURNING id, account_id, role, environment, ops_limit, expires_at""",
        key_hash,
    )
    if row is None:
        return None
    return Principal(row["id"], row["account_id"], Role(row["role"]), row["environment"],
                     row["ops_limit"], row["expires_at"])


async def reserve_operation(conn: asyncpg.Connection, api_key_id: str) -> bool:
    """Count one operation against a key with an ``ops_limit`` (trial keys); False when used up."""
    row = await conn.fetchval(
        """UPDATE api_keys SET ops_used = ops_used + 1
           WHERE id = $1 AND (ops_limit IS NULL OR ops_used < ops_limit) RETURNING ops_used""",
        api_key_id,
    )
    return row is not None


async def release_operation(conn: asyncpg.Connection, api_key_id: str) -> None:
    await conn.execute(
        "UPDATE api_keys SET ops_used = greatest(ops_used - 1, 0) WHERE id = $1 AND ops_limit IS NOT NULL",
        api_key_id,
    )


# --- FHE keys ---------------------------------------------------------------------------

KEY_META_COLUMNS = (
    "id, account_id, scheme, params, params_fingerprint, key_tag, slot_count, max_level, galois_steps, "
    "conjugation, is_blind, ciphertext_body_limit, created_at"
)


async def insert_fhe_key(conn: asyncpg.Connection, *, account_id: str, scheme: str, params: dict[str, Any],
                         fingerprint: str, key_tag: bytes, slot_count: int, max_level: int,
                         galois_steps: list[int], conjugation: bool, public_key: bytes, eval_key: bytes,
                         ciphertext_body_limit: int) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO fhe_keys (id, account_id, scheme, params, params_fingerprint, key_tag, slot_count, max_level,
                                  galois_steps, conjugation, public_key, eval_key, ciphertext_body_limit)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {KEY_META_COLUMNS}""",
        new_id("key"), account_id, scheme, params, fingerprint, key_tag, slot_count, max_level, galois_steps,
        conjugation, public_key, eval_key, ciphertext_body_limit,
    )


async def get_fhe_key(conn: asyncpg.Connection, account_id: str, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {KEY_META_COLUMNS} FROM fhe_keys WHERE id = $1 AND account_id = $2", key_id, account_id
    )


async def get_eval_key_blob(conn: asyncpg.Connection, key_id: str) -> bytes | None:
    return await conn.fetchval("SELECT eval_key FROM fhe_keys WHERE id = $1", key_id)


async def max_ciphertext_body_limit(conn: asyncpg.Connection, account_id: str) -> int:
    return await conn.fetchval(
        "SELECT COALESCE(max(ciphertext_body_limit), 0) FROM fhe_keys WHERE account_id = $1", account_id
    )


# --- ciphertexts --------------------------------------------------------------------------

CT_COLUMNS = "id, account_id, key_id, level, scale, slots, size_bytes, source, created_at, expires_at"


async def insert_ciphertext(conn: asyncpg.Connection, *, ct_id: str, account_id: str, key_id: str, level: int,
                            scale: float, slots: int, size_bytes: int, source: str,
                            expires_at: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO ciphertexts (id, account_id, key_id, level, scale, slots, size_bytes, source, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {CT_COLUMNS}""",
        ct_id, account_id, key_id, level, scale, slots, size_bytes, source, expires_at,
    )


async def get_ciphertexts(conn: asyncpg.Connection, account_id: str, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        f"SELECT {CT_COLUMNS} FROM ciphertexts WHERE account_id = $1 AND id = ANY($2::text[]) AND expires_at > now()",
        account_id, ids,
    )
    return {r["id"]: r for r in rows}
