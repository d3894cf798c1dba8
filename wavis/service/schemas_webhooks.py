"""pydantic models of the Webhooks group (API.md "Webhooks"); the OpenAPI document is generated
from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .schemas import Request, Response
from .webhooks import SUBSCRIBABLE

EventType = Literal[SUBSCRIBABLE]  # type: ignore[valid-type]
AnyEventType = Literal[SUBSCRIBABLE + ("test",)]  # type: ignore[valid-type]
WebhookUrl = Annotated[str, Field(min_length=8, max_length=2048, description="https URL of a public host")]
Secret = Annotated[str, Field(min_length=32, max_length=256, pattern=r"^[\x21-\x7e]+$",
                              description="≥ 32 printable ASCII characters; generated when omitted")]
EventTypes = Annotated[list[EventType], Field(max_length=len(SUBSCRIBABLE),
                                             description="event types to receive; empty = every type")]


class SignatureInfo(Response):
    algorithm: Literal["HMAC-SHA256"] = "HMAC-SHA256"
    header: Literal["X-WAVIS-Signature"] = "X-WAVIS-Signature"
    format: Literal["sha256=<hex>"] = "sha256=<hex>"
    signed_payload: Literal["<X-WAVIS-Timestamp>.<raw body>"] = "<X-WAVIS-Timestamp>.<raw body>"


class WebhookCreateRequest(Request):
    url: WebhookUrl
    events: EventTypes = []
    secret: Secret | None = None


class WebhookUpdateRequest(Request):
    url: WebhookUrl | None = None
    events: EventTypes | None = None
    enabled: bool | None = Field(None, description="[ours] true re-enables a disabled endpoint; false pauses it")


class WebhookItem(Response):
    webhook_id: str
    url: str
    events: list[EventType]
    status: Literal["active", "disabled"]
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = Field(None, description="first failed attempt since the last success")
    secret_rotation_ends_at: datetime | None = Field(
        None, description="while set, deliveries carry signatures under both the new and the old secret")
    created_at: datetime
    updated_at: datetime
    signature_info: SignatureInfo = SignatureInfo()


class WebhookCreated(WebhookItem):
    secret: str | None = Field(None, description="only when the server generated it; shown once")


class WebhookList(Response):
    data: list[WebhookItem]
    next_cursor: str | None
    has_more: bool


class WebhookSecret(Response):
    webhook_id: str
    secret: str = Field(description="the new secret, shown once")
    old_secret_expires_at: datetime = Field(description="the previous secret signs deliveries until then")


class WebhookDeleted(Response):
    deleted: bool


class EventItem(Response):
    event_id: str
    webhook_id: str
    type: AnyEventType
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = Field(None, description="null once delivered or failed")
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime


class EventList(Response):
    data: list[EventItem]
    next_cursor: str | None
    has_more: bool


class AttemptItem(Response):
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None


class EventDetail(EventItem):
    data: dict = Field(description="the event's payload, as delivered")
    delivery_attempts: list[AttemptItem]


class WebhookTestSent(Response):
    event_ids: list[str] = Field(description="one test event (delivery) per enabled endpoint")
    deliveries: list[dict[str, str]] = Field(description="[{event_id, webhook_id}]")
