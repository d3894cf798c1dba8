"""Ciphertext blobs in Redis with a TTL (metadata lives in PostgreSQL, ``ciphertexts``)."""

from __future__ import annotations

from redis.asyncio import Redis

_PREFIX = "wavis:ct:"


def _key(ct_id: str) -> str:
    return _PREFIX + ct_id


async def put(redis: Redis, ct_id: str, blob: bytes, ttl_s: int) -> None:
    await redis.set(_key(ct_id), blob, ex=ttl_s)


async def get_many(redis: Redis, ct_ids: list[str]) -> list[bytes | None]:
    if not ct_ids:
        return []
    return await redis.mget([_key(i) for i in ct_ids])


async def delete(redis: Redis, ct_ids: list[str]) -> None:
    if ct_ids:
        await redis.delete(*[_key(i) for i in ct_ids])
