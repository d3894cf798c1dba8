"""Ciphertext blobs in Redis: an LRU store with a TTL (metadata lives in PostgreSQL).

Keys (under ``Settings.redis_prefix``):

* ``ct:<id>``                 the blob, with the TTL (default 24 h);
* ``ctlru:<account>``         sorted set id → last access (ms): the LRU order, per account;
* ``ctsz:<account>``          hash id → size; ``ctbytes:<account>`` the account's total bytes;
* ``ct:evictions``            evictions counted over all processes (``/health``, ``/metrics``).

``put_lru`` stores a blob and, in the same Lua script, evicts the account's least recently used
blobs while the account is over its plan's capacity (``ratelimit.Plan.ciphertext_store_bytes``);
it returns the evicted ids so the response that caused them can report them
(``evicted_ciphertext_ids``). Capacity is per account, so one tenant never evicts another's
ciphertexts and evicted ids never leak across accounts. Reads touch the LRU order.
Blobs that expire by TTL are dropped from the accounting lazily (not reported as evictions).
"""

from __future__ import annotations

import time

from redis.exceptions import OutOfMemoryError, ResponseError

from redis.asyncio import Redis


def is_redis_oom(exc: BaseException) -> bool:
    """Redis at maxmemory under noeviction: a plain command raises OutOfMemoryError, a Lua
    script a ResponseError whose message carries the OOM reply."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and "OOM command not allowed" in str(exc))


def _key(prefix: str, ct_id: str) -> str:
    return f"{prefix}ct:{ct_id}"


def _acct_keys(prefix: str, account_id: str) -> list[str]:
    return [f"{prefix}ctlru:{account_id}", f"{prefix}ctsz:{account_id}", f"{prefix}ctbytes:{account_id}"]


def evictions_key(prefix: str) -> str:
    return f"{prefix}ct:evictions"


# KEYS: blob, lru, sizes, bytes, evictions. ARGV: id, blob, ttl, now_ms, capacity, blob key prefix.
_PUT_LRU = """
local id, ttl, now, cap, bp = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl * 1000, 'LIMIT', 0, 256)
for _, sid in ipairs(stale) do
  local sz = tonumber(redis.call('HGET', KEYS[3], sid) or '0')
  redis.call('HDEL', KEYS[3], sid); redis.call('ZREM', KEYS[2], sid)
  redis.call('DECRBY', KEYS[4], sz); redis.call('DEL', bp .. sid)
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
local size = string.len(ARGV[2])
local prev = tonumber(redis.call('HGET', KEYS[3], id) or '0')
redis.call('ZADD', KEYS[2], now, id)
redis.call('HSET', KEYS[3], id, size)
local total = redis.call('INCRBY', KEYS[4], size - prev)
local evicted = {}
while total > cap do
  local popped = redis.call('ZPOPMIN', KEYS[2])
  if #popped == 0 then break end
  local victim = popped[1]
  if victim == id then redis.call('ZADD', KEYS[2], now, id); break end
  local sz = tonumber(redis.call('HGET', KEYS[3], victim) or '0')
  redis.call('HDEL', KEYS[3], victim)
  total = redis.call('DECRBY', KEYS[4], sz)
  if redis.call('DEL', bp .. victim) == 1 then
    evicted[#evicted + 1] = victim
    redis.call('INCR', KEYS[5])
  end
end
for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ttl + 3600) end
return evicted
"""

# KEYS: lru, sizes, bytes. ARGV: blob key prefix, ids...
_DELETE = """
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local sz = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  redis.call('HDEL', KEYS[2], id); redis.call('ZREM', KEYS[1], id)
  if sz > 0 then redis.call('DECRBY', KEYS[3], sz) end
  n = n + redis.call('DEL', ARGV[1] .. id)
end
return n
"""


async def put(redis: Redis, prefix: str, ct_id: str, blob: bytes, ttl_s: int) -> None:
    """A blob outside any account's LRU accounting (TTL only)."""
    await redis.set(_key(prefix, ct_id), blob, ex=ttl_s)


async def put_lru(redis: Redis, prefix: str, account_id: str, ct_id: str, blob: bytes, ttl_s: int,
                  capacity_bytes: int) -> list[str]:
    """Store a blob in the account's LRU store; returns the ids evicted to make room."""
    keys = [_key(prefix, ct_id), *_acct_keys(prefix, account_id), evictions_key(prefix)]
    out = await redis.eval(_PUT_LRU, len(keys), *keys, ct_id, blob, ttl_s, int(time.time() * 1000),
                           capacity_bytes, _key(prefix, ""))
    return [x.decode() if isinstance(x, bytes) else str(x) for x in out]


async def get_many(redis: Redis, prefix: str, ct_ids: list[str], account_id: str | None = None) -> list[bytes | None]:
    """Blobs (None when expired/evicted); with ``account_id`` the reads count as LRU use."""
    if not ct_ids:
        return []
    blobs = await redis.mget([_key(prefix, i) for i in ct_ids])
    if account_id is not None:
        found = {i: int(time.time() * 1000) for i, b in zip(ct_ids, blobs) if b is not None}
        if found:
            try:
                await redis.zadd(_acct_keys(prefix, account_id)[0], found, xx=True)
            except ResponseError as exc:  # Redis full (noeviction): the read still succeeds
                if not is_redis_oom(exc):
                    raise
    return blobs


async def delete(redis: Redis, prefix: str, ct_ids: list[str], account_id: str | None = None) -> int:
    if not ct_ids:
        return 0
    if account_id is None:
        return int(await redis.delete(*[_key(prefix, i) for i in ct_ids]))
    keys = _acct_keys(prefix, account_id)
    try:
        return int(await redis.eval(_DELETE, 3, *keys, _key(prefix, ""), *ct_ids))
    except ResponseError as exc:
        if not is_redis_oom(exc):
            raise
    # Redis is full (noeviction) and refuses the script's DECRBY: free the blobs first with
    # commands Redis allows when full (HGET/HDEL/ZREM/DEL), then fix the byte counter.
    sizes = await redis.hmget(keys[1], ct_ids)
    await redis.hdel(keys[1], *ct_ids)
    await redis.zrem(keys[0], *ct_ids)
    n = int(await redis.delete(*[_key(prefix, i) for i in ct_ids]))
    freed = sum(int(x) for x in sizes if x is not None)
    if freed:
        await redis.decrby(keys[2], freed)
    return n


async def evictions_total(redis: Redis, prefix: str) -> int:
    return int(await redis.get(evictions_key(prefix)) or 0)
