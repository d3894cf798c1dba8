"""Webhooks (API.md "Webhooks"): endpoints (POST/GET/PATCH/DELETE /webhooks,
PATCH /webhooks/{id}/regenerate-secret), POST /webhooks/test, the delivery history
(GET /webhooks/events, GET /webhooks/events/{event_id}) and POST /webhooks/events/{event_id}/redeliver.

The static paths are registered before ``/webhooks/{webhook_id}`` (aiohttp matches in order), and
that template accepts only ``wh_…`` ids (anything else is 404). Delivery itself is the
worker's job (``webhook_worker.py``); these handlers only write rows.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import asyncpg
from aiohttp import web

from .. import pagination, repo_webhooks as rw, ssrf
from ..access import Access, access, doc, principal
from ..bodies import parse
from ..errors import ApiError, not_found
from ..ids import utcnow
from ..schemas import ErrorResponse
from ..schemas_webhooks import (AttemptItem, EventDetail, EventItem, EventList, WebhookCreated, WebhookCreateRequest,
                                WebhookDeleted, WebhookItem, WebhookList, WebhookSecret, WebhookTestSent,
                                WebhookUpdateRequest)
from ..sealing import Sealer
from ..state import SETTINGS, WEBHOOK_RESOLVER
from ..webhooks import EVENT_TYPES, insert_events
from .util import db, json_response

routes = web.RouteTableDef()

SECRET_OVERLAP = timedelta(hours=24)
WEBHOOK_ID_RE = re.compile(r"^wh_[0-9a-f]{24}$")
EVENT_ID_RE = re.compile(r"^evt_[0-9a-f]{24}$")
STATUSES = ("pending", "delivered", "failed")
EVENTS_QUERY = {**pagination.QUERY_DOC,
                "webhook_id": {"type": "string", "pattern": WEBHOOK_ID_RE.pattern},
                "status": {"type": "string", "enum": list(STATUSES)},
                "type": {"type": "string", "enum": list(EVENT_TYPES)}}


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def resolver_of(app: web.Application):
    """The resolver webhook hosts are checked with (``WEBHOOK_RESOLVER`` when a test set one)."""
    resolver = app.get(WEBHOOK_RESOLVER)
    if resolver is None:
        from aiohttp.resolver import ThreadedResolver  # noqa: PLC0415

        resolver = ThreadedResolver()
    return resolver


async def vet_url(request: web.Request, url: str) -> str:
    """400 INVALID_URL unless ``url`` passes the SSRF guard now (resolved, every address public)."""
    settings = request.app[SETTINGS]
    try:
        target = ssrf.check_url(url, settings.webhooks_allow_loopback)
        await ssrf.resolve_and_vet(target, resolver_of(request.app), settings.webhooks_allow_loopback)
    except ssrf.TargetError as exc:
        raise ApiError(400, "INVALID_URL", f"webhook URL refused: {exc.message}",
                       {"field": "url", "reason": exc.reason}) from None
    return url


def webhook_item(row: asyncpg.Record, model=WebhookItem, **extra) -> WebhookItem:
    ends = row["old_secret_expires_at"]
    return model(
        webhook_id=row["id"], url=row["url"], events=list(row["events"]),
        status="active" if row["enabled"] else "disabled", disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"], failing_since=row["failing_since"],
        secret_rotation_ends_at=ends if ends is not None and ends > utcnow() else None,
        created_at=row["created_at"], updated_at=row["updated_at"], **extra)


def event_item(row: asyncpg.Record, model=EventItem, **extra) -> EventItem:
    return model(
        event_id=row["id"], webhook_id=row["webhook_id"], type=row["type"], status=row["status"],
        attempts=row["attempts"], last_status_code=row["last_status_code"], last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        last_attempt_at=row["last_attempt_at"], delivered_at=row["delivered_at"], created_at=row["created_at"],
        **extra)


def webhook_id_of(request: web.Request) -> str:
    webhook_id = request.match_info["webhook_id"]
    if not WEBHOOK_ID_RE.match(webhook_id):
        raise not_found("webhook")
    return webhook_id


def event_id_of(request: web.Request) -> str:
    event_id = request.match_info["event_id"]
    if not EVENT_ID_RE.match(event_id):
        raise not_found("webhook event")
    return event_id


# --- static paths first --------------------------------------------------------------------

@routes.post("/webhooks/test")
@access(Access.WRITE_PLUS)
@doc("Send a test event to every enabled webhook of the account", responses={200: WebhookTestSent})
async def send_test(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        async with conn.transaction():
            ids = await rw.enabled_webhook_ids(conn, p.account_id)
            sent = await insert_events(conn, p.account_id, "test",
                                       {"message": "a test event from WAVIS", "api_key_id": p.api_key_id}, ids)
    return json_response(WebhookTestSent(event_ids=[e for e, _ in sent],
                                         deliveries=[{"event_id": e, "webhook_id": w} for e, w in sent]))


@routes.get("/webhooks/events")
@access(Access.READ_PLUS)
@doc("Delivery history (paginated; filters webhook_id, status, type)", responses={200: EventList, 400: ErrorResponse},
     query=EVENTS_QUERY)
async def list_events(request: web.Request) -> web.Response:
    p = principal(request)
    q = request.query
    webhook_id, status, event_type = q.get("webhook_id"), q.get("status"), q.get("type")
    if webhook_id is not None and not WEBHOOK_ID_RE.match(webhook_id):
        raise ApiError(400, "INVALID_PARAMS", "webhook_id must be a wh_… id", {"param": "webhook_id"})
    if status is not None and status not in STATUSES:
        raise ApiError(400, "INVALID_PARAMS", f"status must be one of {', '.join(STATUSES)}", {"param": "status"})
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ApiError(400, "INVALID_PARAMS", "unknown event type", {"param": "type"})
    scope = pagination.scope_of("webhook_events", p.account_id)
    page = pagination.page_from(request, scope)
    async with db(request) as conn:
        rows = await rw.list_events(conn, p.account_id, page.limit, page.after, webhook_id=webhook_id,
                                    status=status, event_type=event_type)
    return json_response(EventList(**pagination.page_body(request, scope, page, rows, event_item)))


@routes.get("/webhooks/events/{event_id}")
@access(Access.READ_PLUS)
@doc("One event with its payload and every delivery attempt [ours]",
     responses={200: EventDetail, 404: ErrorResponse})
async def get_event(request: web.Request) -> web.Response:
    p = principal(request)
    event_id = event_id_of(request)
    async with db(request) as conn:
        row = await rw.get_event(conn, p.account_id, event_id)
        if row is None:
            raise not_found("webhook event")
        payload = await conn.fetchval("SELECT payload FROM webhook_events WHERE id = $1", event_id)
        attempts = await rw.list_attempts(conn, event_id)
    return json_response(event_item(row, EventDetail, data=payload,
                                    delivery_attempts=[AttemptItem(**dict(a)) for a in attempts]))


@routes.post("/webhooks/events/{event_id}/redeliver")
@access(Access.WRITE_PLUS)
@doc("Send one event to its endpoint again (same event id, a fresh retry schedule)",
     responses={200: EventItem, 404: ErrorResponse, 409: ErrorResponse})
async def redeliver(request: web.Request) -> web.Response:
    p = principal(request)
    event_id = event_id_of(request)
    async with db(request) as conn:
        row, queued = await rw.redeliver(conn, p.account_id, event_id)
    if row is None:
        raise not_found("webhook event")
    if not queued:
        raise ApiError(409, "WEBHOOK_DISABLED", "the event's webhook is disabled; enable it first (PATCH enabled: true)",
                       {"webhook_id": row["webhook_id"]})
    return json_response(event_item(row))


# --- the collection and one endpoint --------------------------------------------------------

@routes.post("/webhooks")
@access(Access.WRITE_PLUS)
@doc("Register a webhook endpoint (at most 10 per account); the secret is shown only here",
     request=WebhookCreateRequest, responses={201: WebhookCreated, 400: ErrorResponse, 409: ErrorResponse})
async def create_webhook(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, WebhookCreateRequest)
    settings = request.app[SETTINGS]
    url = await vet_url(request, req.url)
    secret = req.secret or new_secret()
    sealer = Sealer(settings.master_key)
    async with db(request) as conn:
        row = await rw.create_webhook(
            conn, account_id=p.account_id, url=url, events=sorted(set(req.events)),
            seal=lambda wh, acct: sealer.seal(secret.encode(), rw.secret_aad(wh, acct)),
            max_endpoints=settings.webhook_max_endpoints)
    if row is None:
        raise ApiError(409, "TOO_MANY_WEBHOOKS", f"at most {settings.webhook_max_endpoints} webhooks per account",
                       {"limit": settings.webhook_max_endpoints})
    return json_response(webhook_item(row, WebhookCreated, secret=None if req.secret else secret), status=201)


@routes.get("/webhooks")
@access(Access.READ_PLUS)
@doc("List this account's webhooks (never their secrets)", responses={200: WebhookList, 400: ErrorResponse},
     query=pagination.QUERY_DOC)
async def list_webhooks(request: web.Request) -> web.Response:
    p = principal(request)
    scope = pagination.scope_of("webhooks", p.account_id)
    page = pagination.page_from(request, scope)
    async with db(request) as conn:
        rows = await rw.list_webhooks(conn, p.account_id, page.limit, page.after)
    return json_response(WebhookList(**pagination.page_body(request, scope, page, rows, webhook_item)))


@routes.get("/webhooks/{webhook_id}")
@access(Access.READ_PLUS)
@doc("One webhook", responses={200: WebhookItem, 404: ErrorResponse})
async def get_webhook(request: web.Request) -> web.Response:
    p = principal(request)
    webhook_id = webhook_id_of(request)
    async with db(request) as conn:
        row = await rw.get_webhook(conn, p.account_id, webhook_id)
    if row is None:
        raise not_found("webhook")
    return json_response(webhook_item(row))


@routes.patch("/webhooks/{webhook_id}")
@access(Access.WRITE_PLUS)
@doc("Change a webhook: only the fields present; events replaces the list; a new url is re-validated",
     request=WebhookUpdateRequest, responses={200: WebhookItem, 400: ErrorResponse, 404: ErrorResponse})
async def update_webhook(request: web.Request) -> web.Response:
    p = principal(request)
    webhook_id = webhook_id_of(request)
    req = await parse(request, WebhookUpdateRequest)
    fields = req.model_fields_set
    if "url" in fields and req.url is None or "events" in fields and req.events is None \
            or "enabled" in fields and req.enabled is None:
        raise ApiError(400, "INVALID_PARAMS", "url, events and enabled cannot be null")
    async with db(request) as conn:
        if await rw.get_webhook(conn, p.account_id, webhook_id) is None:
            raise not_found("webhook")
    url = await vet_url(request, req.url) if req.url is not None else None
    async with db(request) as conn:
        row = await rw.update_webhook(conn, p.account_id, webhook_id, url=url,
                                      events=sorted(set(req.events)) if req.events is not None else None,
                                      enabled=req.enabled)
    if row is None:
        raise not_found("webhook")
    return json_response(webhook_item(row))


@routes.delete("/webhooks/{webhook_id}")
@access(Access.WRITE_PLUS)
@doc("Delete a webhook (its pending events and history go with it)",
     responses={200: WebhookDeleted, 404: ErrorResponse})
async def delete_webhook(request: web.Request) -> web.Response:
    p = principal(request)
    webhook_id = webhook_id_of(request)
    async with db(request) as conn:
        found = await rw.delete_webhook(conn, p.account_id, webhook_id)
    if not found:
        raise not_found("webhook")
    return json_response(WebhookDeleted(deleted=True))


@routes.patch("/webhooks/{webhook_id}/regenerate-secret")
@access(Access.WRITE_PLUS)
@doc("New signing secret, shown once; the old one keeps signing (a second signature) for 24 h",
     responses={200: WebhookSecret, 404: ErrorResponse})
async def regenerate_secret(request: web.Request) -> web.Response:
    p = principal(request)
    webhook_id = webhook_id_of(request)
    secret = new_secret()
    sealed = Sealer(request.app[SETTINGS].master_key).seal(secret.encode(), rw.secret_aad(webhook_id, p.account_id))
    async with db(request) as conn:
        row = await rw.regenerate_secret(conn, p.account_id, webhook_id, sealed, SECRET_OVERLAP)
    if row is None:
        raise not_found("webhook")
    return json_response(WebhookSecret(webhook_id=webhook_id, secret=secret,
                                       old_secret_expires_at=row["old_secret_expires_at"]))
