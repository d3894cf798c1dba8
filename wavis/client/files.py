"""Key files with owner-only permissions."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(directory, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` with mode 0600 from the start (never readable by
    others, not even briefly; an existing file is replaced atomically); the directory is
    created 0700. Returns the path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / name
    tmp = d / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask did
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
