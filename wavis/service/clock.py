"""The one clock of every billing period (issue 17): the calendar month UTC that quotas,
usage, budgets, once-per-period events, invoices and the Redis monthly counters' keys are
counted in.

Period logic never asks PostgreSQL for ``now()``: the time is read here and passed into SQL as
a parameter, so a test can freeze it (``frozen(...)``) and move it across a month boundary.
Other timestamps (job timings, TTLs) keep using ``ids.utcnow``; only *which period* a thing
belongs to comes from here.
"""

from __future__ import annotations

import calendar
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterator

from .ids import utcnow

_now: Callable[[], datetime] = utcnow


def now() -> datetime:
    """The current time (aware, UTC) by the service clock."""
    return _now()


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Replace the clock (``None`` restores the system clock). Process-wide: tests only."""
    global _now
    _now = fn or utcnow


class FrozenClock:
    """A clock that stands still until ``advance``d or ``set``."""

    def __init__(self, at: datetime) -> None:
        self.at = at.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at.astimezone(timezone.utc)

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@contextmanager
def frozen(at: datetime) -> Iterator[FrozenClock]:
    """``with frozen(datetime(2026, 1, 31, 23, 59, tzinfo=timezone.utc)) as c: … c.set(…)``."""
    clock = FrozenClock(at)
    previous = _now
    set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


def period_start(at: datetime | None = None) -> date:
    """First day of the calendar month (UTC) holding ``at`` (default: now)."""
    at = (at or now()).astimezone(timezone.utc)
    return date(at.year, at.month, 1)


def period_end(start: date) -> date:
    """First day of the next period (exclusive end)."""
    days = calendar.monthrange(start.year, start.month)[1]
    return start + timedelta(days=days)


def as_datetime(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
