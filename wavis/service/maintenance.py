"""Maintenance mode (API.md §1): ``WAVIS_MAINTENANCE=1`` or ``wavis admin maintenance on``
(a flag in Redis, seen by every API process at once) → every endpoint except the operational
ones (health, probes, metrics) answers 503 ``MAINTENANCE`` with ``Retry-After``."""

from __future__ import annotations

from redis.asyncio import Redis


def flag_key(prefix: str) -> str:
    return f"{prefix}maintenance"


async def get(redis: Redis, prefix: str) -> int | None:
    """Retry-After seconds while the flag is set, else None."""
    return parse(await redis.get(flag_key(prefix)))


def parse(raw: bytes | str | None) -> int | None:
    """The flag's value (``GET flag_key``) as ``get`` answers it."""
    if raw is None:
        return None
    try:
        return max(1, int(raw))
    except ValueError:
        return 300


async def set_mode(redis: Redis, prefix: str, on: bool, retry_after_s: int = 300) -> None:
    if on:
        await redis.set(flag_key(prefix), str(int(retry_after_s)))
    else:
        await redis.delete(flag_key(prefix))
