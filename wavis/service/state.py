"""Typed application and request state keys (``web.AppKey``) shared by the service modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

if TYPE_CHECKING:
    from .admission import Admission
    from .ctstore import CiphertextStore
    from .dispatch import Dispatcher
    from .pools import LoopLag
    from .engine import ComputeEngine
    from .worker import Worker
    from .metrics import Metrics
    from .settings import Settings

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
DB: web.AppKey[asyncpg.Pool] = web.AppKey("db")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
ENGINE: web.AppKey["ComputeEngine"] = web.AppKey("engine")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
SHUTTING_DOWN: web.AppKey[list[bool]] = web.AppKey("shutting_down")  # one-element box
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
CTSTORE: web.AppKey["CiphertextStore"] = web.AppKey("ctstore")  # durable blobs + Redis cache
ADMISSION: web.AppKey["Admission"] = web.AppKey("admission")  # admission by cost (admission.py)
PROBE_DB: web.AppKey[asyncpg.Pool] = web.AppKey("probe_db")  # /health's own connections
PROBE_REDIS: web.AppKey[Redis] = web.AppKey("probe_redis")
LOOP_LAG: web.AppKey["LoopLag"] = web.AppKey("loop_lag")  # event-loop lag (pools.LoopLag)
WEBHOOK_RESOLVER: web.AppKey[object] = web.AppKey("webhook_resolver")  # aiohttp AbstractResolver (tests inject one)
WEBHOOK_WORKER: web.AppKey[object] = web.AppKey("webhook_worker")  # the in-process DeliveryWorker, when running
DISPATCHER: web.AppKey["Dispatcher"] = web.AppKey("dispatcher")  # API processes: jobs in, replies out
WORKER: web.AppKey["Worker | None"] = web.AppKey("worker")  # embedded engine or `wavis worker`; None: remote

# Per-request keys: typed web.RequestKey where aiohttp has it (3.12+), plain strings before.
_RequestKey = getattr(web, "RequestKey", None)


def _rkey(name: str, t: type):
    return _RequestKey(name, t) if _RequestKey is not None else name


REQUEST_ID = _rkey("wavis.request_id", str)
TFHE_SESSION_IN_USE = _rkey("wavis.tfhe_session", str)  # refreshed again after a long evaluation
PRINCIPAL = _rkey("wavis.principal", object)
RESPONSE_HEADERS = _rkey("wavis.response_headers", object)  # headers wanted on the final response, errors included
BODY_LIMIT = _rkey("wavis.body_limit", int)
BODY_BYTES = _rkey("wavis.body_bytes", bytes)
REPLAYED = _rkey("wavis.idempotent_replayed", bool)  # the answer came from the idempotency store
EVICTED = _rkey("wavis.evicted_ciphertext_ids", list)  # ciphertexts the LRU store evicted for this request
BODY_READING = _rkey("wavis.body_reading", bool)
IDEM_JOB_KEY = _rkey("wavis.idem_job_key", str)  # this request's idempotency slot + fingerprint, for its job row
ADMITTED = _rkey("wavis.admitted", list)  # (account, cost) held by admission.admit until the answer
PARSED = _rkey("wavis.parsed_body", tuple)  # (model, instance) of the body validated by bodies.parse
LOCKOUT = _rkey("wavis.lockout_s", int)  # the client IP's brute-force lockout, read with the maintenance flag
USAGE = _rkey("wavis.usage", list)  # FCU charged by this request, metered in PostgreSQL on success (metering.py)  # a request-timeout while reading the body → 408
