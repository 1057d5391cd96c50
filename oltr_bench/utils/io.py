"""Atomic output: a file or directory either appears complete or not at all.

Files are written to a temporary sibling and moved into place with ``os.replace``; directories
are built under a temporary sibling name and renamed when complete. A failure or Ctrl-C leaves
nothing that looks like finished output (the temporary sibling is removed).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from oltr_bench.errors import OltrError

log = logging.getLogger(__name__)

WRITE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                errno.EFBIG: "the file is larger than this process may write", errno.EACCES: "permission denied",
                errno.EPERM: "not permitted", errno.EROFS: "the file system is read-only",
                errno.EISDIR: "it is a directory, expected a file name", errno.ENOTDIR: "a part of the path is a file, not a folder",
                errno.EEXIST: "a part of the path is a file, not a folder"}  # mkdir(exist_ok=True) of a file


class WriteError(OltrError):
    """A file or folder could not be written (disk full, no permission, a folder where a file belongs)."""


def write_error(path: str | os.PathLike | None, exc: OSError) -> WriteError:
    """The one-line error for a write to ``path`` that failed with ``exc``."""
    reason = WRITE_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
    return WriteError(f"cannot write {path or 'a file'}: {reason}; nothing was left half-written there; expected a writable "
                      "location with free space")


def _umask() -> int:
    """The process's umask (reading it means setting it; it is restored at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose contents appear at ``path`` only if the block completes.

    For writers that stream (e.g. ``numpy.savez`` of a large archive) instead of building the
    whole file in memory first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
            raise write_error(path, exc) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers never see a partial file)."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """The one JSON style of every file oltr-bench writes (sorted keys are *not* used: order is meaningful)."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


class DirectoryTaken(OltrError):
    """Another process created the directory while this one was building it."""


OWNER = ".owner.json"  # inside a .partial folder while it is being built: which process builds it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove the ``.<name>.*.partial`` folders of ``final`` whose builder provably died: built on
    this host by a process that no longer exists. Others (another host, an older oltr-bench
    without an owner file, a live builder) are left alone. Returns what was removed."""
    removed = []
    for partial in final.parent.glob(f".{final.name}.*.partial"):
        try:
            owner = json.loads((partial / OWNER).read_text(encoding="utf-8"))
            pid, host = int(owner["pid"]), str(owner["host"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if host == socket.gethostname() and not _alive(pid):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` only if the block completes.

    With ``overwrite`` an existing ``final`` is replaced (after the new one is complete);
    otherwise an existing ``final`` is an error raised by the caller beforehand, and one that
    another process created meanwhile raises :class:`DirectoryTaken` (its directory is kept).
    Leftovers of builders that died are removed first (:func:`remove_stale_partials`).
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_partials(final):
            log.info("removed %s, left by a build that was killed", stale)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        (tmp / OWNER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), encoding="utf-8")
    except OSError as exc:
        raise write_error(final, exc) from None
    try:
        # mkdtemp makes 0700; split directories and sites are shared like any directory made with mkdir.
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        (tmp / OWNER).unlink()
        if final.exists():
            if not overwrite:
                raise DirectoryTaken(f"{final} was created by another process while this one was building it; "
                                     "that one is kept and this one's result was discarded")
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise DirectoryTaken(f"{final} was created by another process while this one was building it; "
                                     "that one is kept and this one's result was discarded") from None
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
            raise write_error(final, exc) from None
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
