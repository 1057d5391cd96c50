"""Finding the user's images and label files quickly, with clear errors.

Directory scans use ``os.scandir`` and decide by file name (no ``stat`` per file), so listing
ImageNet's 1.28 million training images takes seconds. Results are sorted, so nothing depends on
the order the file system lists entries in. Only the files that end up in a split are checked
one by one (:func:`check_files`).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

from tqdm import tqdm

from oltr_bench.errors import OltrError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
T = TypeVar("T")


def progress_bar(items: Iterable[T], *, desc: str, total: int | None = None, enabled: bool = True, unit: str = "it") -> Iterator[T]:
    """``items`` with a tqdm bar on stderr when ``enabled``."""
    return iter(tqdm(items, desc=desc, total=total, unit=unit, disable=not enabled, file=sys.stderr, leave=False))


def is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _scandir(directory: str) -> os.ScandirIterator:
    try:
        return os.scandir(directory)
    except FileNotFoundError:
        raise OltrError(f"{directory} does not exist") from None
    except NotADirectoryError:
        raise OltrError(f"{directory} is not a directory") from None
    except PermissionError:
        raise OltrError(f"{directory} cannot be read (permission denied)") from None


def check_name(directory: str, name: str) -> None:
    """Refuse a file name that is not valid UTF-8 (list files are UTF-8 text), naming it and the fix."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(os.path.join(directory, name))
        raise OltrError(f"{shown!r}: the file name is not valid UTF-8, and split lists are UTF-8 text; rename it (for a tree "
                        f"in another encoding: convmv -f latin1 -t utf-8 -r --notrash --notest {directory}) and run again") from None


def subdirectories(directory: Path) -> list[str]:
    """Names of the non-hidden subdirectories of ``directory``, sorted."""
    with _scandir(str(directory)) as it:
        names = sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    for name in names:
        check_name(str(directory), name)
    return names


def list_images(directory: Path, prefix: str, recursive: bool = True) -> list[str]:
    """Image files under ``directory`` as ``prefix + relative path``, sorted.

    A name with an image extension is taken as an image without a ``stat`` call (a directory
    named like an image, or a broken link, is caught later by :func:`check_files` if it is used).
    A linked folder already visited (a symbolic-link loop) is skipped with a warning.
    """
    found: list[str] = []
    start = os.stat(directory)
    seen = {(start.st_dev, start.st_ino)}
    pending = [(str(directory), prefix)]
    while pending:
        path, rel = pending.pop()
        subdirs = []
        with _scandir(path) as it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    check_name(path, name)
                    found.append(rel + name)
                elif recursive and entry.is_dir():
                    check_name(path, name)
                    info = entry.stat()
                    if (info.st_dev, info.st_ino) in seen:
                        log.warning("skipping %s: it leads back to a folder already scanned (a symbolic-link loop)", entry.path)
                        continue
                    seen.add((info.st_dev, info.st_ino))
                    subdirs.append(name)
        pending.extend((os.path.join(path, d), f"{rel}{d}/") for d in subdirs)
    found.sort()
    return found


def scan_class_folders(
    root: Path, classes: Sequence[str] | None = None, *, prefix: str = "", progress: bool = False, what: str = "--root",
    recursive: bool = True,
) -> dict[str, list[str]]:
    """``{class folder: [image paths relative to the list root, sorted]}``.

    ``classes`` are folder names (may contain ``/``) under ``root``; by default every non-hidden
    subfolder. Paths are ``prefix + <class folder>/<file>``.
    """
    if not root.is_dir():
        raise OltrError(f"{what} {root} does not exist or is not a directory; expected a folder with one subfolder per class")
    names = subdirectories(root) if classes is None else list(classes)
    if not names:
        raise OltrError(f"{what} {root} has no class subfolders; expected <root>/<class>/<image files>")
    out: dict[str, list[str]] = {}
    for name in progress_bar(names, desc=f"scanning {root.name or root}", enabled=progress, unit="class"):
        folder = root / name
        if not folder.is_dir():
            raise OltrError(f"class folder {folder} is missing; expected one folder per class under {root}")
        out[name] = list_images(folder, f"{prefix}{name}/", recursive=recursive)
    return out


def find_duplicates(paths: Iterable[str]) -> dict[str, list[str]]:
    """Paths grouped by file name, for names that occur more than once."""
    by_name: dict[str, list[str]] = {}
    for p in paths:
        by_name.setdefault(p.rsplit("/", 1)[-1], []).append(p)
    return {name: ps for name, ps in by_name.items() if len(ps) > 1}


def missing_images(message: str, allow_missing: bool) -> None:
    """Stop on validation images that the labels name but the disk lacks, unless ``--allow-missing``."""
    if not allow_missing:
        raise OltrError(message + "; pass --allow-missing to write a test list without them")
    log.warning("%s", message)


def finish_test_list(entries: list[tuple[str, int]], *, where: str, empty: str) -> list[tuple[str, int]]:
    """The validation images as a test list: no image twice, not empty, sorted by label then path."""
    duplicates = find_duplicates(p for p, _ in entries)
    if duplicates:
        name, paths = next(iter(sorted(duplicates.items())))
        raise OltrError(f"{len(duplicates)} validation images occur more than once{where}, e.g. {name}: {', '.join(paths)}")
    if not entries:
        raise OltrError(empty)
    return sorted(entries, key=lambda e: (e[1], e[0]))


def check_files(root: Path, paths: Sequence[str], *, progress: bool = False, desc: str = "checking files") -> tuple[list[str], list[str]]:
    """``(missing, unreadable)`` among ``root/path`` for every path (one ``stat`` each)."""
    missing: list[str] = []
    unreadable: list[str] = []
    base = str(root)
    for rel in progress_bar(paths, desc=desc, total=len(paths), enabled=progress, unit="file"):
        full = os.path.join(base, rel)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            missing.append(rel)
            continue
        except OSError:
            unreadable.append(rel)
            continue
        if not stat.S_ISREG(st.st_mode) or not os.access(full, os.R_OK):
            unreadable.append(rel)
    return missing, unreadable


def require_readable(root: Path, paths: Sequence[str], what: str, *, progress: bool = False) -> None:
    """Raise naming the first few files of ``paths`` that are missing or unreadable under ``root``."""
    missing, unreadable = check_files(root, paths, progress=progress, desc=f"checking {what}")
    if missing or unreadable:
        bad = missing + unreadable
        raise OltrError(
            f"{len(missing):,} missing and {len(unreadable):,} unreadable {what} under {root} "
            f"(not a readable regular file), e.g. {', '.join(bad[:3])}"
        )


def find_file(roots: Sequence[Path], names: Sequence[str], *, max_depth: int = 3, skip: Iterable[str] = ()) -> Path | None:
    """The first file named one of ``names`` in ``roots`` or their subfolders (breadth first, bounded depth).

    Folders named in ``skip`` (e.g. the big ``train`` tree) are never entered.
    """
    skip = set(skip)
    for name in names:
        for top in roots:
            level = [top]
            for _ in range(max_depth + 1):
                nxt = []
                for folder in level:
                    candidate = folder / name
                    if candidate.is_file():
                        return candidate
                    try:
                        with os.scandir(folder) as it:
                            nxt.extend(Path(e.path) for e in it if e.name not in skip and not e.name.startswith(".") and e.is_dir())
                    except OSError:
                        continue
                level = sorted(nxt)
    return None


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file the user gave (a byte-order mark at its start is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise OltrError(f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise OltrError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
