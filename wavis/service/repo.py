"""SQL for the service's tables. Every query that reads a tenant's data takes the
``account_id`` so that another account's resource is simply "not found" (API: 404, never 403)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from . import apikeys
from .access import Principal, Role
from .db import relaxed_commit
from .ids import new_id, utcnow
from .webhooks import emit_event, iso


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
    origin = "trial" if is_trial else "admin"
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (id, email, plan, is_trial) VALUES ($1, $2, $3, $4)",
            account_id, email, plan, is_trial,
        )
        new = await create_api_key(conn, pepper, account_id=account_id, role=role, environment=environment,
                                   ops_limit=ops_limit, ttl=ttl, origin=origin)
    return new


async def create_api_key(
    conn: asyncpg.Connection, pepper: bytes, *, account_id: str, role: Role, environment: str,
    ops_limit: int | None = None, ttl: timedelta | None = None, origin: str = "admin",
    rotated_from: str | None = None,
) -> NewKey:
    key = apikeys.generate(environment)
    key_id = new_id("apikey")
    expires_at = utcnow() + ttl if ttl else None
    await conn.execute(
        """INSERT INTO api_keys (id, account_id, key_hash, prefix, environment, role, ops_limit, expires_at,
                                 origin, rotated_from)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        key_id, account_id, apikeys.key_hash(pepper, key), apikeys.prefix(key), environment, role.value,
        ops_limit, expires_at, origin, rotated_from,
    )
    return NewKey(account_id, key_id, key, expires_at)


API_KEY_COLUMNS = "id, prefix, environment, role, created_at, last_used_at, revoked_at, expires_at"


async def list_api_keys(conn: asyncpg.Connection, account_id: str, limit: int,
                        after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    if after is None:
        return await conn.fetch(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id LIMIT $2",
            account_id, limit + 1)
    return await conn.fetch(
        f"""SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND (created_at, id) > ($2, $3)
            ORDER BY created_at, id LIMIT $4""", account_id, after[0], after[1], limit + 1)


async def create_api_key_limited(conn: asyncpg.Connection, pepper: bytes, *, account_id: str, role: Role,
                                 environment: str, per_hour: int) -> NewKey | None:
    """POST /api-keys: at most ``per_hour`` creations per account per rolling hour (serialized
    per account with a transaction-scoped advisory lock); None when the limit is reached."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('api-key-create:' || $1))", account_id)
        n = await conn.fetchval(
            """SELECT count(*) FROM api_keys WHERE account_id = $1 AND origin = 'api'
               AND created_at > now() - interval '1 hour'""", account_id)
        if n >= per_hour:
            return None
        new = await create_api_key(conn, pepper, account_id=account_id, role=role, environment=environment,
                                   origin="api")
        await emit_event(conn, account_id, "key_created", {
            "kind": "api_key", "api_key_id": new.api_key_id, "prefix": apikeys.prefix(new.api_key),
            "role": role.value, "environment": environment})
        return new


async def revoke_api_key(conn: asyncpg.Connection, account_id: str, key_id: str) -> bool:
    """Revoke now; True when the key exists in this account (revoking twice is fine; the
    ``key_deleted`` event is emitted by the revocation that took effect)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE api_keys SET revoked_at = now()
               WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL RETURNING id, prefix""", key_id, account_id)
        if row is None:
            return await conn.fetchval("SELECT id FROM api_keys WHERE id = $1 AND account_id = $2",
                                       key_id, account_id) is not None
        await emit_event(conn, account_id, "key_deleted",
                         {"kind": "api_key", "api_key_id": key_id, "prefix": row["prefix"]})
    return True


async def revoke_trial_key_by_prefix(conn: asyncpg.Connection, key_prefix: str) -> bool:
    """DELETE /onboarding/temp-key/{key_prefix}: the live trial key whose text starts with it."""
    row = await conn.fetchval(
        """UPDATE api_keys SET revoked_at = now()
           WHERE id = (SELECT id FROM api_keys WHERE environment = 'trial' AND revoked_at IS NULL
                       AND prefix = left($1, 16) ORDER BY created_at LIMIT 1)
           RETURNING id""", key_prefix)
    return row is not None


async def rotate_api_key(conn: asyncpg.Connection, pepper: bytes, p: Principal,
                         grace: timedelta) -> tuple[NewKey, str, datetime]:
    """A new key like the caller's; the caller's own key keeps working for ``grace``."""
    async with conn.transaction():
        old = await conn.fetchrow(
            "SELECT prefix, expires_at FROM api_keys WHERE id = $1 AND account_id = $2 FOR UPDATE",
            p.api_key_id, p.account_id)
        new = await create_api_key(conn, pepper, account_id=p.account_id, role=p.role, environment=p.environment,
                                   origin="rotate", rotated_from=p.api_key_id)
        ends = await conn.fetchval(
            """UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + $2::interval)
               WHERE id = $1 RETURNING expires_at""", p.api_key_id, grace)
        await emit_event(conn, p.account_id, "key_rotated", {
            "old_api_key_id": p.api_key_id, "old_key_prefix": old["prefix"], "new_api_key_id": new.api_key_id,
            "new_key_prefix": apikeys.prefix(new.api_key), "grace_period_ends_at": iso(ends)})
    return new, old["prefix"], ends


async def authenticate(conn: asyncpg.Connection, key_hash: bytes) -> Principal | None:
    """The live (not revoked, not expired) key with this hash, touching ``last_used_at``.

    One statement, committed without waiting for the WAL flush (``db.relaxed_commit``: the
    touch confirms nothing; it is visible at once and flushed within ~0.6 s), so a request
    pays one round trip for its key and no fdatasync."""
    row = await conn.fetchrow(
        f"""UPDATE api_keys k SET last_used_at = now() FROM accounts a, {relaxed_commit(conn)}
           WHERE k.key_hash = $1 AND a.id = k.account_id
             AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
           RETURNING k.id, k.account_id, k.role, k.environment, k.ops_limit, k.expires_at, k.key_hash, a.plan""",
        key_hash,
    )
    # constant-time confirmation of the indexed match (same work whatever was presented)
    if row is None or not hmac.compare_digest(bytes(row["key_hash"]), key_hash):
        return None
    return Principal(row["id"], row["account_id"], Role(row["role"]), row["environment"],
                     row["ops_limit"], row["expires_at"], row["plan"])


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
                         ciphertext_body_limit: int, key_id: str | None = None,
                         secret_key_sealed: bytes | None = None,
                         key_digests: dict[str, str] | None = None) -> asyncpg.Record:
    """Insert a key; ``key_digests``: ``fhe.key_digests`` of the evaluation keys in ``eval_key``
    (what ``add_eval_key_part`` compares chunks with)."""
    async with conn.transaction():
        row = await _insert_fhe_key(conn, account_id, scheme, params, fingerprint, key_tag, slot_count, max_level,
                                    galois_steps, conjugation, public_key, eval_key, ciphertext_body_limit,
                                    key_id, secret_key_sealed, key_digests or {})
        await emit_event(conn, account_id, "key_created", {
            "kind": "fhe_key", "key_id": row["id"], "scheme": scheme, "slot_count": slot_count,
            "max_level": max_level, "blind": row["is_blind"]})
    return row


async def _insert_fhe_key(conn, account_id, scheme, params, fingerprint, key_tag, slot_count, max_level,
                          galois_steps, conjugation, public_key, eval_key, ciphertext_body_limit, key_id,
                          secret_key_sealed, key_digests) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO fhe_keys (id, account_id, scheme, params, params_fingerprint, key_tag, slot_count, max_level,
                                  galois_steps, conjugation, public_key, eval_key, ciphertext_body_limit,
                                  secret_key_sealed, is_blind, key_digests)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::bytea, $14::bytea IS NULL, $15)
            RETURNING {KEY_META_COLUMNS}""",
        key_id or new_id("key"), account_id, scheme, params, fingerprint, key_tag, slot_count, max_level,
        galois_steps, conjugation, public_key, eval_key, ciphertext_body_limit, secret_key_sealed, key_digests,
    )


async def list_fhe_keys(conn: asyncpg.Connection, account_id: str, limit: int,
                        after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    if after is None:
        return await conn.fetch(
            f"SELECT {KEY_META_COLUMNS} FROM fhe_keys WHERE account_id = $1 ORDER BY created_at, id LIMIT $2",
            account_id, limit + 1)
    return await conn.fetch(
        f"""SELECT {KEY_META_COLUMNS} FROM fhe_keys WHERE account_id = $1 AND (created_at, id) > ($2, $3)
            ORDER BY created_at, id LIMIT $4""", account_id, after[0], after[1], limit + 1)


async def delete_fhe_key(conn: asyncpg.Connection, account_id: str, key_id: str) -> list[str] | None:
    """Delete the key and its ciphertext rows (logged as ``key_deleted``); the ciphertext ids
    (for the blob store), or None."""
    async with conn.transaction():
        found = await conn.fetchval(
            "SELECT id FROM fhe_keys WHERE id = $1 AND account_id = $2 FOR UPDATE", key_id, account_id)
        if found is None:
            return None
        rows = await conn.fetch(
            "DELETE FROM ciphertexts WHERE key_id = $1 AND account_id = $2 RETURNING id, account_id, key_id, size_bytes",
            key_id, account_id)
        await log_deletions(conn, rows, "key_deleted")
        await conn.execute("DELETE FROM fhe_keys WHERE id = $1", key_id)
        await emit_event(conn, account_id, "key_deleted",
                         {"kind": "fhe_key", "key_id": key_id, "ciphertexts_deleted": len(rows)})
    return [r["id"] for r in rows]


async def get_secret_key_sealed(conn: asyncpg.Connection, account_id: str, key_id: str) -> bytes | None:
    return await conn.fetchval(
        "SELECT secret_key_sealed FROM fhe_keys WHERE id = $1 AND account_id = $2", key_id, account_id)


async def delete_ciphertext(conn: asyncpg.Connection, account_id: str, ct_id: str) -> bool:
    async with conn.transaction():
        rows = await conn.fetch(
            "DELETE FROM ciphertexts WHERE id = $1 AND account_id = $2 RETURNING id, account_id, key_id, size_bytes",
            ct_id, account_id)
        await log_deletions(conn, rows, "deleted")
    return bool(rows)


async def get_fhe_key(conn: asyncpg.Connection, account_id: str, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {KEY_META_COLUMNS} FROM fhe_keys WHERE id = $1 AND account_id = $2", key_id, account_id
    )


async def get_eval_key_blob(conn: asyncpg.Connection, key_id: str) -> bytes | None:
    return await conn.fetchval("SELECT eval_key FROM fhe_keys WHERE id = $1", key_id)


async def get_eval_key_parts(conn: asyncpg.Connection, key_id: str) -> list[bytes]:
    """Galois-key chunks uploaded after the key, in upload order."""
    return [r["blob"] for r in await conn.fetch(
        "SELECT blob FROM fhe_key_parts WHERE key_id = $1 ORDER BY part_no", key_id)]


MAX_KEY_PARTS = 256


async def add_eval_key_part(conn: asyncpg.Connection, account_id: str, key_id: str, blob: bytes,
                            galois_steps: list[int], conjugation: bool,
                            other_keys: bool = False,
                            digests: dict[str, str] | None = None) -> tuple[asyncpg.Record | None, bool]:
    """Append a key chunk, merging its Galois steps into the key's list under the row lock (so
    concurrent chunks never lose each other's steps). Returns (the key row or None, whether the
    chunk added anything).

    With ``digests`` (``fhe.key_digests`` of the chunk's keys) and a key that records its own
    (``fhe_keys.key_digests``, every key stored since migration 084), a chunk is idempotent: keys
    the key already holds with the same digest are duplicates, and a chunk of duplicates only is
    not stored again (a re-sent chunk: 200, nothing added); a key it already holds with another
    digest (a relinearization key, an encapsulation key or a Galois key of other bytes: another
    encryption, perhaps another key pair's) → 409 KEY_CONFLICT naming the keys, nothing stored.
    Keys stored before that (``key_digests`` NULL) keep the earlier rule: a chunk with no new
    step is not stored again, unless it carries ``other_keys`` — a relinearization key, or a
    bootstrap preset's encapsulation keys.

    Raises: ParameterError past MAX_KEY_PARTS chunks for one key; ApiError 409 KEY_CONFLICT.
    """
    from wavis.errors import ParameterError  # noqa: PLC0415

    from .errors import ApiError  # noqa: PLC0415

    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT galois_steps, conjugation, key_digests FROM fhe_keys WHERE id = $1 AND account_id = $2 FOR UPDATE",
            key_id, account_id)
        if row is None:
            return None, False
        have = set(row["galois_steps"] or [])
        merged = sorted(have | set(galois_steps))
        conj = bool(row["conjugation"]) or conjugation
        stored = row["key_digests"]
        if digests is not None and stored is not None:
            conflicts = sorted(name for name, d in digests.items() if name in stored and stored[name] != d)
            if conflicts:
                raise ApiError(409, "KEY_CONFLICT",
                               f"this key already holds {', '.join(conflicts)} with other bytes than this chunk's; a "
                               "key chunk may be re-sent unchanged (it is then not stored again) but never replaces a "
                               "stored key: delete the key and upload the key set again to change it",
                               {"conflicting": conflicts, "field": "eval_key"})
            new = {name: d for name, d in digests.items() if name not in stored}
            if not new:  # a re-sent chunk: every key already held with the same bytes
                return await get_fhe_key(conn, account_id, key_id), False
        elif len(merged) == len(have) and conj == bool(row["conjugation"]) and not other_keys:
            return await get_fhe_key(conn, account_id, key_id), False
        parts = await conn.fetchval("SELECT count(*) FROM fhe_key_parts WHERE key_id = $1", key_id)
        if parts >= MAX_KEY_PARTS:
            raise ParameterError(f"a key holds at most {MAX_KEY_PARTS} Galois-key chunks", field="eval_key")
        await conn.execute(
            """INSERT INTO fhe_key_parts (key_id, part_no, blob)
               VALUES ($1, (SELECT COALESCE(max(part_no), 0) + 1 FROM fhe_key_parts WHERE key_id = $1), $2)""",
            key_id, blob)
        updated = await conn.fetchrow(
            f"""UPDATE fhe_keys SET galois_steps = $2, conjugation = $3,
                       key_digests = CASE WHEN key_digests IS NULL THEN NULL ELSE key_digests || $4::jsonb END
                WHERE id = $1 RETURNING {KEY_META_COLUMNS}""", key_id, merged, conj, digests or {})
        return updated, True


async def max_ciphertext_body_limit(conn: asyncpg.Connection, account_id: str) -> int:
    return await conn.fetchval(
        "SELECT COALESCE(max(ciphertext_body_limit), 0) FROM fhe_keys WHERE account_id = $1", account_id
    )


# --- ciphertexts --------------------------------------------------------------------------

CT_COLUMNS = "id, account_id, key_id, level, scale, slots, size_bytes, source, provenance, created_at, expires_at"


async def insert_ciphertext(conn: asyncpg.Connection, *, ct_id: str, account_id: str, key_id: str, level: int,
                            scale: float, slots: int, size_bytes: int, source: str,
                            expires_at: datetime, provenance: str = "client") -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO ciphertexts (id, account_id, key_id, level, scale, slots, size_bytes, source, provenance,
                                     expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {CT_COLUMNS}""",
        ct_id, account_id, key_id, level, scale, slots, size_bytes, source, provenance, expires_at,
    )


async def get_ciphertexts(conn: asyncpg.Connection, account_id: str, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        f"SELECT {CT_COLUMNS} FROM ciphertexts WHERE account_id = $1 AND id = ANY($2::text[]) AND expires_at > now()",
        account_id, ids,
    )
    return {r["id"]: r for r in rows}


async def touch_ciphertexts(conn: asyncpg.Connection, account_id: str, ids: list[str]) -> None:
    """Mark ciphertexts as used now (the LRU order of the account's store)."""
    await conn.execute(
        "UPDATE ciphertexts SET last_used_at = now() WHERE account_id = $1 AND id = ANY($2::text[])",
        account_id, ids)


async def lock_ciphertext_store(conn: asyncpg.Connection, account_id: str) -> None:
    """Serialize this account's store changes until the transaction ends (quota accounting)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('ctstore:' || $1))", account_id)


async def evict_lru(conn: asyncpg.Connection, account_id: str, keep_id: str, capacity_bytes: int) -> list[asyncpg.Record]:
    """Inside the transaction that added ``keep_id``: delete the account's least recently used
    ciphertexts (never ``keep_id``) while its live bytes exceed ``capacity_bytes``; logs them as
    ``lru`` and returns the deleted rows (id, account_id, key_id, size_bytes)."""
    total = await conn.fetchval(
        "SELECT COALESCE(sum(size_bytes), 0) FROM ciphertexts WHERE account_id = $1 AND expires_at > now()",
        account_id)
    excess = int(total) - int(capacity_bytes)
    if excess <= 0:
        return []
    rows = await conn.fetch(
        """WITH ordered AS (
               SELECT id, size_bytes,
                      sum(size_bytes) OVER (ORDER BY last_used_at, id) - size_bytes AS before
               FROM ciphertexts WHERE account_id = $1 AND id <> $2)
           DELETE FROM ciphertexts c USING ordered o
           WHERE c.id = o.id AND o.before < $3
           RETURNING c.id, c.account_id, c.key_id, c.size_bytes, c.last_used_at""",
        account_id, keep_id, excess)
    rows = sorted(rows, key=lambda r: (r["last_used_at"], r["id"]))
    await log_deletions(conn, rows, "lru")
    return rows


async def log_deletions(conn: asyncpg.Connection, rows: list[asyncpg.Record], reason: str) -> None:
    """Record deleted ciphertexts (``ciphertext_deletions``) and count them per reason."""
    if not rows:
        return
    await conn.executemany(
        """INSERT INTO ciphertext_deletions (ciphertext_id, account_id, key_id, size_bytes, reason)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ciphertext_id) DO NOTHING""",
        [(r["id"], r["account_id"], r["key_id"], r["size_bytes"], reason) for r in rows])
    await conn.execute("UPDATE ciphertext_deletion_totals SET total = total + $2 WHERE reason = $1",
                       reason, len(rows))


async def expire_ciphertexts(conn: asyncpg.Connection, limit: int = 1000) -> list[asyncpg.Record]:
    """Delete up to ``limit`` ciphertexts past their TTL (logged as ``ttl``); the deleted rows."""
    async with conn.transaction():
        rows = await conn.fetch(
            """DELETE FROM ciphertexts WHERE id IN (
                   SELECT id FROM ciphertexts WHERE expires_at <= now() ORDER BY expires_at LIMIT $1
                   FOR UPDATE SKIP LOCKED)
               RETURNING id, account_id, key_id, size_bytes""", limit)
        await log_deletions(conn, rows, "ttl")
    return rows


async def existing_ciphertext_ids(conn: asyncpg.Connection, ids: list[str]) -> set[str]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM ciphertexts WHERE id = ANY($1::text[])", ids)}


async def deletion_totals(conn: asyncpg.Connection) -> dict[str, int]:
    return {r["reason"]: int(r["total"]) for r in await conn.fetch(
        "SELECT reason, total FROM ciphertext_deletion_totals")}


async def prune_deletion_log(conn: asyncpg.Connection, keep_days: int = 30) -> int:
    n = await conn.fetchval(
        """WITH d AS (DELETE FROM ciphertext_deletions WHERE deleted_at < now() - make_interval(days => $1)
                      RETURNING 1) SELECT count(*) FROM d""", keep_days)
    return int(n)


# --- idempotency records ---------------------------------------------------------------

async def claim_idempotency_slot(conn: asyncpg.Connection, slot: str, fingerprint: str, claim: str,
                                 lease_s: float) -> asyncpg.Record | None:
    """Claim ``slot`` for this request (a lease of ``lease_s``); None when claimed now, else the
    live record (fingerprint, status, sealed) that holds it (status 0: still in progress)."""
    got = await conn.fetchval(
        """INSERT INTO idempotency_records (slot, fingerprint, claim, status, sealed, expires_at)
           VALUES ($1, $2, $3, 0, NULL, now() + make_interval(secs => $4))
           ON CONFLICT (slot) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, claim = EXCLUDED.claim,
               status = 0, sealed = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
           WHERE idempotency_records.expires_at <= now()
           RETURNING claim""", slot, fingerprint, claim, float(lease_s))
    if got == claim:
        return None
    row = await conn.fetchrow(
        "SELECT fingerprint, status, sealed FROM idempotency_records WHERE slot = $1", slot)
    if row is None:  # deleted between the two statements (a release): try once more
        return await claim_idempotency_slot(conn, slot, fingerprint, claim, lease_s)
    return row


async def finish_idempotency_slot(conn: asyncpg.Connection, slot: str, claim: str, status: int, sealed: bytes,
                                  ttl_s: int) -> bool:
    """Store the answer under our claim (kept ``ttl_s``); False when the claim was lost."""
    n = await conn.fetchval(
        """UPDATE idempotency_records SET status = $3, sealed = $4, expires_at = now() + make_interval(secs => $5)
           WHERE slot = $1 AND claim = $2 RETURNING 1""", slot, claim, status, sealed, float(ttl_s))
    return n is not None


async def release_idempotency_slot(conn: asyncpg.Connection, slot: str, claim: str) -> None:
    await conn.execute("DELETE FROM idempotency_records WHERE slot = $1 AND claim = $2 AND status = 0", slot, claim)


async def purge_idempotency_records(conn: asyncpg.Connection) -> int:
    n = await conn.fetchval(
        "WITH d AS (DELETE FROM idempotency_records WHERE expires_at <= now() RETURNING 1) SELECT count(*) FROM d")
    return int(n)


# --- usage (written by billing.charge; Redis's monthly counters are a cache of it) -------

async def fcu_in_period(conn: asyncpg.Connection, account_id: str, period: date) -> int:
    """FCU metered in a billing period (``usage_periods``, kept with every usage row)."""
    return int(await conn.fetchval(
        "SELECT COALESCE((SELECT fcu_used FROM usage_periods WHERE account_id = $1 AND period_start = $2), 0)",
        account_id, period))


async def deletion_reason(conn: asyncpg.Connection, account_id: str, ct_id: str) -> str | None:
    """Why this account's ciphertext is gone: lru, ttl, key_deleted, deleted (None: unknown id).
    A row past its TTL that the sweeper has not reached yet counts as ``ttl``."""
    reason = await conn.fetchval(
        "SELECT reason FROM ciphertext_deletions WHERE ciphertext_id = $1 AND account_id = $2", ct_id, account_id)
    if reason is None and await conn.fetchval(
            "SELECT 1 FROM ciphertexts WHERE id = $1 AND account_id = $2 AND expires_at <= now()", ct_id, account_id):
        reason = "ttl"
    return reason
