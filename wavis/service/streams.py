"""Redis names and routing of the job streams (issue 13), shared by ``dispatch.py`` (API side)
and ``worker.py`` (worker side).

* Job streams ``<prefix>{jobs}:<shard>`` for shard 0 … S−1 (one Redis Cluster hash tag, so the
  admission script that sums their lengths and appends atomically works there too), each with the consumer group
  ``workers``. A job goes to shard ``blake2b(affinity) mod S``, where the affinity is the
  evaluation key it needs (CKKS key id, TFHE session id): every job of one key lands on one
  shard.
* Key affinity: live workers announce themselves in the sorted set ``<prefix>workers``
  (score = last heartbeat, unix seconds); each shard is read by exactly one live worker, chosen
  by rendezvous (highest-random-weight) hashing over (worker, shard). So all jobs of a key go to
  the worker that already holds the key in its LRU, batch there, and a worker joining or
  leaving moves only its own shards. Membership is only a routing preference: correctness
  never depends on it (a shard read by two workers for a moment, or by none until the
  heartbeat TTL passes, still completes every job exactly once: consumer groups deliver each
  message to one consumer, ``XAUTOCLAIM`` reclaims those of a dead one, and PostgreSQL's
  attempt counter fences late writers).
* Replies to synchronous waiters: ``<prefix>replies:<api id>``, one stream per API process
  (a job's message names its API process; the embedded worker hands its own process's replies
  over directly).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

GROUP = "workers"


def shard_stream(prefix: str, shard: int) -> str:
    # one hash tag for all job streams: the admission script reads every shard's length
    return f"{prefix}{{jobs}}:{shard}"


def all_streams(prefix: str, shards: int) -> list[str]:
    return [shard_stream(prefix, s) for s in range(shards)]


def reply_stream(prefix: str, api_id: str) -> str:
    return f"{prefix}replies:{api_id}"


def workers_key(prefix: str) -> str:
    return f"{prefix}workers"


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def shard_of(affinity: str, shards: int) -> int:
    return _h("shard:" + affinity) % max(1, shards)


def owner_of(shard: int, workers: Iterable[str]) -> str | None:
    """Rendezvous hashing: the live worker with the highest weight for this shard."""
    best, best_w = None, -1
    for w in workers:
        weight = _h(f"{w}:{shard}")
        if weight > best_w or (weight == best_w and best is not None and w < best):
            best, best_w = w, weight
    return best


async def ensure_groups(redis, prefix: str, shards: int) -> None:
    """Create every job stream and its consumer group (idempotent)."""
    from redis.exceptions import ResponseError  # noqa: PLC0415

    for stream in all_streams(prefix, shards):
        try:
            await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


# XADD only while the job streams hold fewer than ARGV[1] entries in all (one round trip, atomic):
# KEYS = every shard stream, the target first; ARGV = max, then field/value pairs.
_ADMIT_XADD = """
local total = 0
for i = 1, #KEYS do total = total + redis.call('XLEN', KEYS[i]) end
if total >= tonumber(ARGV[1]) then return {0, total} end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
return {1, id}
"""


async def admit_and_add(redis, prefix: str, shards: int, shard: int, fields: dict) -> tuple[bool, int | str]:
    """Append a job message to its shard's stream unless the job streams already hold
    ``max`` entries: ``(True, entry id)`` or ``(False, depth)``. ``fields["max"]`` is the bound."""
    bound = fields.pop("max")
    keys = [shard_stream(prefix, shard)] + [s for s in all_streams(prefix, shards) if s != shard_stream(prefix, shard)]
    args: list = [bound]
    for k, v in fields.items():
        args += [k, v]
    ok, val = await redis.eval(_ADMIT_XADD, len(keys), *keys, *args)
    return bool(ok), (val.decode() if isinstance(val, bytes) else int(val))


async def queue_depth(redis, prefix: str, shards: int) -> int:
    """Jobs queued or running, all accounts: every job is a stream entry until its worker
    acknowledges and deletes it."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in all_streams(prefix, shards):
            pipe.xlen(stream)
        return int(sum(await pipe.execute()))
