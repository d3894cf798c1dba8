"""The compute engine: a bounded thread pool for everything CPU-heavy (blob parsing,
validation, homomorphic operations; the C++ core releases the GIL), and an in-process LRU of
parsed parameters and evaluation keys so a 15 MB key is parsed once, not on every request.

Issue 2 runs each request as one job on the pool; the batcher and the Redis-stream workers of
DESIGN.md §5 replace ``submit`` later without changing the handlers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, TypeVar

from .errors import ApiError

log = logging.getLogger("wavis.service.engine")

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class Timed(Generic[T]):
    value: T
    queue_ms: float
    compute_ms: float


class AsyncLRU(Generic[K, T]):
    """An LRU of values built by an async loader, with single-flight loading per key."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[K, T] = OrderedDict()
        self._loading: dict[K, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: K, value: T) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[T]]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            value = await load()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved when nobody else waits
            raise
        finally:
            self._loading.pop(key, None)
        fut.set_result(value)
        self.put(key, value)
        return value


class ComputeEngine:
    def __init__(self, threads: int, queue_max: int, eval_key_cache_entries: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wavis-compute")
        self.threads = threads
        self.queue_max = queue_max
        self.in_flight = 0  # submitted and not finished; only touched on the event loop
        self.params: AsyncLRU[str, Any] = AsyncLRU(256)  # fingerprint-free cache by key_id
        self.evaluators: AsyncLRU[str, Any] = AsyncLRU(eval_key_cache_entries)

    async def submit(self, fn: Callable[..., T], *args: Any) -> Timed[T]:
        if self.queue_depth >= self.queue_max:
            raise ApiError(503, "OVERLOADED", "compute queue is full, retry shortly", headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()
        started: list[float] = []
        self.in_flight += 1

        def job() -> T:
            started.append(time.perf_counter())
            return fn(*args)

        try:
            # copy the context so log lines from the worker thread carry the request id
            fut = loop.run_in_executor(self._pool, contextvars.copy_context().run, job)
            value = await fut
        finally:
            self.in_flight -= 1
        done = time.perf_counter()
        start = started[0] if started else done
        return Timed(value, (start - submitted) * 1e3, (done - start) * 1e3)

    @property
    def running(self) -> int:
        return min(self.in_flight, self.threads)

    @property
    def queue_depth(self) -> int:
        return max(0, self.in_flight - self.threads)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return (await self.submit(fn, *args)).value

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
