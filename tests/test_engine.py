"""The compute engine and its key cache under cancellation (a request that hits its timeout).

Found by QA: a request that timed out while loading a session key passed its CancelledError to
every other request waiting for the same key (their connections were dropped with no answer),
and a timed-out job stopped counting toward /health and the 503 OVERLOADED cap while its thread
was still computing.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from wavis.service.engine import AsyncLRU, ComputeEngine
from wavis.service.errors import ApiError


async def test_lru_waiter_survives_the_first_callers_timeout():
    lru: AsyncLRU[str, str] = AsyncLRU(4)
    loads = []

    async def slow():
        loads.append(1)
        await asyncio.sleep(0.3)
        return "KEY"

    async def first():
        async with asyncio.timeout(0.05):
            return await lru.get("s", slow)

    async def second():
        await asyncio.sleep(0.01)
        return await lru.get("s", slow)

    r1, r2 = await asyncio.gather(first(), second(), return_exceptions=True)
    assert isinstance(r1, TimeoutError)
    assert r2 == "KEY"
    assert loads == [1]  # one load, shared
    assert await lru.get("s", slow) == "KEY" and loads == [1]  # cached


async def test_lru_load_error_reaches_every_waiter_and_is_retried():
    lru: AsyncLRU[str, str] = AsyncLRU(4)
    calls = []

    async def failing():
        calls.append(1)
        await asyncio.sleep(0.02)
        raise LookupError("no such key")

    res = await asyncio.gather(lru.get("k", failing), lru.get("k", failing), return_exceptions=True)
    assert [type(r) for r in res] == [LookupError, LookupError] and len(calls) == 1

    async def ok():
        return "V"

    assert await lru.get("k", ok) == "V"  # the failed load left nothing behind


async def test_lru_abandoned_load_still_fills_the_cache():
    lru: AsyncLRU[str, str] = AsyncLRU(4)

    async def slow():
        await asyncio.sleep(0.05)
        return "V"

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await lru.get("k", slow)
    await asyncio.sleep(0.1)
    assert len(lru) == 1

    async def never():
        raise AssertionError("must not reload")

    assert await lru.get("k", never) == "V"


async def test_timed_out_job_counts_until_its_thread_finishes():
    eng = ComputeEngine(threads=1, queue_max=1, eval_key_cache_entries=2)
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await eng.submit(release.wait, 5)
        # the request gave up, the thread is still busy: it still counts
        assert eng.in_flight == 1 and eng.running == 1
        queued = asyncio.ensure_future(eng.submit(lambda: 42))
        await asyncio.sleep(0.02)
        assert eng.queue_depth == 1
        with pytest.raises(ApiError) as e:  # the cap sees the abandoned job too
            await eng.submit(lambda: 0)
        assert e.value.status == 503 and e.value.code == "OVERLOADED"
        release.set()
        assert (await queued).value == 42
        await asyncio.sleep(0.02)
        assert eng.in_flight == 0 and eng.queue_depth == 0
    finally:
        release.set()
        eng.close()


async def test_job_cancelled_before_it_starts_stops_counting():
    eng = ComputeEngine(threads=1, queue_max=4, eval_key_cache_entries=2)
    release = threading.Event()
    try:
        busy = asyncio.ensure_future(eng.submit(release.wait, 5))
        await asyncio.sleep(0.02)
        ran = []
        waiting = asyncio.ensure_future(eng.submit(lambda: ran.append(1)))
        await asyncio.sleep(0.02)
        assert eng.in_flight == 2
        waiting.cancel()
        await asyncio.sleep(0.02)
        assert eng.in_flight == 1  # never started: no longer counted, and never runs
        release.set()
        await busy
        await asyncio.sleep(0.02)
        assert eng.in_flight == 0 and ran == []
    finally:
        release.set()
        eng.close()


async def test_lru_discard_during_a_load_keeps_the_stale_value_out():
    """A key discarded while it loads (a Galois-key chunk arrived) is reloaded on next use."""
    lru: AsyncLRU[str, str] = AsyncLRU(4)
    version = ["old"]

    async def load():
        v = version[0]
        await asyncio.sleep(0.05)
        return v

    first = asyncio.ensure_future(lru.get("k", load))
    await asyncio.sleep(0.01)
    version[0] = "new"
    lru.discard("k")
    assert await first == "old"  # the waiter gets what it asked for before the discard
    assert await lru.get("k", load) == "new"  # but the cache did not keep it


async def test_lru_bounded_in_bytes_keeps_the_newest():
    lru: AsyncLRU[str, bytes] = AsyncLRU(100, max_bytes=10, weigh=len)
    lru.put("a", b"xxxx")
    lru.put("b", b"yyyy")
    assert lru.bytes == 8 and "a" in lru
    lru.put("c", b"zzzz")  # 12 > 10: the least recently used goes
    assert "a" not in lru and "b" in lru and "c" in lru and lru.bytes == 8
    lru.put("big", b"q" * 50)  # larger than the bound on its own: it stays, alone
    assert len(lru) == 1 and "big" in lru and lru.bytes == 50
    lru.discard("big")
    assert lru.bytes == 0 and len(lru) == 0


async def test_batcher_closes_at_max_size_or_delay_and_bounds_slots():
    from wavis.service.batcher import Batcher

    batches: list[tuple[str, list[int]]] = []
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def run(key, items):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        batches.append((key, list(items)))
        await gate.wait()
        running -= 1

    b = Batcher(run, max_size=3, max_delay_s=0.2, slots=1)
    for i in range(3):
        b.add("k", i)  # full at 3: closes at once, no delay
    await asyncio.sleep(0.01)
    assert batches == [("k", [0, 1, 2])]
    b.add("k", 3)
    b.add("j", 10)  # another key: its own batch
    await asyncio.sleep(0.05)
    assert len(batches) == 1  # neither full nor due, and the only slot is busy
    for i in range(4, 8):
        b.add("k", i)  # k is full again while it waits for the slot
    gate.set()
    await asyncio.sleep(0.3)
    flat = [x for key, items in batches if key == "k" for x in items]
    assert flat == list(range(8))  # FIFO per key, nothing lost, nothing twice
    assert all(len(items) <= 3 for _, items in batches)
    assert ("j", [10]) in batches  # closed by its delay
    assert peak == 1  # never more batches at once than slots
    assert b.waiting == 0 and b.running == 0


async def test_batcher_zero_delay_groups_what_arrives_together():
    from wavis.service.batcher import Batcher

    batches = []

    async def run(key, items):
        batches.append(list(items))

    b = Batcher(run, max_size=64, max_delay_s=0.0, slots=2)
    for i in range(5):
        b.add("k", i)  # one stream read: added in one go, before the loop runs the dispatch
    await asyncio.sleep(0.01)
    assert batches == [[0, 1, 2, 3, 4]]
