"""Plans (the one table of per-plan numbers), rate-limit windows and brute-force lockout.

All counters live in Redis and change only inside Lua scripts, so concurrent API processes
never race: a request is checked against *every* window and then counted in every window
atomically, or refused without counting.

Windows (API.md §1 "Rate limits"):

* ``daily``   — requests per account per UTC day (every authenticated request costs 1);
* ``monthly`` — FCU per account per calendar month UTC (routes declare their cost with
  ``@fcu``; an answer ≥ 400 refunds it). Plans without overage answer 402 QUOTA_EXHAUSTED at
  the cap; plans with overage keep going (billing charges the overage). The counter is a cache
  of PostgreSQL's ``usage_events`` (``metering.py``): a missing counter is seeded from there;
* ``burst``   — requests per client IP per 60 s (limit from the caller's plan; ``anonymous``
  for requests without a key).

Brute force (API.md §1 [ours]): failed authentications per client IP; more than
``AUTH_FAILURES_MAX`` in ``AUTH_FAILURE_WINDOW_S`` locks the IP out for 60 s, doubling per
repeat up to 15 min. Never per key, so nobody can lock a victim out.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timezone

from typing import Awaitable, Callable

from redis.asyncio import Redis

from . import pricing

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Plan:
    daily_requests: int  # requests per account per UTC day
    monthly_fcu: int  # FCU per account per calendar month (UTC)
    burst_per_ip: int  # requests per client IP per 60 s
    overage: bool  # False: the monthly FCU cap is hard (402 QUOTA_EXHAUSTED)
    ciphertext_store_bytes: int  # per-account ciphertext LRU store
    api_keys_per_hour: int = 10  # POST /api-keys per account per hour
    # admission by cost (admission.py): one heavy request's estimated peak memory and CPU, and
    # how many heavy requests (key generation/upload, matmul, bootstrap, TFHE sessions) of one
    # account run at once in one API process
    max_job_bytes: int = 512 * MiB
    max_job_cpu_s: float = 10.0
    heavy_jobs: int = 2


def _fcu(name: str) -> dict:
    """The monthly FCU allowance and overage of a plan come from ``pricing`` (their one owner)."""
    p = pricing.plan(name)
    return {"monthly_fcu": p.monthly_fcu if p.monthly_fcu is not None else 10**12, "overage": p.has_overage}


# THE table of per-plan limits (prices and FCU allowances: ``pricing.PLANS``). "anonymous"
# applies to requests without an API key.
PLANS: dict[str, Plan] = {
    "anonymous": Plan(daily_requests=0, monthly_fcu=0, burst_per_ip=60, overage=False, ciphertext_store_bytes=0,
                      max_job_bytes=0, max_job_cpu_s=0, heavy_jobs=0),
    # trial: a TFHE session of every preset (≤ 260 MiB) and small CKKS key sets, one at a time
    "trial": Plan(daily_requests=1_000, burst_per_ip=60, **_fcu("trial"),
                  ciphertext_store_bytes=64 * MiB, max_job_bytes=320 * MiB, max_job_cpu_s=5.0, heavy_jobs=1),
    "free": Plan(daily_requests=5_000, burst_per_ip=120, **_fcu("free"),
                 ciphertext_store_bytes=256 * MiB, max_job_bytes=512 * MiB, max_job_cpu_s=10.0, heavy_jobs=2),
    "payg": Plan(daily_requests=100_000, burst_per_ip=600, **_fcu("payg"),
                 ciphertext_store_bytes=1 * GiB, max_job_bytes=2 * GiB, max_job_cpu_s=60.0, heavy_jobs=4),
    "starter": Plan(daily_requests=50_000, burst_per_ip=300, **_fcu("starter"),
                    ciphertext_store_bytes=1 * GiB, max_job_bytes=2 * GiB, max_job_cpu_s=60.0, heavy_jobs=4),
    "pro": Plan(daily_requests=500_000, burst_per_ip=1_200, **_fcu("pro"),
                ciphertext_store_bytes=4 * GiB, max_job_bytes=4 * GiB, max_job_cpu_s=120.0, heavy_jobs=8),
    "scale": Plan(daily_requests=2_000_000, burst_per_ip=3_000, **_fcu("scale"),
                  ciphertext_store_bytes=16 * GiB, max_job_bytes=16 * GiB, max_job_cpu_s=300.0, heavy_jobs=16),
    "enterprise": Plan(daily_requests=10_000_000, burst_per_ip=6_000, **_fcu("enterprise"),
                       ciphertext_store_bytes=64 * GiB, max_job_bytes=64 * GiB, max_job_cpu_s=900.0,
                       heavy_jobs=32),
}

BURST_WINDOW_S = 60
AUTH_FAILURES_MAX = 10
AUTH_FAILURE_WINDOW_S = 300
AUTH_LOCKOUT_BASE_S = 60
AUTH_LOCKOUT_MAX_S = 900


def plan_of(plans: dict[str, Plan], name: str | None) -> Plan:
    return plans.get(name or "free") or plans["free"]


@dataclass(frozen=True)
class Window:
    name: str  # daily | monthly | burst
    key: str
    limit: int
    cost: int
    ttl: int  # seconds until the window resets when it is opened now
    blocking: bool  # refuse when cost would pass the limit
    seeded: bool = False  # a cache of PostgreSQL: when the key is missing, seed it first (take(seed=…))


@dataclass(frozen=True)
class WindowState:
    window: Window
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.window.limit - self.used)


# Check every window first, then count in every window (or none). Returns
# {denied_index (0 = none), used_1, ttl_1, used_2, ttl_2, ...}, or {-i} when seeded window i
# has no counter (Redis lost it: the caller seeds it from PostgreSQL and retries).
_WINDOWS_LUA = """
local n = tonumber(ARGV[1])
local denied = 0
for i = 1, n do
  local b = 1 + (i - 1) * 5
  if tonumber(ARGV[b + 5]) == 1 and redis.call('EXISTS', KEYS[i]) == 0 then return {-i} end
end
for i = 1, n do
  local b = 1 + (i - 1) * 5
  local limit, cost, block = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 4])
  if block == 1 and cost > 0 then
    local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
    if cur + cost > limit then denied = i; break end
  end
end
local out = {denied}
for i = 1, n do
  local b = 1 + (i - 1) * 5
  local cost, ttl = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local cur
  if denied == 0 and cost > 0 then
    cur = redis.call('INCRBY', KEYS[i], cost)
    if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  else
    cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  local t = redis.call('TTL', KEYS[i])
  if t < 0 then t = ttl end
  out[#out + 1] = cur
  out[#out + 1] = t
end
return out
"""

_REFUND_LUA = """
local v = redis.call('DECRBY', KEYS[1], ARGV[1])
if v < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
return v
"""


Seed = Callable[[Window], Awaitable[int]]


async def take(redis: Redis, windows: list[Window], seed: Seed | None = None) -> tuple[Window | None, list[WindowState]]:
    """Atomically check and count ``windows``; returns (the window that refused or None, states).

    A ``seeded`` window whose counter is missing (first use this period, or Redis lost its data)
    is first set from ``seed(window)`` — PostgreSQL's total (``metering.seed_monthly``) — with
    SET NX, so concurrent seeders agree, then the check runs again."""
    args: list = [len(windows)]
    for w in windows:
        args += [w.limit, w.cost, max(1, w.ttl), 1 if w.blocking else 0, 1 if (w.seeded and seed) else 0]
    keys = [w.key for w in windows]
    for _ in range(3):
        out = await redis.eval(_WINDOWS_LUA, len(windows), *keys, *args)
        denied = int(out[0])
        if denied >= 0:
            break
        w = windows[-denied - 1]
        await redis.set(w.key, int(await seed(w)), ex=max(1, w.ttl), nx=True)
    else:  # pragma: no cover - the key vanished three times in a row
        raise RuntimeError("rate-limit counter could not be seeded")
    states = [WindowState(w, int(out[1 + 2 * i]), int(out[2 + 2 * i])) for i, w in enumerate(windows)]
    return (windows[denied - 1] if denied else None), states


async def refund(redis: Redis, window: Window) -> None:
    if window.cost > 0:
        await redis.eval(_REFUND_LUA, 1, window.key, window.cost)


def seconds_to_day_end(now: datetime) -> int:
    end = datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp() + 86400
    return max(1, int(end - now.timestamp()))


def seconds_to_month_end(now: datetime) -> int:
    days = calendar.monthrange(now.year, now.month)[1]
    end = datetime(now.year, now.month, 1, tzinfo=timezone.utc).timestamp() + days * 86400
    return max(1, int(end - now.timestamp()))


def account_windows(prefix: str, plan: Plan, account_id: str, ip: str, fcu: int, now: datetime) -> list[Window]:
    day = now.strftime("%Y%m%d")
    month = now.strftime("%Y%m")
    return [
        Window("daily", f"{prefix}rl:day:{account_id}:{day}", plan.daily_requests, 1, seconds_to_day_end(now), True),
        Window("monthly", f"{prefix}rl:fcu:{account_id}:{month}", plan.monthly_fcu, fcu,
               seconds_to_month_end(now), not plan.overage, seeded=True),
        burst_window(prefix, plan, ip),
    ]


def burst_window(prefix: str, plan: Plan, ip: str) -> Window:
    return Window("burst", f"{prefix}rl:burst:{ip}", plan.burst_per_ip, 1, BURST_WINDOW_S, True)


def headers_for(states: list[WindowState]) -> dict[str, str]:
    """``X-RateLimit-<Window>-{Limit,Remaining,Reset}`` for every window, and the IETF
    ``RateLimit-Policy`` / ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers) for
    the tightest one (smallest remaining fraction; ties → soonest reset)."""
    h: dict[str, str] = {}
    for s in states:
        name = s.window.name.capitalize()
        h[f"X-RateLimit-{name}-Limit"] = str(s.window.limit)
        h[f"X-RateLimit-{name}-Remaining"] = str(s.remaining)
        h[f"X-RateLimit-{name}-Reset"] = str(s.reset)
    if states:
        tight = min(states, key=lambda s: (s.remaining / max(1, s.window.limit), s.reset))
        w = tight.window
        unit = ';qu="fcu"' if w.name == "monthly" else ""
        h["RateLimit-Policy"] = f'"{w.name}";q={w.limit};w={w.ttl if w.name != "burst" else BURST_WINDOW_S}{unit}'
        h["RateLimit"] = f'"{w.name}";r={tight.remaining};t={tight.reset}'
    return h


# --- brute force ----------------------------------------------------------------------------

# KEYS: failures counter, lock key, strike counter. ARGV: max, window, base, cap.
# Returns the lockout in seconds that this failure started (0 = none).
_AUTH_FAIL_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local strikes = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], 86400)
  local dur = tonumber(ARGV[3]) * (2 ^ (strikes - 1))
  if dur > tonumber(ARGV[4]) then dur = tonumber(ARGV[4]) end
  redis.call('SET', KEYS[2], strikes, 'EX', math.floor(dur))
  redis.call('DEL', KEYS[1])
  return math.floor(dur)
end
return 0
"""


def _auth_keys(prefix: str, ip: str) -> list[str]:
    return [f"{prefix}bf:fail:{ip}", f"{prefix}bf:lock:{ip}", f"{prefix}bf:strikes:{ip}"]


def lockout_key(prefix: str, ip: str) -> str:
    """The key whose TTL is this IP's lockout (``lockout_remaining``; ``TTL`` it in a pipeline
    and read the answer with ``lockout_of``)."""
    return _auth_keys(prefix, ip)[1]


def lockout_of(ttl: int | None) -> int:
    """Seconds of lockout left from the lockout key's Redis ``TTL`` reply (−2 absent, −1 no
    expiry, None: no reply) → 0 when not locked."""
    return max(0, int(ttl or 0))


async def lockout_remaining(redis: Redis, prefix: str, ip: str) -> int:
    """Seconds this IP is still locked out of authenticated endpoints (0 = not locked)."""
    return lockout_of(await redis.ttl(lockout_key(prefix, ip)))


async def record_auth_failure(redis: Redis, prefix: str, ip: str) -> int:
    return int(await redis.eval(_AUTH_FAIL_LUA, 3, *_auth_keys(prefix, ip), AUTH_FAILURES_MAX,
                                AUTH_FAILURE_WINDOW_S, AUTH_LOCKOUT_BASE_S, AUTH_LOCKOUT_MAX_S))
