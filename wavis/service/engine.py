"""The compute engine: a bounded thread pool for everything CPU-heavy (blob parsing,
validation, homomorphic operations; the C++ core releases the GIL), and an in-process LRU of
parsed parameters and evaluation keys so a 15 MB key is parsed once, not on every request.

Evaluation keys live on the compute device's context (``wavis.ckks.CkksContext``: its key
residency, ``put_key``/``evict_key``, on the context's device); the engine owns only the policy,
a bytes- and entries-bounded LRU (:class:`AsyncLRU` with a :class:`Residency`,
``fhe.EvaluatorResidency``) that makes a key resident when it enters and evicts it from the
context when it leaves.

Requests become jobs (``jobs.py``, ``dispatch.py``) that workers (``worker.py``) batch onto
this pool; the pool also runs the CPU-heavy work that is not a job (key and blob parsing).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Protocol, TypeVar

from .errors import ApiError

log = logging.getLogger("wavis.service.engine")

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class Timed(Generic[T]):
    value: T
    queue_ms: float
    compute_ms: float


class Residency(Protocol[K, T]):
    """Where an :class:`AsyncLRU`'s values live (a device context's key residency): ``admit``
    makes a value resident under ``key`` and returns its bytes there (the entry's weight);
    ``release`` evicts it when the LRU drops the entry (eviction, replacement, discard)."""

    def admit(self, key: K, value: T) -> int: ...
    def release(self, key: K, value: T) -> None: ...


class AsyncLRU(Generic[K, T]):
    """An LRU of values built by an async loader, with single-flight loading per key.

    The load runs as its own task: a caller that is cancelled or times out while waiting (its
    request hit the 120 s limit) does not cancel the load, and the other callers waiting for the
    same key still get its value (or its own error), never the first caller's cancellation.

    With a ``residency`` the LRU is the eviction policy over it: every entry is admitted there
    (its weight is the bytes ``admit`` returns) and released there when it leaves.
    """

    def __init__(self, capacity: int, max_bytes: int | None = None,
                 weigh: Callable[[T], int] | None = None, residency: Residency[K, T] | None = None) -> None:
        self.capacity = max(1, capacity)
        self.max_bytes = max_bytes  # None: bounded in entries only
        self._weigh = weigh or (lambda _v: 0)
        self._residency = residency
        self._items: OrderedDict[K, T] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self.bytes = 0  # sum of the weights of the cached values
        self._loading: dict[K, asyncio.Task] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def put(self, key: K, value: T) -> None:
        """Cache ``value``; the least recently used entries go while there are more than
        ``capacity`` or their weights pass ``max_bytes`` (the newest entry always stays)."""
        self._drop(key)
        weight = self._residency.admit(key, value) if self._residency is not None else self._weigh(value)
        size = max(0, int(weight))
        self._items[key] = value
        self._sizes[key] = size
        self.bytes += size
        while len(self._items) > 1 and (len(self._items) > self.capacity
                                        or (self.max_bytes is not None and self.bytes > self.max_bytes)):
            self._drop(next(iter(self._items)))

    def _drop(self, key: K) -> None:
        if key in self._items:
            value = self._items.pop(key)
            self.bytes -= self._sizes.pop(key, 0)
            if self._residency is not None:
                self._residency.release(key, value)

    def discard(self, key: K) -> None:
        """Forget ``key``; a load of it already running still answers its waiters but is not
        cached (it may predate what made the caller discard the key)."""
        self._drop(key)
        self._loading.pop(key, None)

    async def _load(self, key: K, load: Callable[[], Awaitable[T]]) -> T:
        me = asyncio.current_task()
        try:
            value = await load()
        except BaseException:
            if self._loading.get(key) is me:
                del self._loading[key]
            raise
        if self._loading.get(key) is me:
            del self._loading[key]
            self.put(key, value)
        return value

    async def get(self, key: K, load: Callable[[], Awaitable[T]]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            # retrieve the outcome even when every waiter has gone (no "never retrieved" warning)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._loading[key] = task
        return await asyncio.shield(task)


class ComputeEngine:
    def __init__(self, threads: int, queue_max: int, eval_key_cache_entries: int,
                 eval_key_cache_bytes: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wavis-compute")
        self.threads = threads
        self.queue_max = queue_max
        self.in_flight = 0  # submitted and not finished; only touched on the event loop
        self.params: AsyncLRU[str, Any] = AsyncLRU(256)  # fingerprint-free cache by key_id
        from .fhe import EvaluatorResidency  # noqa: PLC0415

        # evaluation keys: resident on their context's device, evicted from it by this LRU
        self.evaluators: AsyncLRU[str, Any] = AsyncLRU(eval_key_cache_entries, eval_key_cache_bytes,
                                                       residency=EvaluatorResidency())
        self.contexts: Any = None  # fhe.DeviceContexts of the compute device (set by the app; None: CPU)

    async def submit(self, fn: Callable[..., T], *args: Any) -> Timed[T]:
        """Run ``fn(*args)`` on the pool. A job counts in ``in_flight`` (so in ``running``,
        ``queue_depth`` and the 503 OVERLOADED cap) until its thread has really finished: a
        request that times out or is cancelled while its job runs leaves the job counted until
        it ends (a job cancelled before it started stops counting at once).

        Raises: ApiError 503 OVERLOADED when the queue is full.
        """
        if self.queue_depth >= self.queue_max:
            raise ApiError(503, "OVERLOADED", "compute queue is full, retry shortly", headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()
        started: list[float] = []
        self.in_flight += 1

        def job() -> T:
            started.append(time.perf_counter())
            return fn(*args)

        def finished(_f) -> None:  # any thread: the job ran to its end or was cancelled unstarted
            try:
                loop.call_soon_threadsafe(self._finished)
            except RuntimeError:  # the loop is closed (shutdown)
                pass

        # copy the context so log lines from the worker thread carry the request id
        cf = self._pool.submit(contextvars.copy_context().run, job)
        cf.add_done_callback(finished)
        value = await asyncio.wrap_future(cf)
        done = time.perf_counter()
        start = started[0] if started else done
        return Timed(value, (start - submitted) * 1e3, (done - start) * 1e3)

    def _finished(self) -> None:
        self.in_flight -= 1

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
