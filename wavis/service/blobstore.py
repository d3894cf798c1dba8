"""Durable blob storage for ciphertexts and results: one protocol, a filesystem implementation.

A blob is on durable storage when ``put`` returns: the service answers 201/200 only after that
(DESIGN.md §5: nothing the API confirmed lives only in Redis). Redis keeps a copy as a cache
(``ctstore``); PostgreSQL keeps the metadata, the LRU order and the quota accounting.

``BlobStore`` is the protocol: ``put`` (durable on return, replaces an existing blob),
``get`` (None when absent), ``delete`` (absent names are fine), ``names`` (for the orphan sweep).
Names are ``/``-separated segments of ``[A-Za-z0-9_.-]`` (no ``.``/``..`` segments), e.g.
``ct/acct_…/ct_…``, so they map one to one onto S3 object keys.

``FilesystemBlobStore`` (the embedded default, ``<data dir>/blobs``): write a temporary file in
the target directory, ``fsync`` it, ``rename`` it over the name (atomic on POSIX), ``fsync`` the
directory (so the rename itself survives a power cut) — the sequence SQLite and PostgreSQL use
for durable file replacement. A crash leaves either the old blob, the new one, or a ``.tmp``
file the sweep removes, never a torn blob. The file calls run in a worker thread (never on the
event loop). Several API processes may share the directory (NFS/EFS: then each process must
see the others' renames; an object store is the better fit there).

An S3-compatible store drops in by implementing the same four coroutines (a well-kept client
such as ``aiobotocore``: PutObject is durable when it answers 200); ``open_store`` picks the
implementation from ``WAVIS_BLOB_STORE`` — only ``file://`` (or a plain path) exists now.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
from pathlib import Path
from typing import AsyncIterator, Protocol, runtime_checkable

from .errors import ApiError

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def check_name(name: str) -> str:
    """A valid blob name, or ValueError (never a path outside the store)."""
    parts = name.split("/")
    if not parts or any(not _SEGMENT.match(p) or p in (".", "..") for p in parts):
        raise ValueError(f"invalid blob name {name[:80]!r}")
    return name


def storage_full() -> ApiError:
    return ApiError(507, "INSUFFICIENT_STORAGE", "the ciphertext store is out of space; retry later",
                    headers={"Retry-After": "60"})


@runtime_checkable
class BlobStore(Protocol):
    """Durable blobs by name (see the module docstring)."""

    async def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``; durable when it returns. Raises ApiError 507 when full."""

    async def get(self, name: str) -> bytes | None:
        """The blob, or None when there is none under ``name``."""

    async def delete(self, names: list[str]) -> int:
        """Delete the blobs (absent ones are skipped); returns how many existed."""

    def names(self, prefix: str = "") -> AsyncIterator[tuple[str, float]]:
        """(name, modification time in s since the epoch) of every stored blob under ``prefix``."""

    async def close(self) -> None: ...


class FilesystemBlobStore:
    """Blobs as files under ``root`` (written with fsync + atomic rename + directory fsync)."""

    TMP_SUFFIX = ".tmp"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    # --- synchronous parts (run in a worker thread) -----------------------------------------

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _put_sync(self, name: str, data: bytes) -> None:
        path = self._path(name)
        parent = path.parent
        if not parent.is_dir():
            parent.mkdir(parents=True, exist_ok=True)
            self._fsync_dir(parent.parent)  # the new directory entry itself
        tmp = parent / f".{path.name}.{secrets.token_hex(4)}{self.TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._fsync_dir(parent)

    def _get_sync(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _delete_sync(self, names: list[str]) -> int:
        n = 0
        parents = set()
        for name in names:
            path = self._path(name)
            try:
                path.unlink()
                n += 1
                parents.add(path.parent)
            except FileNotFoundError:
                pass
        for parent in parents:
            try:
                self._fsync_dir(parent)
            except FileNotFoundError:
                pass
        return n

    def _list_sync(self, prefix: str) -> list[tuple[str, float]]:
        base = self.root / prefix if prefix else self.root
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                p = Path(dirpath) / f
                try:
                    mtime = p.stat().st_mtime
                except FileNotFoundError:
                    continue
                out.append((p.relative_to(self.root).as_posix(), mtime))
        return out

    # --- the protocol -------------------------------------------------------------------

    async def put(self, name: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._put_sync, name, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise storage_full() from None
            raise

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._get_sync, name)

    async def delete(self, names: list[str]) -> int:
        if not names:
            return 0
        return await asyncio.to_thread(self._delete_sync, list(names))

    async def names(self, prefix: str = "") -> AsyncIterator[tuple[str, float]]:
        for item in await asyncio.to_thread(self._list_sync, prefix):
            yield item

    async def close(self) -> None:
        return None


def open_store(spec: str | None, data_dir: Path) -> BlobStore:
    """The blob store named by ``WAVIS_BLOB_STORE``: unset → ``<data dir>/blobs``; a path or a
    ``file://`` URL → that directory. Other schemes (``s3://``) are not built yet."""
    if not spec:
        return FilesystemBlobStore(Path(data_dir) / "blobs")
    if spec.startswith("file://"):
        return FilesystemBlobStore(Path(spec[len("file://"):]))
    if "://" in spec:
        raise ValueError(f"WAVIS_BLOB_STORE: unsupported store {spec.split('://')[0]!r} (only file:// is built)")
    return FilesystemBlobStore(Path(spec))
