"""PostgreSQL: the asyncpg pool and the plain-SQL migration runner.

Migrations are ``migrations/NNN_name.sql``, applied in numeric order, each once, each in its
own transaction, while holding a session advisory lock so that several processes starting
together apply them exactly once. An applied file whose text changed afterwards is an error
(write a new migration instead).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger("wavis.service.db")

MIGRATION_LOCK_ID = 0x57415649  # "WAVI"

# A FROM item that turns ``synchronous_commit`` off for the transaction of the statement that
# names it (``set_config(…, is_local => true)`` = ``SET LOCAL``): its commit returns without
# waiting for the WAL flush (fdatasync, 2–10 ms on the disks measured), the rows are visible to
# every session at once, and the WAL writer flushes them within 3 × ``wal_writer_delay``
# (600 ms by default). Only a PostgreSQL (or host) crash in that window can lose them, never a
# crash of a WAVIS process. For writes that confirm nothing to a client — see
# ``relaxed_commit`` — never for one a 2xx answer depends on.
RELAXED_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed_commit"


def relaxed_commit(conn: asyncpg.Connection) -> str:
    """``RELAXED_COMMIT`` for a statement that is its own transaction on ``conn``.

    Writes that may use it (docs/operations.md, "Jobs: lost messages, lost answers"): an API
    key's and a TFHE session's ``last_used_at``, and the admission row of a synchronous job
    (``jobs.insert_admitted``) — that job is answered only after a later synchronous commit (its
    completion), and a flush covers every earlier WAL record, the admission's included.

    Raises: RuntimeError inside an explicit transaction (it would relax that whole
    transaction's commit)."""
    if conn.is_in_transaction():
        raise RuntimeError("relaxed_commit: the statement must be its own transaction")
    return RELAXED_COMMIT
_NAME_RE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    out = []
    root = resources.files("wavis.service") / "migrations"
    for entry in root.iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return out


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise RuntimeError(f"migration {m.version:03d}_{m.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
            log.info("applied migration %03d_%s", m.version, m.name)
            applied_now.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection it takes back. asyncpg's default, ``Connection.reset()``,
    sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release:
    one round trip per ``acquire`` — four or five per request (``benchmarks/request_roundtrips.py``).
    This service keeps no session state on pooled connections (no ``SET``, ``LISTEN`` or cursors
    outside transactions; its one session advisory lock, the sweeper's, is unlocked in a
    ``finally``), so only a connection given back inside a transaction (a cancelled request) is
    reset — rolled back — the default way."""
    if conn.is_in_transaction():
        await conn.reset()


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0,
                      command_timeout: float = 15.0) -> asyncpg.Pool:
    """``command_timeout`` bounds every query, so a stuck Postgres answers 502, never a hang."""
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, timeout=timeout,
        command_timeout=command_timeout, reset=_reset_connection,
    )
