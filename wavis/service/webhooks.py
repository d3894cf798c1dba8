"""Webhook events: the outbox. ``emit_event`` is THE way any part of the service emits an event.

An event is written to PostgreSQL in the caller's own transaction, next to the change that
caused it (the transactional-outbox pattern): if the transaction commits the event exists and
the delivery worker (``webhook_worker.py``) will deliver it; if it rolls back — or the process
dies before the commit — neither the change nor the event exists. Nothing is sent from the
request path, so an emitting handler never waits on a customer's server.

Usage (inside whatever transaction makes the change)::

    from wavis.service.webhooks import emit_event

    async with conn.transaction():
        await conn.execute("UPDATE jobs SET status = 'done' …")
        await emit_event(conn, account_id, "compute_complete",
                         {"job_id": job_id, "status": "done", "result_ids": ["ct_…"]})

Fan-out happens here: one ``webhook_events`` row (its own stable ``evt_…`` id) per enabled
endpoint of the account that subscribes to the type (an endpoint with an empty ``events``
list gets every type). With no such endpoint nothing is written. The worker POSTs
``{"id", "type", "created_at", "account_id", "data": payload}``; the payload must be a small
JSON object of ids and numbers (never ciphertext bytes, keys or secrets): it is stored as
``jsonb`` and sent to a third party.

The events, their triggers, dedupe rules and payloads are tabled in docs/service.md
("Webhooks").
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import asyncpg

from .ids import new_id

# API.md, "Webhooks": every event type (``test`` is sent only by POST /webhooks/test).
EVENT_TYPES: tuple[str, ...] = (
    "compute_complete", "usage_alert", "limit_reached", "budget_alert", "key_created", "key_deleted",
    "key_rotated", "invoice_created", "invoice_paid", "invoice_failed", "test",
)
SUBSCRIBABLE: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t != "test")
MAX_PAYLOAD_BYTES = 16 * 1024  # a payload is ids and numbers; anything bigger is a bug in the emitter


class OutboxError(RuntimeError):
    """emit_event misused: unknown type, payload not a small JSON object, or no transaction."""


def _check(conn: asyncpg.Connection, event_type: str, payload: Mapping[str, Any]) -> None:
    if event_type not in EVENT_TYPES:
        raise OutboxError(f"unknown webhook event type {event_type!r} (one of {', '.join(EVENT_TYPES)})")
    if not isinstance(payload, Mapping):
        raise OutboxError("a webhook payload is a JSON object")
    try:
        size = len(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise OutboxError(f"webhook payload is not JSON: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise OutboxError(f"webhook payload of {size} bytes exceeds {MAX_PAYLOAD_BYTES} (send ids, not data)")
    if not conn.is_in_transaction():
        raise OutboxError("emit_event must run inside the transaction that makes the change (outbox)")


async def insert_events(conn: asyncpg.Connection, account_id: str, event_type: str, payload: Mapping[str, Any],
                        webhook_ids: Iterable[str]) -> list[tuple[str, str]]:
    """One pending event per endpoint in ``webhook_ids``; returns ``[(event_id, webhook_id)]``."""
    rows = [(new_id("evt"), account_id, wh, event_type, dict(payload)) for wh in webhook_ids]
    if rows:
        await conn.executemany(
            "INSERT INTO webhook_events (id, account_id, webhook_id, type, payload) VALUES ($1, $2, $3, $4, $5)",
            rows)
    return [(r[0], r[2]) for r in rows]


async def emit_event(conn: asyncpg.Connection, account_id: str, event_type: str,
                     payload: Mapping[str, Any]) -> list[str]:
    """Write ``event_type`` for ``account_id`` into the outbox, in the caller's transaction.

    Args:
        conn: an asyncpg connection INSIDE the transaction that makes the change (required).
        account_id: ``acct_…`` whose endpoints receive it.
        event_type: one of ``EVENT_TYPES``.
        payload: the event's ``data``: a JSON object of ids/numbers (≤ 16 KiB, never secrets
            or ciphertext bytes).

    Returns: the new ``evt_…`` ids, one per subscribed enabled endpoint (often none).

    Raises:
        OutboxError: unknown type, payload not a small JSON object, or no open transaction.
    """
    _check(conn, event_type, payload)
    targets = await conn.fetch(
        """SELECT id FROM webhooks WHERE account_id = $1 AND enabled
             AND (cardinality(events) = 0 OR $2 = ANY(events))
           ORDER BY created_at, id""", account_id, event_type)
    return [e for e, _ in await insert_events(conn, account_id, event_type, payload, [r["id"] for r in targets])]


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event_id: str, event_type: str, created_at: datetime, account_id: str,
               payload: Mapping[str, Any]) -> bytes:
    """The delivered body: compact JSON with sorted keys, byte-identical on every attempt."""
    doc = {"id": event_id, "type": event_type, "created_at": iso(created_at), "account_id": account_id,
           "data": payload}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


async def compute_complete_hook(conn: asyncpg.Connection, job: Any, outcome: Any) -> None:
    """The engine's completion hook (``jobs.register_completion_hook``): runs inside the
    transaction that marks a job COMPLETED or FAILED (once per job, never for a fenced-off late
    attempt) and emits ``compute_complete`` for asynchronous jobs — a synchronous caller already
    has its answer. The payload carries ids only: ``job_id``, ``kind``, ``operation``, ``status``
    (``COMPLETED``/``FAILED``, as ``GET /jobs/{id}``), ``result_ids`` (stored result ciphertexts,
    ``ct_…``; empty for TFHE jobs, whose outputs are read from ``GET /jobs/{id}``) and, for a
    failed job, ``error: {code, status}`` — never ciphertext bytes."""
    if not getattr(job, "is_async", False):
        return
    result = outcome.result or {}
    ids = [result["result_ciphertext_id"]] if isinstance(result.get("result_ciphertext_id"), str) else []
    ids += [r for r in (result.get("result_ciphertext_ids") or []) if isinstance(r, str)]
    payload: dict[str, Any] = {"job_id": job.id, "kind": job.kind, "operation": job.operation,
                               "status": outcome.status, "result_ids": ids}
    if outcome.error:
        payload["error"] = {"code": outcome.error.get("code"), "status": outcome.error.get("status")}
    await emit_event(conn, job.account_id, "compute_complete", payload)


def _register_completion_hook() -> None:
    from . import jobs  # noqa: PLC0415 - jobs imports nothing of ours

    # a synchronous job emits nothing (its caller has the answer): such jobs may complete in one
    # statement (jobs.complete_jobs)
    jobs.register_completion_hook(compute_complete_hook, applies=lambda job, outcome: bool(job.is_async))


_register_completion_hook()
