"""Webhook signatures (API.md "Webhooks"): how WAVIS signs a delivery and how a receiver checks it.

Every delivery carries::

    X-WAVIS-Event-Id:  evt_…            (stable across retries: dedupe on it)
    X-WAVIS-Timestamp: 1733560000       (unix seconds of this attempt)
    X-WAVIS-Signature: sha256=<hex>     (HMAC-SHA256(secret, timestamp + "." + raw body), RFC 2104)

During the 24 h after a secret was regenerated the header carries two signatures separated by a
space, one under the new secret and one under the old, so a receiver holding either verifies.

Receiver (any framework; ``body`` must be the raw bytes, before JSON parsing)::

    from wavis.client import verify_signature, WebhookSignatureError
    try:
        verify_signature(secret, request.headers, body)
    except WebhookSignatureError:
        return 400
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "EVENT_ID_HEADER", "WebhookSignatureError", "signature",
           "verify_signature"]

SIGNATURE_HEADER = "X-WAVIS-Signature"
TIMESTAMP_HEADER = "X-WAVIS-Timestamp"
EVENT_ID_HEADER = "X-WAVIS-Event-Id"
SCHEME = "sha256="


class WebhookSignatureError(ValueError):
    """The delivery is not authentic or is stale: missing/malformed headers, a timestamp outside
    the tolerance, or no signature matching the secret."""


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def signature(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex of HMAC-SHA256(secret, f"{timestamp}." + body)>`` (what the server sends)."""
    mac = hmac.new(_bytes(secret), str(timestamp).encode() + b"." + bytes(body), hashlib.sha256)
    return SCHEME + mac.hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive; HTTP header names are not
        lname = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lname), None)
    return value


def verify_signature(secret: str | bytes, headers: Mapping[str, str], body: bytes, tolerance: int = 300,
                     *, now: float | None = None) -> bool:
    """Check a webhook delivery. Returns True, or raises WebhookSignatureError.

    Args:
        secret: the endpoint's signing secret (as shown at creation/regeneration).
        headers: the request headers (any mapping; names compared case-insensitively).
        body: the raw request body bytes.
        tolerance: seconds the ``X-WAVIS-Timestamp`` may differ from now (default 300); older
            (or future) deliveries are rejected, so a captured request cannot be replayed later.
        now: the current unix time (tests).

    Every signature in the header (one, or two during a secret's rotation overlap) is compared
    with ``hmac.compare_digest`` (constant time); any match verifies.
    """
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig_text = _header(headers, SIGNATURE_HEADER)
    if not ts_text or not sig_text:
        raise WebhookSignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    ts_text = ts_text.strip()
    if not ts_text.isdigit() or len(ts_text) > 12:
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is not unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(ts_text)) > tolerance:
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is outside the {tolerance} s tolerance")
    expected = signature(secret, ts_text, body).encode()
    matched = False
    for candidate in sig_text.split():
        # no early exit: every candidate is compared
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise WebhookSignatureError("no signature matches the secret")
    return True
