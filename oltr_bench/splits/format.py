"""The split directory (SPEC.md §1): list files, ``manifest.json`` and the fingerprint.

A split directory ``<out>/<dataset>/`` holds ``<Prefix>_{train,val,test[,open]}.txt`` (lines
``<relative path> <label>``, label -1 in the open list) and ``manifest.json``. The fingerprint
identifies the exact lists: sha256 of the lines ``train:<sha>``, ``val:<sha>``, ``test:<sha>``,
``open:<sha>`` (the splits present, in that order) joined by ``\\n``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import bad, expect, is_int, read_json
from oltr_bench.utils.io import DirectoryTaken, atomic_directory, atomic_write_json, sha256_bytes

FORMAT = formats.SPLITS
MANIFEST = "manifest.json"
MAX_CLASSES = 10_000_000
MAX_LIST_BYTES = 2**30
_LIST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test", "open")
_WHITESPACE = re.compile(r"\s")
KNOWN_PREFIXES = {"imagenet_lt": "ImageNet_LT", "places_lt": "Places_LT", "ms1m_lt": "MS1M_LT"}


def prefix_for(dataset: str) -> str:
    """``ImageNet_LT`` etc. for the OLTR datasets, ``<Name>_LT`` for any other dataset name."""
    if dataset in KNOWN_PREFIXES:
        return KNOWN_PREFIXES[dataset]
    stem = dataset[:-3] if dataset.endswith("_lt") else dataset
    return "_".join(part[:1].upper() + part[1:] for part in stem.split("_") if part) + "_LT"


def check_relative_path(path: str, where: str) -> None:
    """Reject list paths that are absolute, contain ``..``, whitespace or are empty."""
    # Plain string tests: this runs once per list line (hundreds of thousands per split).
    if not path or _WHITESPACE.search(path):
        raise OltrError(f"{where}: path {path!r} is empty or contains whitespace; expected a relative path without spaces")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise OltrError(f"{where}: path {path!r} is absolute; expected a path relative to the split root")
    if ".." in path and ".." in path.split("/"):
        raise OltrError(f"{where}: path {path!r} escapes the split root with '..'; expected a path inside it")


def format_list(entries: Iterable[tuple[str, int]]) -> str:
    """Serialise ``(path, label)`` pairs as list-file text (one ``path label`` line each, LF endings)."""
    return "".join(f"{path} {label}\n" for path, label in entries)


def parse_list(text: str, where: str, num_classes: int | None = None, open_list: bool = False) -> list[tuple[str, int]]:
    """Parse list-file text into ``(path, label)`` pairs, checking every line.

    ``where`` names the file in error messages. With ``num_classes`` labels must lie in
    ``0..num_classes-1``; in an open list every label must be ``-1``.
    """
    entries: list[tuple[str, int]] = []
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark some editors write
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise OltrError(f"{where}:{lineno}: expected '<relative path> <integer label>', found {line!r}")
        path, label_text = parts
        try:
            label = int(label_text)
        except ValueError:
            raise OltrError(f"{where}:{lineno}: label {label_text!r} is not an integer") from None
        check_relative_path(path, f"{where}:{lineno}")
        if open_list:
            if label != -1:
                raise OltrError(f"{where}:{lineno}: open-set lines must have label -1, found {label}")
        elif label < 0 or (num_classes is not None and label >= num_classes):
            upper = f"{num_classes - 1}" if num_classes is not None else "C-1"
            raise OltrError(f"{where}:{lineno}: label {label} outside 0..{upper}")
        entries.append((path, label))
    return entries


def fingerprint(file_shas: dict[str, str]) -> str:
    """Fingerprint of a split from the sha256 of each list file (SPEC.md §1)."""
    lines = [f"{split}:{file_shas[split]}" for split in SPLITS if split in file_shas]
    return sha256_bytes("\n".join(lines).encode("utf-8"))


def train_counts(entries: Sequence[tuple[str, int]], num_classes: int) -> list[int]:
    counts = Counter(label for _, label in entries)
    return [counts.get(c, 0) for c in range(num_classes)]


@dataclass
class SplitDir:
    """A loaded split directory: its manifest plus helpers to read the lists."""

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a split manifest (it is loaded and verified by :func:`load_split_dir`)."""
        return (Path(path) / MANIFEST).is_file()

    path: Path
    manifest: dict[str, Any]
    _cache: dict[str, list[tuple[str, int]]] = field(default_factory=dict, repr=False)

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def prefix(self) -> str:
        return self.manifest["prefix"]

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def train_counts(self) -> list[int]:
        return list(self.manifest["train_counts"])

    def has(self, split: str) -> bool:
        return split in self.manifest["files"]

    def list_file(self, split: str) -> Path:
        if not self.has(split):
            raise OltrError(f"split directory {self.path} has no {split!r} list")
        return self.path / self.manifest["files"][split]["name"]

    def root(self, split: str) -> Path:
        """The directory the paths of ``split`` are relative to (relative roots are relative to the split dir)."""
        root = Path(self.manifest["roots"][split])
        return root if root.is_absolute() else (self.path / root)

    def entries(self, split: str) -> list[tuple[str, int]]:
        if split not in self._cache:
            text = self.list_file(split).read_text(encoding="utf-8")
            self._cache[split] = parse_list(
                text, str(self.list_file(split)), self.num_classes, open_list=(split == "open")
            )
        return self._cache[split]

    def ids(self, split: str) -> list[str]:
        return [path for path, _ in self.entries(split)]

    def labels(self, split: str) -> list[int]:
        return [label for _, label in self.entries(split)]


def check_unique_images(lists: dict[str, Sequence[tuple[str, int]]], roots: dict[str, str], where: str = "") -> None:
    """No image twice: not within a list, not in two lists under the same root.

    Test and open ids (the path strings) must also differ when their roots differ, because
    predictions files are keyed by them (SPEC.md §1). ``where`` prefixes the error (a manifest path).
    Set operations per list keep this at about a second for MS1M-LT's millions of lines.
    """
    present = [split for split in SPLITS if split in lists]
    paths = {split: [path for path, _ in lists[split]] for split in present}
    sets: dict[str, set[str]] = {}
    for split in present:
        sets[split] = set(paths[split])
        if len(sets[split]) != len(paths[split]):
            seen: set[str] = set()
            twice = next(p for p in paths[split] if p in seen or seen.add(p))
            raise OltrError(f"{where}{twice!r} appears twice in the {split} list")
    for i, first in enumerate(present):
        for second in present[i + 1:]:
            if roots.get(first, "") != roots.get(second, "") and {first, second} != {"test", "open"}:
                continue
            if not sets[first].isdisjoint(sets[second]):
                both = next(p for p in paths[second] if p in sets[first])
                raise OltrError(f"{where}{both!r} appears in both the {first} and the {second} list")


def write_split_dir(
    out_dir: str | os.PathLike,
    *,
    dataset: str,
    classes: Sequence[str],
    lists: dict[str, Sequence[tuple[str, int]]],
    roots: dict[str, str],
    source: dict[str, Any],
    prefix: str | None = None,
    extra_files: dict[str, bytes] | None = None,
    populate: Any = None,
    overwrite: bool = False,
) -> SplitDir:
    """Write a split directory atomically and return it loaded.

    ``lists`` maps split names (train/val/test/open) to ``(path, label)`` pairs in the order they
    are written. ``populate(tmp_dir)`` may write more content (e.g. the embedded images) into the
    directory before it is moved into place.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OltrError(f"{out_dir} already exists; pass --overwrite to replace it or choose another --out")
    prefix = prefix or prefix_for(dataset)
    num_classes = len(classes)
    files: dict[str, dict[str, Any]] = {}
    texts: dict[str, bytes] = {}
    for split in SPLITS:
        if split not in lists:
            continue
        entries = list(lists[split])
        for path, label in entries:
            check_relative_path(path, f"{split} list")
            if split == "open" and label != -1:
                raise OltrError(f"open list entry {path!r} has label {label}; expected -1")
            if split != "open" and not 0 <= label < num_classes:
                raise OltrError(f"{split} list entry {path!r} has label {label}; expected 0..{num_classes - 1}")
        data = format_list(entries).encode("utf-8")
        texts[split] = data
        files[split] = {"name": f"{prefix}_{split}.txt", "lines": len(entries), "sha256": sha256_bytes(data)}
    for required in ("train", "val", "test"):
        if required not in files:
            raise OltrError(f"a split needs a {required} list")
    check_unique_images(lists, roots)
    manifest = {
        "format": FORMAT,
        "dataset": dataset,
        "prefix": prefix,
        "num_classes": num_classes,
        "classes": list(classes),
        "roots": {split: roots[split] for split in files},
        "files": files,
        "train_counts": train_counts(lists["train"], num_classes),
        "source": source,
        "fingerprint": fingerprint({s: f["sha256"] for s, f in files.items()}),
    }
    try:
        with atomic_directory(out_dir, overwrite=overwrite) as tmp:
            for split, data in texts.items():
                (tmp / files[split]["name"]).write_bytes(data)
            for name, data in (extra_files or {}).items():
                (tmp / name).write_bytes(data)
            if populate is not None:
                populate(tmp)
            atomic_write_json(tmp / MANIFEST, manifest)
    except DirectoryTaken as exc:
        # Two make-splits into one folder: the first to finish wins. The other succeeds if the
        # winner wrote the same lists (same inputs and seed), and says so otherwise.
        other = load_split_dir(out_dir)
        if other.fingerprint != manifest["fingerprint"]:
            raise OltrError(f"{exc}, and its lists differ from these (fingerprint {other.fingerprint[:16]}... instead of "
                            f"{manifest['fingerprint'][:16]}...); write this split elsewhere with --out, or --overwrite") from None
        log.info("%s was written by another process meanwhile, with the same lists; using it", out_dir)
        return other
    return SplitDir(out_dir, manifest)


def load_split_dir(path: str | os.PathLike, verify: bool = True) -> SplitDir:
    """Load ``manifest.json`` from a split directory.

    With ``verify`` check every list's sha256 and the fingerprint, and that the manifest's
    ``num_classes``, ``classes``, line counts and ``train_counts`` agree with the lists (every
    label in range).
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise OltrError(
            f"{path} is not a split directory: {manifest_path} is missing "
            "(create one with 'oltr-bench make-splits')"
        )
    manifest = read_json(manifest_path, "a split manifest (SPEC.md §1)")
    check_manifest(manifest, str(manifest_path))
    split = SplitDir(path, manifest)
    if verify:
        shas, texts = {}, {}
        for name, info in manifest["files"].items():
            file = path / info["name"]
            if not file.is_file():
                raise OltrError(f"{manifest_path} lists {info['name']} but {file} does not exist")
            if file.stat().st_size > MAX_LIST_BYTES:
                raise OltrError(f"{file}: {file.stat().st_size:,} bytes, more than the {MAX_LIST_BYTES:,} a list may have "
                                "(MS1M-LT's largest is about 0.1 GB)")
            data = file.read_bytes()
            sha = sha256_bytes(data)
            if sha != info["sha256"]:
                raise OltrError(
                    f"{file} was modified after the split was written: sha256 {sha[:16]}... "
                    f"differs from the manifest's {info['sha256'][:16]}..."
                )
            shas[name], texts[name] = sha, data
        if fingerprint(shas) != manifest["fingerprint"]:
            raise OltrError(f"{manifest_path}: fingerprint does not match the list files")
        _check_derived_keys(split, manifest_path, texts)
    return split


def _is_list_name(value: Any) -> bool:
    """A plain file name inside the split directory: no folder, no '..', nothing hidden."""
    return isinstance(value, str) and bool(_LIST_NAME.fullmatch(value)) and value not in (".", "..")


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and bool(_SHA256.fullmatch(value))


def check_manifest(manifest: dict[str, Any], where: str) -> None:
    """The kinds of a split manifest's keys (SPEC.md §1), before anything is used; list names are
    confined to the split directory. The lists themselves are checked against it on load."""
    if manifest.get("format") != FORMAT:
        raise OltrError(f"{where}: format {manifest.get('format')!r} is not supported; expected {FORMAT!r}")
    expect(manifest, "dataset", where, lambda v: isinstance(v, str) and v.strip() != "", "the dataset's name")
    expect(manifest, "prefix", where, lambda v: isinstance(v, str), "the list-file prefix, e.g. ImageNet_LT")
    expect(manifest, "num_classes", where, lambda v: is_int(v) and 1 <= v <= MAX_CLASSES, f"an integer in 1..{MAX_CLASSES:,}")
    expect(manifest, "classes", where, lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
           "a list of class names")
    expect(manifest, "roots", where, lambda v: isinstance(v, dict) and all(isinstance(r, str) for r in v.values()),
           "an object {split: root folder}")
    files = expect(manifest, "files", where, lambda v: isinstance(v, dict) and bool(v), "an object {split: {name, lines, sha256}}")
    for split, info in files.items():
        key = f"files.{split}"
        if not isinstance(info, dict):
            raise bad(where, key, info, "an object {name, lines, sha256}")
        expect(info, "name", where, _is_list_name, "a file name inside the split directory (no '/', no '..')", prefix=f"{key}.")
        expect(info, "lines", where, lambda v: is_int(v) and v >= 0, "a line count", prefix=f"{key}.")
        expect(info, "sha256", where, _is_sha256, "a sha256 hex digest", prefix=f"{key}.")
        if split not in manifest["roots"]:
            raise OltrError(f"{where}: roots.{split}: missing, expected the folder the {split} list's paths are relative to")
    expect(manifest, "train_counts", where, lambda v: isinstance(v, list) and all(is_int(c) and c >= 0 for c in v),
           "a list of per-class training counts")
    expect(manifest, "source", where, lambda v: isinstance(v, dict), "an object describing how the split was made", required=False)
    expect(manifest, "fingerprint", where, _is_sha256, "a sha256 hex digest")


def _check_derived_keys(split: SplitDir, manifest_path: Path, texts: dict[str, bytes]) -> None:
    """Check the manifest keys that describe the lists against the lists themselves.

    The fingerprint covers only the list files, yet ``evaluate`` takes its shot groups and some
    methods their class priors from ``train_counts``: an edited manifest must not pass for the
    split whose fingerprint it carries. The parsed lists are kept, so reading them later is free.
    """
    manifest = split.manifest
    num_classes, classes = manifest["num_classes"], manifest["classes"]
    if type(num_classes) is not int or num_classes < 1:
        raise OltrError(f"{manifest_path}: num_classes is {num_classes!r}; expected a positive integer")
    if not isinstance(classes, list) or len(classes) != num_classes:
        found = f"{len(classes)} names" if isinstance(classes, list) else repr(classes)
        raise OltrError(f"{manifest_path}: classes has {found}; expected one name per class (num_classes = {num_classes})")
    absent = [s for s in ("train", "val", "test") if s not in texts]
    unknown = [s for s in texts if s not in SPLITS]
    if absent or unknown:
        raise OltrError(
            f"{manifest_path}: files has {', '.join(texts) or 'no lists'}; expected train, val, test and optionally open"
        )
    for name, data in texts.items():
        where = str(split.path / manifest["files"][name]["name"])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise OltrError(f"{where} is not UTF-8 text; expected '<relative path> <label>' lines") from None
        try:
            entries = parse_list(text, where, num_classes, open_list=(name == "open"))
        except OltrError as exc:
            raise OltrError(f"{exc} (num_classes is {num_classes} in {manifest_path})") from None
        if manifest["files"][name].get("lines") != len(entries):
            raise OltrError(
                f"{manifest_path}: files.{name}.lines is {manifest['files'][name].get('lines')!r}; the list has {len(entries):,} lines"
            )
        split._cache[name] = entries
    check_unique_images(split._cache, manifest["roots"], f"{manifest_path}: ")
    counts = train_counts(split._cache["train"], num_classes)
    stated = manifest["train_counts"]
    if stated != counts:
        if not isinstance(stated, list) or len(stated) != num_classes:
            found = f"{len(stated)} entries" if isinstance(stated, list) else repr(stated)
            detail = f"it has {found}; expected {num_classes}"
        else:
            c = next(c for c in range(num_classes) if stated[c] != counts[c])
            detail = f"class {c} has {stated[c]!r} there but {counts[c]:,} lines in the train list"
        raise OltrError(
            f"{manifest_path}: train_counts does not match the train list ({detail}); train_counts[c] must be the "
            "number of train lines with label c: the manifest was edited after the split was written"
        )
