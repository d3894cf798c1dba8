"""Typed application and request state keys (``web.AppKey``) shared by the service modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

if TYPE_CHECKING:
    from .engine import ComputeEngine
    from .settings import Settings

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
DB: web.AppKey[asyncpg.Pool] = web.AppKey("db")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
ENGINE: web.AppKey["ComputeEngine"] = web.AppKey("engine")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
SHUTTING_DOWN: web.AppKey[list[bool]] = web.AppKey("shutting_down")  # one-element box

# Per-request keys (plain strings: aiohttp's Request is a MutableMapping).
REQUEST_ID = "wavis.request_id"
PRINCIPAL = "wavis.principal"
RESPONSE_HEADERS = "wavis.response_headers"  # headers every middleware wants on the final response
BODY_LIMIT = "wavis.body_limit"
BODY_BYTES = "wavis.body_bytes"
