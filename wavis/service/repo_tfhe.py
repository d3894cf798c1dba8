"""SQL for TFHE sessions (table ``tfhe_sessions``, migration 010). Tenant-scoped like
``repo.py``: another account's session is "not found". A session is live while its
``last_used_at`` is within the idle timeout; every use touches it."""

from __future__ import annotations

import asyncpg

from .db import relaxed_commit
from .errors import ApiError, not_found

COLUMNS = "id, account_id, preset, is_blind, key_id, created_at, last_used_at"


async def insert_session(conn: asyncpg.Connection, *, session_id: str, account_id: str, preset: str, is_blind: bool,
                         key_id: bytes, server_key: bytes, client_key_sealed: bytes | None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO tfhe_sessions (id, account_id, preset, is_blind, key_id, server_key, client_key_sealed)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}""",
        session_id, account_id, preset, is_blind, key_id, server_key, client_key_sealed,
    )


async def refresh_session(conn: asyncpg.Connection, account_id: str, session_id: str) -> None:
    """Mark a session used now, at the end of a long evaluation (its start already checked it
    was live, so a batch longer than the idle time cannot leave its results undecryptable)."""
    await conn.execute("UPDATE tfhe_sessions SET last_used_at = now() WHERE id = $1 AND account_id = $2",
                       session_id, account_id)


async def touch_session(conn: asyncpg.Connection, account_id: str, session_id: str,
                        idle_s: float) -> asyncpg.Record | None:
    """The live session (idle less than ``idle_s``), with ``last_used_at`` set to now.

    Committed without waiting for the WAL flush (``db.relaxed_commit``: visible at once; only
    a PostgreSQL crash within ~0.6 s can lose the touch, which makes the session look idle
    that much earlier)."""
    return await conn.fetchrow(
        f"""UPDATE tfhe_sessions SET last_used_at = now() FROM {relaxed_commit(conn)}
            WHERE id = $1 AND account_id = $2 AND last_used_at > now() - make_interval(secs => $3)
            RETURNING {COLUMNS}""",
        session_id, account_id, float(idle_s),
    )


def session_gone(session_id: str) -> ApiError:
    """The 404 of a session that ``touch_session`` (or the admission statement that touches it,
    ``jobs.insert_admitted``) did not find live."""
    return not_found("TFHE session", session_id=session_id, reason="unknown, deleted, or expired after 1 h without use")


async def get_session_blobs(conn: asyncpg.Connection, session_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, account_id, is_blind, key_id, server_key, client_key_sealed FROM tfhe_sessions WHERE id = $1",
        session_id,
    )


async def delete_session(conn: asyncpg.Connection, account_id: str, session_id: str, idle_s: float) -> bool:
    """Delete a live session of this account; False when unknown, another account's, or expired."""
    row = await conn.fetchval(
        """DELETE FROM tfhe_sessions
           WHERE id = $1 AND account_id = $2 AND last_used_at > now() - make_interval(secs => $3) RETURNING id""",
        session_id, account_id, float(idle_s),
    )
    return row is not None


async def count_live_sessions(conn: asyncpg.Connection, account_id: str, idle_s: float) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM tfhe_sessions WHERE account_id = $1 AND last_used_at > now() - make_interval(secs => $2)",
        account_id, float(idle_s),
    )


async def count_all_live_sessions(conn: asyncpg.Connection, idle_s: float) -> int:
    """Live sessions of every account (``/health`` ``active_sessions``)."""
    return await conn.fetchval(
        "SELECT count(*) FROM tfhe_sessions WHERE last_used_at > now() - make_interval(secs => $1)", float(idle_s),
    )


async def delete_idle_sessions(conn: asyncpg.Connection, idle_s: float) -> list[str]:
    rows = await conn.fetch(
        "DELETE FROM tfhe_sessions WHERE last_used_at <= now() - make_interval(secs => $1) RETURNING id",
        float(idle_s),
    )
    return [r["id"] for r in rows]
