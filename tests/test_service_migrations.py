"""Plain-SQL migrations: in order, once each, in a transaction, under an advisory lock."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest

from wavis.service import db

from conftest import TEST_PG_URL

pytestmark = pytest.mark.service


@pytest.fixture
async def scratch_db(service_database_url):
    name = f"wavis_test_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(TEST_PG_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = service_database_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_concurrent_start_applies_each_migration_once(scratch_db):
    conns = [await asyncpg.connect(scratch_db) for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.migrate(c) for c in conns))
        versions = [m.version for m in db.load_migrations()]
        applied = sorted(v for r in results for v in r)
        assert applied == versions  # each applied by exactly one process
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        assert await db.migrate(conns[0]) == []  # nothing left to do
    finally:
        for c in conns:
            await c.close()


async def test_failed_migration_rolls_back_and_edited_one_is_refused(scratch_db):
    conn = await asyncpg.connect(scratch_db)
    try:
        good = db.Migration(1, "one", "CREATE TABLE t1 (id int);")
        bad = db.Migration(2, "two", "CREATE TABLE t2 (id int); SELECT no_such_function();")
        with pytest.raises(asyncpg.PostgresError):
            await db.migrate(conn, [good, bad])
        assert await conn.fetchval("SELECT to_regclass('t1') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('t2') IS NOT NULL")  # rolled back whole
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [1]
        edited = db.Migration(1, "one", "CREATE TABLE t1 (id bigint);")
        with pytest.raises(RuntimeError, match="changed"):
            await db.migrate(conn, [edited])
    finally:
        await conn.close()


def test_migration_files_are_numbered_and_ordered():
    ms = db.load_migrations()
    assert ms and [m.version for m in ms] == sorted({m.version for m in ms})
    assert ms[0].version == 1
