"""Typed error hierarchy of the WAVIS library.

Every error carries a stable ``code`` (UPPER_SNAKE) that the service maps to one API error
code (see ``wavis.service``); the library itself never imports anything HTTP.
``details`` is a JSON-able dict with machine-readable context (never secrets).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class WavisError(Exception):
    """Base class of every error the library raises on purpose."""

    code = "WAVIS_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ParameterError(WavisError, ValueError):
    """Parameters are malformed or out of their documented range."""

    code = "INVALID_PARAMS"


class InsufficientSecurityError(ParameterError):
    """The modulus chain is too large for the ring degree at the requested security level
    (Homomorphic Encryption Standard, 2018, Table 1). ``details['max_depth']`` is the
    largest depth that fits (or -1 if none)."""

    code = "INSUFFICIENT_SECURITY"


class EncodingError(WavisError, ValueError):
    """Values cannot be encoded: NaN/inf, too many values, or the scaled values overflow."""

    code = "INVALID_PLAINTEXT"


class KeyMismatchError(WavisError, ValueError):
    """Operands belong to different keys or parameter sets (fingerprints differ)."""

    code = "KEY_MISMATCH"


class LevelError(WavisError, ValueError):
    """Operands are at incompatible levels (e.g. a plaintext encoded for another level)."""

    code = "LEVEL_MISMATCH"


class ScaleMismatchError(WavisError, ValueError):
    """Operand scales differ by more than 2^-20 relative."""

    code = "SCALE_MISMATCH"


class DepthExhaustedError(WavisError):
    """The operation needs a level the ciphertext no longer has."""

    code = "DEPTH_EXHAUSTED"


class ScaleOverflowError(WavisError, ValueError):
    """The result's scale would reach the modulus the ciphertext has left: its values would
    wrap modulo q and decrypt to garbage (e.g. a product without rescaling at level 0)."""

    code = "SCALE_OVERFLOW"


class PrecisionError(WavisError):
    """A flooded decryption would keep no bits: the noise flood that protects the key is as
    large as the values' units (``details['precision_bits']``)."""

    code = "INSUFFICIENT_PRECISION"


class MissingKeyError(WavisError):
    """A needed evaluation key is absent (e.g. relinearization or a Galois key)."""

    code = "MISSING_KEY"


class MissingRotationKeyError(MissingKeyError):
    """No Galois key (nor a composition of available ones) realises the rotation;
    ``details['steps']`` lists the steps needed."""

    code = "MISSING_ROTATION_KEY"


class CiphertextFormatError(WavisError, ValueError):
    """A serialized object is truncated, corrupted, of another type, or of another version."""

    code = "INVALID_CIPHERTEXT"


class KeyFormatError(CiphertextFormatError):
    """An uploaded key (a CKKS public or evaluation key, a TFHE server key) is not valid base64,
    truncated, corrupted, of another kind (e.g. a secret key) or of another version [ours]."""

    code = "INVALID_KEY"


@contextmanager
def key_blob(field: str) -> Iterator[None]:
    """Parse an uploaded key inside this block: a ``CiphertextFormatError`` raised by the wire
    format (``wavis.serialize``, ``wavis.tfhe.serialize``) becomes a ``KeyFormatError`` naming
    ``field`` (the key is what is malformed, not a ciphertext)."""
    try:
        yield
    except KeyFormatError:
        raise
    except CiphertextFormatError as exc:
        raise KeyFormatError(exc.message, **{"field": field, **exc.details}) from None


class ShapeError(WavisError, ValueError):
    """An operand has the wrong shape (e.g. a matrix wider than the slot count)."""

    code = "INVALID_SHAPE"


class BackendError(WavisError):
    """A compute backend is unavailable or failed (e.g. CUDA requested without a device)."""

    code = "BACKEND_UNAVAILABLE"
