"""Structured logs: one JSON object per line with the request id, and a redaction filter so
no API key, ciphertext, key blob or other secret reaches a log line even by mistake."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

# API keys; long base64 runs (ciphertexts, key blobs, sealed secrets); hex runs ≥ 48 (peppers,
# master keys, HMACs). Ids like key_<24 hex> stay readable.
_REDACT = [
    (re.compile(r"wvs_(live|test|dev|trial)_[0-9A-Za-z]{4,}"), r"wvs_\1_[REDACTED]"),
    (re.compile(r"[A-Za-z0-9+/_-]{96,}={0,2}"), "[REDACTED-BLOB]"),
    (re.compile(r"\b[0-9a-fA-F]{48,}\b"), "[REDACTED-HEX]"),
]

_STD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "request_id"}


def redact(text: str) -> str:
    for rx, repl in _REDACT:
        text = rx.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so every formatter sees the safe text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not kill logging
            msg = str(record.msg)
        record.msg = redact(msg)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v if isinstance(v, (int, float, bool, type(None))) else redact(str(v))
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)
