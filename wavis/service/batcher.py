"""The batcher: groups jobs that can share one backend call (issue 13).

Jobs carry a batch key — (TFHE session) or (CKKS key, operation, level, digest of the
operation's parameters), see ``dispatch.py``. Per key, jobs wait in a FIFO; the group closes
when it holds ``max_size`` jobs or when its oldest job has waited ``max_delay_s``, whichever
comes first (``max_delay_s`` = 0: close at once — jobs that arrive together, e.g. from one
stream read, still share the call). A closed group waits for one of ``slots`` backend slots;
when it gets one it takes up to ``max_size`` jobs of its key *at that moment* (jobs that arrived
while it waited ride along), so under load batches grow by themselves while the device is busy.

``run(key, jobs)`` is awaited with the slot held; it must settle every job itself (the
batcher never fails jobs). Memory is bounded by the caller (the worker reads from the stream
only what its prefetch allows).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, run: Callable[[Hashable, list[T]], Awaitable[None]], *, max_size: int, max_delay_s: float,
                 slots: int) -> None:
        if max_size < 1 or slots < 1 or max_delay_s < 0:
            raise ValueError("max_size ≥ 1, slots ≥ 1, max_delay_s ≥ 0")
        self._run = run
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        self._sem = asyncio.Semaphore(slots)
        self._queues: dict[Hashable, deque[tuple[float, T]]] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._scheduled: set[Hashable] = set()
        self._tasks: set[asyncio.Task] = set()
        self.waiting = 0  # jobs added and not yet handed to ``run``
        self.running = 0  # jobs inside ``run``

    def add(self, key: Hashable, item: T) -> None:
        q = self._queues.setdefault(key, deque())
        q.append((time.monotonic(), item))
        self.waiting += 1
        self._arm(key)

    def _arm(self, key: Hashable) -> None:
        q = self._queues.get(key)
        if not q or key in self._scheduled:
            return
        age = time.monotonic() - q[0][0]
        if len(q) >= self.max_size or self.max_delay_s == 0 or age >= self.max_delay_s:
            self._schedule(key)
        elif key not in self._timers:
            self._timers[key] = asyncio.get_running_loop().call_later(self.max_delay_s - age, self._schedule, key)

    def _schedule(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._scheduled or not self._queues.get(key):
            return
        self._scheduled.add(key)
        task = asyncio.get_running_loop().create_task(self._dispatch(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, key: Hashable) -> None:
        async with self._sem:
            q = self._queues.get(key) or deque()
            batch = [q.popleft()[1] for _ in range(min(self.max_size, len(q)))]
            self._scheduled.discard(key)
            if not q:
                self._queues.pop(key, None)
            else:
                self._arm(key)  # the rest: full again, due, or a timer from its oldest job
            self.waiting -= len(batch)
            self.running += len(batch)
            try:
                if batch:
                    await self._run(key, batch)
            finally:
                self.running -= len(batch)

    async def drain(self) -> None:
        """Close every open group now and wait until all jobs have been run."""
        for key in list(self._queues):
            self._schedule(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> list[Any]:
        """Stop: cancel timers and pending dispatches; returns the jobs never handed to ``run``."""
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        left = [item for q in self._queues.values() for _, item in q]
        self._queues.clear()
        self._scheduled.clear()
        self.waiting = 0
        return left
