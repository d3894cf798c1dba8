"""Small helpers shared by route modules."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from ..state import DB, SETTINGS


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True).encode(), status=status,
        content_type="application/json", headers=headers,
    )


@asynccontextmanager
async def db(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, with the upstream timeout on acquiring it (→ 502, never a hang)."""
    timeout = request.app[SETTINGS].upstream_timeout_s
    async with request.app[DB].acquire(timeout=timeout) as conn:
        yield conn


@asynccontextmanager
async def upstream_timeout(request: web.Request) -> AsyncIterator[None]:
    async with asyncio.timeout(request.app[SETTINGS].upstream_timeout_s):
        yield
