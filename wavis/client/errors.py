"""Typed errors of the SDK. Every error answer of the server becomes an :class:`ApiError`
subclass chosen by HTTP status, or by the stable ``code`` where the code names a case a caller
handles on its own (API.md §1 "Error body"). Each carries ``status``, ``code``, ``message``,
``request_id`` (quote it in support requests), ``details`` and ``retry_after`` (seconds, from
the ``Retry-After`` header, or None).

    try:
        client.multiply(key_id, a, b)
    except DepthExhaustedError:       # 409 DEPTH_EXHAUSTED: bootstrap, or re-encrypt fresh
        ...
    except ApiError as exc:           # anything else the server refused
        print(exc.code, exc.request_id)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError", "BadRequestError", "AuthenticationError", "PaymentRequiredError", "PermissionDeniedError",
    "NotFoundError", "ConflictError", "PayloadTooLargeError", "UnsupportedMediaTypeError", "SchemaMismatchError",
    "RateLimitedError", "ServerError", "ServiceUnavailableError", "ConnectionFailedError",
    "DepthExhaustedError", "MissingRotationKeyError", "MissingKeyError", "KeyMismatchError", "BlindModeError",
    "NotServerProducedError", "IdempotencyInProgressError", "QuotaExhaustedError", "BudgetExceededError",
    "JobFailedError", "error_for",
]


class ApiError(Exception):
    """An error answer from the server (or, for :class:`ConnectionFailedError`, no answer)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None,
                 details: dict[str, Any] | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status, self.code, self.message = status, code, message
        self.request_id, self.details, self.retry_after = request_id, details or {}, retry_after


class BadRequestError(ApiError):
    """400: well-formed but semantically invalid (INVALID_PARAMS, SCALE_MISMATCH, …)."""


class AuthenticationError(ApiError):
    """401 UNAUTHORIZED: missing, unknown, expired or revoked API key."""


class PaymentRequiredError(ApiError):
    """402: QUOTA_EXHAUSTED or BUDGET_EXCEEDED (never retried)."""


class PermissionDeniedError(ApiError):
    """403: the key's role may not do this (FORBIDDEN), or NOT_SERVER_PRODUCED."""


class NotFoundError(ApiError):
    """404: no such resource in this account."""


class ConflictError(ApiError):
    """409: the resource's state forbids it (DEPTH_EXHAUSTED, BLIND_KEY, …)."""


class PayloadTooLargeError(ApiError):
    """413: PAYLOAD_TOO_LARGE or REQUEST_TOO_LARGE (``details.limit_bytes``)."""


class UnsupportedMediaTypeError(ApiError):
    """415: a body that is not JSON, or a content encoding the server does not read."""


class SchemaMismatchError(ApiError):
    """422 SCHEMA_MISMATCH (``details.errors`` lists the fields) or IDEMPOTENCY_KEY_REUSED."""


class RateLimitedError(ApiError):
    """429: a rate-limit window, a queue quota or a heavy-job cap; ``retry_after`` says when."""


class ServerError(ApiError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503: MAINTENANCE or OVERLOADED; ``retry_after`` says when."""


class ConnectionFailedError(ApiError):
    """No HTTP answer: the server cannot be reached (``status`` 0, code ``CONNECTION_FAILED``)."""


class DepthExhaustedError(ConflictError):
    """409 DEPTH_EXHAUSTED: no level left for this operation (bootstrap, or re-encrypt)."""


class IdempotencyInProgressError(ConflictError):
    """409 IDEMPOTENCY_IN_PROGRESS: the same Idempotency-Key is still running (retried)."""


class BlindModeError(ConflictError):
    """409 BLIND_KEY / BLIND_SESSION: the server holds no secret key here; decrypt locally."""


class MissingRotationKeyError(BadRequestError):
    """400 MISSING_ROTATION_KEY: ``details`` names the Galois steps to generate."""


class MissingKeyError(BadRequestError):
    """400 MISSING_KEY: ``details.missing`` names the evaluation keys to add."""


class KeyMismatchError(BadRequestError):
    """400 KEY_MISMATCH: operands under different keys or parameters."""


class NotServerProducedError(PermissionDeniedError):
    """403 NOT_SERVER_PRODUCED: the server decrypts only what it produced itself."""


class QuotaExhaustedError(PaymentRequiredError):
    """402 QUOTA_EXHAUSTED."""


class BudgetExceededError(PaymentRequiredError):
    """402 BUDGET_EXCEEDED."""


class JobFailedError(ApiError):
    """An asynchronous job ended FAILED (``details`` holds the job's error)."""


_BY_CODE: dict[str, type[ApiError]] = {
    "DEPTH_EXHAUSTED": DepthExhaustedError, "IDEMPOTENCY_IN_PROGRESS": IdempotencyInProgressError,
    "BLIND_KEY": BlindModeError, "BLIND_SESSION": BlindModeError,
    "MISSING_ROTATION_KEY": MissingRotationKeyError, "MISSING_KEY": MissingKeyError,
    "KEY_MISMATCH": KeyMismatchError, "NOT_SERVER_PRODUCED": NotServerProducedError,
    "QUOTA_EXHAUSTED": QuotaExhaustedError, "BUDGET_EXCEEDED": BudgetExceededError,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError, 401: AuthenticationError, 402: PaymentRequiredError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError,
    422: SchemaMismatchError, 429: RateLimitedError, 503: ServiceUnavailableError,
}


def error_for(status: int, code: str) -> type[ApiError]:
    """The exception class for an error answer (by code first, then by status)."""
    cls = _BY_CODE.get(code)
    if cls is not None and _BY_STATUS.get(status, ServerError if status >= 500 else ApiError) in cls.__mro__:
        return cls
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ApiError
