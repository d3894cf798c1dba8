"""Ciphertext blobs in Redis with a TTL (metadata lives in PostgreSQL, ``ciphertexts``).
Keys are ``<Settings.redis_prefix>ct:<id>``."""

from __future__ import annotations

from redis.asyncio import Redis

def _key(prefix: str, ct_id: str) -> str:
    return f"{prefix}ct:{ct_id}"


async def put(redis: Redis, prefix: str, ct_id: str, blob: bytes, ttl_s: int) -> None:
    await redis.set(_key(prefix, ct_id), blob, ex=ttl_s)


async def get_many(redis: Redis, prefix: str, ct_ids: list[str]) -> list[bytes | None]:
    if not ct_ids:
        return []
    return await redis.mget([_key(prefix, i) for i in ct_ids])


async def delete(redis: Redis, prefix: str, ct_ids: list[str]) -> None:
    if ct_ids:
        await redis.delete(*[_key(prefix, i) for i in ct_ids])
