"""API errors: one exception type for handlers, and the single table that maps library
errors (``wavis.errors``) to HTTP statuses. The ``errors`` middleware is the only place
that turns exceptions into error bodies (see ``middleware.py``)."""

from __future__ import annotations

import json
from typing import Any

from wavis import errors as lib


class ApiError(Exception):
    """An error with a stable API ``code``; raised by handlers and middlewares."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def unauthorized() -> ApiError:
    # Same code and message for missing, unknown, expired and revoked keys (no probing).
    return ApiError(401, "UNAUTHORIZED", "missing or invalid API key",
                    headers={"WWW-Authenticate": 'Bearer realm="wavis"'})


def forbidden(message: str = "this API key's role may not do that") -> ApiError:
    return ApiError(403, "FORBIDDEN", message)


def not_found(what: str = "resource", **details: Any) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found", details or None)


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds the limit of {limit} bytes",
                    {"limit_bytes": limit})


def schema_mismatch(errors: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "SCHEMA_MISMATCH", "request body does not match the schema", {"errors": errors})


def upstream_unavailable(name: str) -> ApiError:
    return ApiError(502, "UPSTREAM_UNAVAILABLE", f"{name} is unavailable, try again later",
                    {"upstream": name})


# Library error class → HTTP status. Looked up along the MRO, so a subclass added later
# inherits its parent's status while keeping its own ``code``.
LIBRARY_STATUS: dict[type[lib.WavisError], int] = {
    lib.ParameterError: 400,  # INVALID_PARAMS
    lib.InsufficientSecurityError: 400,  # INSUFFICIENT_SECURITY
    lib.EncodingError: 400,  # INVALID_PLAINTEXT
    lib.KeyMismatchError: 400,  # KEY_MISMATCH
    lib.LevelError: 400,  # LEVEL_MISMATCH
    lib.ScaleMismatchError: 400,  # SCALE_MISMATCH
    lib.DepthExhaustedError: 409,  # DEPTH_EXHAUSTED
    lib.ScaleOverflowError: 400,  # SCALE_OVERFLOW
    lib.PrecisionError: 409,  # INSUFFICIENT_PRECISION
    lib.MissingKeyError: 400,  # MISSING_KEY
    lib.MissingRotationKeyError: 400,  # MISSING_ROTATION_KEY
    lib.KeyFormatError: 400,  # INVALID_KEY
    lib.CiphertextFormatError: 400,  # INVALID_CIPHERTEXT
    lib.ShapeError: 400,  # INVALID_SHAPE
    lib.BackendError: 503,  # BACKEND_UNAVAILABLE
    lib.WavisError: 400,
}


def from_library_error(exc: lib.WavisError) -> ApiError:
    status = 400
    for cls in type(exc).__mro__:
        if cls in LIBRARY_STATUS:
            status = LIBRARY_STATUS[cls]
            break
    details = _jsonable(getattr(exc, "details", None) or {})
    message = getattr(exc, "message", None) or str(exc) or exc.code
    return ApiError(status, exc.code, message, details or None)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in details.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = str(v)
        out[str(k)] = v
    return out
