"""Checked reading of ``.npz`` archives sent by strangers (predictions, embeddings).

:func:`inspect` reads only the zip directory and each member's ``.npy`` header: names, dtypes and
shapes are known, and refused, before any array is allocated. It refuses a file that is not a
zip archive, members that are not ``.npy`` arrays, object arrays (they would need unpickling),
a member whose declared size does not match its header (a lie about the data), and a member
that decompresses to far more than it occupies on disk (:data:`MAX_RATIO`, a zip bomb). The
caller checks the shapes against what it expects (a split's ids and classes) and the total
against its memory budget, then :meth:`Archive.load` reads each array with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from numpy.lib import format as npformat

from oltr_bench.errors import OltrError

MAX_RATIO = 200  # uncompressed / stored bytes of one member: float scores compress ~1.1x, anything far above is a bomb
RATIO_FLOOR = 16 * 2**20  # members smaller than this are never refused for their ratio
MAX_STRING = 4096  # characters of one id


@dataclass(frozen=True)
class Member:
    """One array of an archive, as its header declares it."""

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> str:
        return f"dtype {self.dtype} with shape {self.shape}"


class Archive:
    """An opened ``.npz`` whose members' headers have been read (use as a context manager)."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, members: dict[str, Member], infos: dict[str, zipfile.ZipInfo]):
        self.path = path
        self._zf = zf
        self.members = members
        self._infos = infos

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zf.close()

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.members.values())

    def load(self, key: str) -> np.ndarray:
        """The array ``key`` (never unpickled)."""
        with self._zf.open(self._infos[key]) as fh:
            try:
                return npformat.read_array(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise OltrError(f"{self.path}: {key}: the array cannot be read ({exc}); expected an archive written by numpy.savez") from None

    def iter_rows(self, key: str, rows: int, stop: int | None = None) -> Iterator[np.ndarray]:
        """The first ``stop`` rows (default all) of the 2-D array ``key`` in blocks of at most ``rows``
        rows, read straight from the archive: memory holds one block, never the whole array."""
        member = self.members[key]
        n = member.shape[0] if stop is None else min(stop, member.shape[0])
        if member.fortran_order:  # column-major: rows are not contiguous on disk; read it whole
            array = self.load(key)
            for start in range(0, n, rows):
                yield np.ascontiguousarray(array[start:start + rows])
            return
        width = int(np.prod(member.shape[1:], dtype=np.int64))
        row_bytes = width * member.dtype.itemsize
        with self._zf.open(self._infos[key]) as fh:
            _header(fh)
            for start in range(0, n, rows):
                count = min(rows, n - start)
                data = fh.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise OltrError(f"{self.path}: {key}: the member ends after {start:,} rows; expected {n:,}")
                yield np.frombuffer(data, dtype=member.dtype).reshape(count, *member.shape[1:])


def _header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npformat.read_magic(fh)
    if version == (1, 0):
        return npformat.read_array_header_1_0(fh)
    if version == (2, 0):
        return npformat.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy version {version}")


def inspect(path: str | os.PathLike, what: str) -> Archive:
    """Open ``path`` and read its members' headers; ``what`` (e.g. "a predictions .npz (SPEC.md §2)") completes messages."""
    path = Path(path)
    if not path.is_file():
        raise OltrError(f"{path}: no such file; expected {what}")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise OltrError(f"{path}: found a single .npy array; expected {what}: an .npz archive of named arrays (numpy.savez)")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # numpy would try to unpickle anything else
        raise OltrError(f"{path}: found a file that starts with {magic!r}, not a zip archive; expected {what} written by numpy.savez")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise OltrError(f"{path} is not a readable .npz file ({exc}); expected {what} written by numpy.savez") from None
    try:
        members, infos = {}, {}
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or "/" in key or not key:
                raise OltrError(f"{path}: {info.filename}: found a zip member that is not a .npy array; expected {what} "
                                "written by numpy.savez")
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise OltrError(f"{path}: {key}: {info.compress_size:,} stored bytes would decompress to {info.file_size:,} "
                                f"(more than {MAX_RATIO}x); refused as a decompression bomb")
            try:
                with zf.open(info) as fh:
                    shape, fortran, dtype = _header(fh)
                    header_len = fh.tell()
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise OltrError(f"{path}: {key}: found a zip member that is not a .npy array ({exc}); expected {what} "
                                "written by numpy.savez") from None
            member = Member(key, dtype, tuple(shape), fortran)
            if dtype.hasobject:
                raise OltrError(f"{key}: found an object array, which would need unpickling; expected a plain numeric or "
                                "string array (e.g. np.asarray(values, dtype=str)); files are loaded with allow_pickle=False")
            if dtype.kind == "U" and dtype.itemsize // 4 > MAX_STRING:
                raise OltrError(f"{key}: found strings of up to {dtype.itemsize // 4:,} characters; expected ids of at most {MAX_STRING:,}")
            if header_len + member.nbytes != info.file_size:
                raise OltrError(f"{path}: {key}: the header declares {member.describe()} ({member.nbytes:,} bytes) but the "
                                f"member holds {max(info.file_size - header_len, 0):,}; expected an archive written by numpy.savez")
            members[key], infos[key] = member, info
    except BaseException:
        zf.close()
        raise
    return Archive(path, zf, members, infos)


def check_keys(members: dict, required: Sequence[str], optional: Sequence[str], needs: str) -> None:
    """An archive's member names: none outside ``required`` + ``optional``, every ``required`` one
    present (``needs`` says what the file needs, for the message)."""
    allowed = tuple(required) + tuple(optional)
    unknown = sorted(set(members) - set(allowed))
    if unknown:
        raise OltrError(f"{unknown[0]}: unexpected key (found keys {sorted(members)}); expected only {', '.join(allowed)}")
    for key in required:
        if key not in members:
            raise OltrError(f"{key}: missing (found keys {sorted(members)}); {needs}")
