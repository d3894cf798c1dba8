"""Finding the running ``wavis serve``: where it listens and which data directory and database it
uses, so that ``wavis admin …``, the examples and the SDK's default URL reach the same server
without the user repeating ``--port`` or ``--data-dir``.

Every ``wavis serve`` writes one small JSON record, ``<state dir>/servers/<pid>.json`` (mode 0600),
once it listens, and removes it when it stops; a record whose process is gone is ignored and
deleted by the next reader. The state directory is ``WAVIS_STATE_DIR``, else
``$XDG_STATE_HOME/wavis``, else ``~/.local/state/wavis``. A record never holds a password: an
external database is recorded with its user, host, port and database name only.

Resolution order of the server URL (:func:`default_url`): ``WAVIS_URL``; the one running server,
or, of several, the one whose data directory is ``WAVIS_DATA_DIR`` or ``./.wavis-data``, else the
most recently started; else ``http://127.0.0.1:8080``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["ServerRecord", "state_dir", "register", "unregister", "running_servers", "default_url",
           "server_for_data_dir", "redact_url", "DEFAULT_URL", "DEFAULT_DATA_DIR"]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = Path(".wavis-data")


@dataclass(frozen=True)
class ServerRecord:
    """One running ``wavis serve``: ``url`` (base URL without ``/api/v1``), ``data_dir``
    (absolute), ``database`` (``"embedded"`` or a password-free URL of an external one),
    ``redis`` (likewise), ``pepper`` (``"file"``: ``<data_dir>/api_key_pepper``, or ``"env"``:
    ``WAVIS_API_KEY_PEPPER``), ``pid``, ``started_at`` (unix seconds)."""

    pid: int
    url: str
    data_dir: str
    database: str
    redis: str
    pepper: str
    started_at: float

    def describe_database(self) -> str:
        if self.database == "embedded":
            return f"the embedded PostgreSQL of {self.data_dir}"
        return f"the external PostgreSQL {self.database}"


def state_dir() -> Path:
    env = os.environ.get("WAVIS_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "wavis"


def redact_url(url: str) -> str:
    """``url`` without its password (and without a query, which may carry one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register(*, url: str, data_dir: Path, database: str, redis: str, pepper: str) -> Path | None:
    """Record this process as a running server; returns the record's path (None when the state
    directory cannot be written: discovery is a convenience, never a reason not to serve)."""
    rec = ServerRecord(os.getpid(), url, str(Path(data_dir).resolve()), database, redis, pepper, time.time())
    try:
        d = state_dir() / "servers"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / f"{rec.pid}.json"
        tmp = d / f".{rec.pid}.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(rec), f)
        os.replace(tmp, path)
        return path
    except OSError:
        return None


def unregister(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def running_servers() -> list[ServerRecord]:
    """Every live server's record, newest first (stale records are deleted)."""
    d = state_dir() / "servers"
    out = []
    try:
        files = list(d.glob("*.json"))
    except OSError:
        return []
    for path in files:
        try:
            rec = ServerRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if not _alive(rec.pid):
            unregister(path)
            continue
        out.append(rec)
    return sorted(out, key=lambda r: -r.started_at)


def server_for_data_dir(data_dir: Path) -> ServerRecord | None:
    """The running server whose data directory is ``data_dir``, if any."""
    want = str(Path(data_dir).resolve())
    return next((r for r in running_servers() if r.data_dir == want), None)


def default_url() -> str:
    """The server URL the SDK and the examples use when none is given (module docstring)."""
    env = os.environ.get("WAVIS_URL")
    if env:
        return env
    servers = running_servers()
    if not servers:
        return DEFAULT_URL
    if len(servers) > 1:
        home = Path(os.environ.get("WAVIS_DATA_DIR") or DEFAULT_DATA_DIR)
        mine = server_for_data_dir(home)
        if mine is not None:
            return mine.url
    return servers[0].url
