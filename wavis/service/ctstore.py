"""The ciphertext store: durable blobs (``blobstore``) with a Redis cache in front.

* **Durable**: ``put`` writes the blob to the blob store (fsync'd) before the caller writes the
  metadata row and answers; a blob confirmed with 201/200 survives a crash of Redis, of
  PostgreSQL (its row is committed before the answer) and of the server.
* **Accounting** (PostgreSQL, ``repo``): the rows hold size and ``last_used_at``; the plan's
  ``ciphertext_store_bytes`` is enforced by ``repo.evict_lru`` in the transaction that inserts a
  row (per-account advisory lock), and the TTL by the sweeper (``sweeper.py``). Every deletion
  — LRU eviction, TTL, key deletion, explicit delete — is logged in ``ciphertext_deletions``
  (ids reported in ``evicted_ciphertext_ids``, totals on ``/health`` and ``/metrics``).
* **Cache** (Redis ``<prefix>ct:<id>``, ``ciphertext_cache_ttl_s``): filled on write and on a
  miss; any Redis failure (down, full, slow) falls back to the blob store, never to an error.

Blob names: ``ct/<account id>/<ciphertext id>``.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from .blobstore import BlobStore

log = logging.getLogger("wavis.service.ctstore")

CACHE_OP_TIMEOUT_S = 1.0
CACHE_MAX_BLOB = 16 * 1024 * 1024  # bigger blobs are read from the blob store every time


def is_redis_oom(exc: BaseException) -> bool:
    """Redis at maxmemory under noeviction: a plain command raises OutOfMemoryError, a Lua
    script a ResponseError whose message carries the OOM reply."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and "OOM command not allowed" in str(exc))


def blob_name(account_id: str, ct_id: str) -> str:
    return f"ct/{account_id}/{ct_id}"


def cache_key(prefix: str, ct_id: str) -> str:
    return f"{prefix}ct:{ct_id}"


class CiphertextStore:
    def __init__(self, blobs: BlobStore, redis: Redis, prefix: str, cache_ttl_s: int) -> None:
        self.blobs = blobs
        self.redis = redis
        self.prefix = prefix
        self.cache_ttl_s = max(1, int(cache_ttl_s))
        self.cache_errors = 0  # Redis failures absorbed (metrics)

    async def _cache(self, op: str, coro) -> object:
        try:
            async with asyncio.timeout(CACHE_OP_TIMEOUT_S):
                return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            self.cache_errors += 1
            if not is_redis_oom(exc):
                log.warning("ciphertext cache %s failed (%s); using the blob store", op, type(exc).__name__)
            return None

    async def put(self, account_id: str, ct_id: str, blob: bytes) -> None:
        """Durable on return (the blob store's guarantee); cached best effort.
        Raises ApiError 507 INSUFFICIENT_STORAGE when the blob store is full."""
        await self.blobs.put(blob_name(account_id, ct_id), blob)
        if len(blob) <= CACHE_MAX_BLOB:
            await self._cache("write", self.redis.set(cache_key(self.prefix, ct_id), blob, ex=self.cache_ttl_s))

    async def get_many(self, account_id: str, ct_ids: list[str]) -> list[bytes | None]:
        """Blobs in order (None where the blob store has none)."""
        if not ct_ids:
            return []
        cached = await self._cache("read", self.redis.mget([cache_key(self.prefix, i) for i in ct_ids]))
        out: list[bytes | None] = list(cached) if cached is not None else [None] * len(ct_ids)
        missing = [k for k, b in enumerate(out) if b is None]
        if missing:
            loaded = await asyncio.gather(*(self.blobs.get(blob_name(account_id, ct_ids[k])) for k in missing))
            fill = {}
            for k, blob in zip(missing, loaded):
                out[k] = blob
                if blob is not None and len(blob) <= CACHE_MAX_BLOB:
                    fill[cache_key(self.prefix, ct_ids[k])] = blob
            if fill and cached is not None:  # skip refilling while Redis is failing
                pipe = self.redis.pipeline(transaction=False)
                for key, blob in fill.items():
                    pipe.set(key, blob, ex=self.cache_ttl_s)
                await self._cache("fill", pipe.execute())
        return out

    async def drop(self, account_id: str, ct_ids: list[str]) -> None:
        """Remove blobs whose rows are gone (cache first, so no stale read outlives the file)."""
        if not ct_ids:
            return
        for i in range(0, len(ct_ids), 500):
            chunk = ct_ids[i:i + 500]
            await self._cache("delete", self.redis.delete(*[cache_key(self.prefix, c) for c in chunk]))
            await self.blobs.delete([blob_name(account_id, c) for c in chunk])
