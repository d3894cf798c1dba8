"""The engine worker's teardown is bounded: a task that swallowed its cancellation (Python 3.11's
``asyncio.wait_for`` can lose one that races its timeout) is cancelled again, and one that never
stops is left behind after the bound instead of hanging the app's cleanup (seen as 300 s
teardown timeouts in the service tests)."""

from __future__ import annotations

import asyncio
import time

from wavis.service.worker import _cancel_and_wait


async def test_a_swallowed_cancellation_is_repeated():
    swallowed = 0

    async def stubborn_once():
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    task = asyncio.create_task(stubborn_once())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await _cancel_and_wait([task], bound_s=5.0)
    assert task.cancelled() and swallowed == 2 and time.monotonic() - t0 < 2.0


async def test_a_task_that_never_stops_does_not_hang_the_stop():
    stop = asyncio.Event()

    async def immortal():
        while not stop.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await _cancel_and_wait([task], bound_s=1.0)
    assert not task.done() and 0.9 < time.monotonic() - t0 < 3.0
    stop.set()
    task.cancel()
    await asyncio.wait([task], timeout=1)
    assert task.done()
