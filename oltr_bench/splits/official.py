"""Importing and verifying the released OLTR lists (``make-splits --official DIR``).

The released ``<Prefix>_{train,val,test,open}.txt`` files are read in either path dialect in
circulation, each file's sha256 is compared with the table shipped in
``splits/official_lists.json``, and the lists are written unchanged (same bytes, so the same
fingerprint for everyone who has the same release) with the class name of every label in the
manifest. Labels are kept exactly as released -- including Places-LT's permutation of classes
116-118 and 141-142 relative to ``categories_places365.txt``.

Every referenced image must exist under ``--root`` (open images under ``--open-root``, by default
the ``<Prefix>_open/`` folder shipped next to the lists); otherwise the import stops after naming
the count and the first few missing paths, unless ``--allow-missing``, which keeps the lists
unchanged and records the counts in the manifest.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from oltr_bench.errors import OltrError
from oltr_bench.splits.format import SPLITS, SplitDir, fingerprint, format_list, parse_list, write_split_dir
from oltr_bench.splits.profile import released_counts
from oltr_bench.splits.scan import check_files
from oltr_bench.utils.io import sha256_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Release:
    """What the importer needs to know about one released benchmark."""

    dataset: str
    prefix: str
    classes: Callable[[], list[str]]
    # (split, path) -> the path dialect ("oltr", "decoupling", ...) or None if unrecognised
    dialect_of: Callable[[str, str], str | None]
    # (dialect, path) -> the class name a path encodes, or None when it encodes none (flat test paths)
    class_of: Callable[[str, str], str | None]
    # (root, split, missing paths) -> a hint about the user's layout, or ""
    layout_hint: Callable[[Path, str, list[str]], str] = lambda root, split, missing: ""


@dataclass
class FileCheck:
    """The verification of one released list file against the shipped table."""

    split: str
    file: str
    lines: int
    sha256: str
    dialect: str
    status: str  # "matched", "differs" or "unknown"
    details: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.status == "matched":
            text = f"{self.file}: matches the released list ({self.dialect} paths)"
        elif self.status == "differs":
            text = f"{self.file}: DIFFERS from the released list ({self.dialect} paths)"
        else:
            text = f"{self.file}: unknown -- no released checksum is known for its {self.dialect} paths"
        return text + (": " + "; ".join(self.details) if self.details else "")

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "dialect": self.dialect, "lines": self.lines,
                "sha256": self.sha256, "details": self.details}


def known_lists() -> dict[str, Any]:
    """The shipped table of released list checksums (``splits/official_lists.json``)."""
    text = resources.files("oltr_bench.splits_data").joinpath("official_lists.json").read_text("utf-8")
    return json.loads(text)


def released_fingerprints(dataset: str) -> dict[str, str]:
    """Split fingerprints of the released lists (what an unchanged import gets), by description.

    Keys are ``"<dialect> paths"`` and ``"<dialect> paths, no open list"``. The open list has no
    folders, so every dialect shares it.
    """
    table = known_lists()[dataset]["files"]
    by_dialect: dict[str, dict[str, str]] = {}
    for split in ("train", "val", "test"):
        for entry in table.get(split, []):
            by_dialect.setdefault(entry["dialect"], {})[split] = entry["sha256"]
    out = {}
    for dialect, shas in by_dialect.items():
        if len(shas) == 3:
            out[f"{dialect} paths, no open list"] = fingerprint(shas)
            for entry in table.get("open", []):
                out[f"{dialect} paths"] = fingerprint({**shas, "open": entry["sha256"]})
    return out


def _verify(release: Release, split: str, path: Path, data: bytes, entries: list[tuple[str, int]], dialect: str) -> FileCheck:
    known = known_lists()[release.dataset]["files"].get(split, [])
    raw_sha = sha256_bytes(data)
    normal_sha = sha256_bytes(format_list(entries).encode("utf-8"))
    check = FileCheck(split, path.name, len(entries), raw_sha, dialect, "unknown")
    for entry in known:
        if raw_sha == entry["sha256"]:
            check.status, check.dialect = "matched", entry["dialect"]
            return check
        if normal_sha == entry["sha256"]:
            check.status, check.dialect = "matched", entry["dialect"]
            check.details.append("after normalising line endings and spacing (the split keeps the normalised text)")
            return check
    same_dialect = [e for e in known if e["dialect"] == dialect]
    if same_dialect:
        check.status = "differs"
    elif known:
        released = ", ".join(sorted({e["dialect"] for e in known}))
        check.details.append(f"released checksums are known for: {released}")
    if known and len(entries) != known[0]["lines"]:
        check.details.append(f"{len(entries):,} lines, the release has {known[0]['lines']:,}")
    expected_counts = _released_class_counts(release, split)
    if expected_counts is not None:
        counts = Counter(label for _, label in entries)
        off = [c for c, n in enumerate(expected_counts) if counts.get(c, 0) != n]
        if off:
            c = off[0]
            check.details.append(
                f"{len(off):,} classes have other line counts than the release (e.g. label {c}: {counts.get(c, 0)}, "
                f"released {expected_counts[c]})"
            )
        elif check.status == "differs":
            check.details.append("same lines per class as the release, but other paths or order")
    if b"\r\n" in data:
        check.details.append("it has CRLF line endings")
    return check


def _released_class_counts(release: Release, split: str) -> list[int] | None:
    """Lines per label in the released list (train: the released class sizes; val/test: balanced)."""
    if split == "train":
        return released_counts(release.dataset)
    per_class = known_lists()[release.dataset].get("per_class", {}).get(split)
    return None if per_class is None else [per_class] * len(release.classes())


def _read_list(release: Release, split: str, path: Path) -> tuple[bytes, list[tuple[str, int]], str]:
    """Bytes, parsed entries and path dialect of one released list file, with structural checks."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OltrError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OltrError(f"{path} is not UTF-8 text; expected '<relative path> <label>' lines") from None
    classes = release.classes()
    entries = parse_list(text, str(path), num_classes=len(classes), open_list=(split == "open"))
    if not entries:
        raise OltrError(f"{path} is empty; expected '<relative path> <label>' lines")
    counts = Counter(p for p, _ in entries)
    repeated = [p for p, n in counts.items() if n > 1]
    if repeated:
        raise OltrError(f"{path}: {len(repeated)} paths occur more than once, e.g. {repeated[0]}")
    dialects = Counter(release.dialect_of(split, p) for p, _ in entries)
    if None in dialects:
        bad = next(p for p, _ in entries if release.dialect_of(split, p) is None)
        raise OltrError(f"{path}: path {bad!r} is in no known {release.prefix} path dialect")
    if len(dialects) > 1:
        raise OltrError(f"{path} mixes path dialects ({', '.join(sorted(dialects))}); expected one")
    dialect = next(iter(dialects))
    if split != "open":
        present = {label for _, label in entries}
        if len(present) != len(classes):
            absent = sorted(set(range(len(classes))) - present)
            raise OltrError(
                f"{path} has labels for {len(present)} of the {len(classes)} {release.prefix} classes "
                f"(no line with label {', '.join(map(str, absent[:5]))}{', ...' if len(absent) > 5 else ''})"
            )
        for lineno, (p, label) in enumerate(entries, 1):
            name = release.class_of(dialect, p)
            if name is not None and name != classes[label]:
                raise OltrError(
                    f"{path}:{lineno}: {p} is a {name!r} image but label {label} is {classes[label]!r} in the released "
                    f"{release.prefix}; the labels do not follow the released class order"
                )
    return data, entries, dialect


def _open_root(release: Release, lists_dir: Path, open_root: Path | None, entries: list[tuple[str, int]]) -> Path:
    """The folder the open list's bare file names are relative to."""
    if open_root is None:
        return lists_dir / f"{release.prefix}_open"
    first = entries[0][0]
    for candidate in (open_root, open_root / "val", open_root / f"{release.prefix}_open"):
        if (candidate / first).exists():
            return candidate
    return open_root


def import_lists(
    release: Release,
    lists_dir: Path,
    *,
    root: Path,
    open_root: Path | None,
    allow_missing: bool,
    out_root: Path,
    overwrite: bool,
    progress: bool,
) -> SplitDir:
    """Verify the released lists in ``lists_dir`` and write them as a split directory (module docstring)."""
    if not lists_dir.is_dir():
        raise OltrError(f"--official {lists_dir} does not exist or is not a directory; expected the folder with {release.prefix}_*.txt")
    files = {split: lists_dir / f"{release.prefix}_{split}.txt" for split in SPLITS}
    absent = [f.name for s, f in files.items() if s != "open" and not f.is_file()]
    if absent:
        found = sorted(p.name for p in lists_dir.glob("*.txt"))
        raise OltrError(
            f"--official {lists_dir} lacks {', '.join(absent)}; found: {', '.join(found) or 'no .txt files'}"
        )
    lists: dict[str, list[tuple[str, int]]] = {}
    checks: dict[str, FileCheck] = {}
    for split, path in files.items():
        if not path.is_file():
            continue
        data, entries, dialect = _read_list(release, split, path)
        lists[split] = entries
        checks[split] = _verify(release, split, path, data, entries, dialect)
    for check in checks.values():
        log.info(check.describe())
    if not root.is_dir():
        raise OltrError(f"--root {root} does not exist or is not a directory; expected the images the lists refer to")
    roots = {split: root for split in lists if split != "open"}
    if "open" in lists:
        roots["open"] = _open_root(release, lists_dir, open_root, lists["open"])
    missing: dict[str, int] = {}
    problems = []
    for split, entries in lists.items():
        paths = [p for p, _ in entries]
        lost, unreadable = check_files(roots[split], paths, progress=progress, desc=f"checking {split} images")
        if lost or unreadable:
            missing[split] = len(lost) + len(unreadable)
            what = " and ".join(
                text for text in (f"{len(lost):,} missing" if lost else "", f"{len(unreadable):,} unreadable" if unreadable else "") if text
            )
            hint = release.layout_hint(roots[split], split, lost)
            if split == "open" and not hint and open_root is None:
                hint = "pass --open-root with the folder of the open-set images"
            problems.append(
                f"{split}: {what} of {len(paths):,} images under {roots[split].resolve()}, e.g. {', '.join((lost + unreadable)[:3])}"
                + (f" ({hint})" if hint else "")
            )
    if problems:
        if not allow_missing:
            raise OltrError("; ".join(problems) + "; or pass --allow-missing to import the lists anyway")
        for problem in problems:
            log.warning("%s", problem)
    source = {
        "kind": "official",
        "lists": str(lists_dir.resolve()),
        "files": {split: check.to_dict() for split, check in checks.items()},
        "missing_images": missing,
    }
    split_dir = write_split_dir(
        out_root / release.dataset, dataset=release.dataset, prefix=release.prefix, classes=release.classes(),
        lists=lists, roots={s: str(r.resolve()) for s, r in roots.items()}, source=source, overwrite=overwrite,
    )
    names = {fp: what for what, fp in released_fingerprints(release.dataset).items()}
    if split_dir.fingerprint in names:
        log.info(f"the split is the released {release.prefix} ({names[split_dir.fingerprint]}), fingerprint {split_dir.fingerprint[:16]}")
    return split_dir

