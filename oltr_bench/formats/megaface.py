"""MegaFace files: the devkit's feature files, its template lists, and the insightface test pack.

**Feature files** (what the official devkit's ``run_experiment.py`` reads): one file per image at
``<root>/<relative image path><suffix>``; 16 bytes of four little-endian int32
``(rows = D, cols = 1, element size = 4, type = 5 (OpenCV CV_32F))``, then D float32 values.

**Template lists**: ``facescrub_features_list.json`` and ``megaface_features_list.json_<size>_<set>``
(e.g. ``_1000000_1``), JSON objects whose ``"path"`` is the list of relative image paths.

**The insightface MegaFace test pack** (``_evaluation_/megaface``): the lists above, the aligned
image trees ``facescrub_images/`` and ``megaface_images/`` (112x112), and optionally the noise
lists ``facescrub_noises.txt`` / ``megaface_noises.txt`` of mislabelled images. It is detected
where the user has it; oltr-bench never downloads it.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import read_json
from oltr_bench.utils.io import atomic_open

HEADER = struct.Struct("<4i")
CV_32F = 5
SUFFIX = "_oltr.bin"  # the default feature-file suffix (the devkit's --feature-suffix)
PROBE_LIST = "facescrub_features_list.json"
DISTRACTOR_LIST = re.compile(r"^megaface_features_list\.json_(\d+)_(\d+)$")
PROBE_TREES = ("facescrub_images", "FaceScrub", "facescrub")
DISTRACTOR_TREES = ("megaface_images", "MegaFace", "megaface")
NOISE_LISTS = {"probe": "facescrub_noises.txt", "distractor": "megaface_noises.txt"}


def write_feature(path: str | os.PathLike, vector) -> None:
    """One devkit feature file (atomically)."""
    v = np.asarray(vector, dtype="<f4").reshape(-1)
    with atomic_open(path) as fh:
        fh.write(HEADER.pack(len(v), 1, 4, CV_32F))
        fh.write(v.tobytes())


def read_feature(path: str | os.PathLike) -> np.ndarray:
    """A devkit feature file's vector (float32), its header checked."""
    data = Path(path).read_bytes()
    if len(data) < HEADER.size:
        raise OltrError(f"{path}: found {len(data)} bytes; expected a MegaFace feature file (16-byte header + float32 values)")
    rows, cols, size, kind = HEADER.unpack_from(data)
    if cols != 1 or size != 4 or kind != CV_32F or rows < 1 or len(data) != HEADER.size + 4 * rows:
        raise OltrError(f"{path}: found header (rows {rows}, cols {cols}, element size {size}, type {kind}) and {len(data):,} "
                        f"bytes; expected (D, 1, 4, 5) followed by D float32 values")
    return np.frombuffer(data, dtype="<f4", offset=HEADER.size).copy()


def write_features(root: str | os.PathLike, ids, features, suffix: str = SUFFIX) -> int:
    """Feature files for ``ids`` (relative image paths) under ``root``; returns how many."""
    root = Path(root)
    n = 0
    for pid, vector in zip(ids, features):
        rel = Path(str(pid))
        if rel.is_absolute() or ".." in rel.parts:
            raise OltrError(f"{pid}: a feature file goes under --devkit-dir by the image's relative path; expected no "
                            "absolute path and no '..'")
        target = root / (str(rel) + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_feature(target, vector)
        n += 1
    return n


def read_list(path: str | os.PathLike) -> list[str]:
    """The image paths of a devkit template list (JSON ``{"path": [...]}``) or a text list (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise OltrError(f"{path}: no such file; expected a MegaFace template list (JSON with 'path') or a text list of ids")
    with open(path, "rb") as fh:
        head = fh.read(1).lstrip()
    if head == b"{":
        data = read_json(path, "a MegaFace template list (a JSON object with 'path')")
        paths = data.get("path")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise OltrError(f"{path}: path: found {type(paths).__name__}; expected the list of relative image paths")
        return paths
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def probe_identity(path: str) -> str:
    """FaceScrub's identity of an image path: its folder (``Name_Surname/Name_Surname_123.png``)."""
    parts = Path(path).parts
    return parts[-2] if len(parts) >= 2 else Path(path).stem.rsplit("_", 1)[0]


@dataclass
class MegaFacePack:
    """A detected insightface MegaFace test pack."""

    root: Path
    probe_list: Path
    distractor_lists: dict[int, Path]  # size -> list (set 1 preferred)
    probe_root: Path
    distractor_root: Path
    noise: dict[str, Path] = field(default_factory=dict)

    def distractor_list(self, size: int | None = None) -> Path:
        size = max(self.distractor_lists) if size is None else size
        if size not in self.distractor_lists:
            raise OltrError(f"{self.root}: no megaface_features_list.json_{size}_* list; the pack has sizes "
                            f"{', '.join(map(str, sorted(self.distractor_lists)))}")
        return self.distractor_lists[size]


def detect_pack(root: str | os.PathLike) -> MegaFacePack:
    """The MegaFace pack under ``root`` (its lists anywhere up to three levels down, the image trees
    next to them or under ``data/``); one line naming what is missing otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise OltrError(f"{root}: no such folder; expected the insightface MegaFace test pack (never downloaded by oltr-bench)")
    found = sorted(p for depth in ("", "*/", "*/*/", "*/*/*/") for p in root.glob(depth + PROBE_LIST))
    if not found:
        raise OltrError(f"{root}: no {PROBE_LIST} found (up to three levels down); expected the insightface MegaFace test pack "
                        "with its template lists and image trees facescrub_images/ and megaface_images/")
    lists_dir = found[0].parent
    sizes: dict[int, Path] = {}
    for p in sorted(lists_dir.iterdir()):
        m = DISTRACTOR_LIST.match(p.name)
        if m and (int(m.group(1)) not in sizes or m.group(2) == "1"):
            sizes[int(m.group(1))] = p
    if not sizes:
        raise OltrError(f"{lists_dir}: no megaface_features_list.json_<size>_<set> next to {PROBE_LIST}; expected the "
                        "distractor lists of the MegaFace devkit")

    def tree(names: tuple[str, ...]) -> Path:
        for base in (lists_dir, lists_dir.parent, root, root / "data"):
            for name in names:
                if (base / name).is_dir():
                    return base / name
        raise OltrError(f"{root}: none of the image folders {', '.join(names)} found next to the lists; expected the "
                        "pack's aligned image trees")

    noise = {kind: p for kind, name in NOISE_LISTS.items()
             for p in (lists_dir / name, lists_dir.parent / name, root / name) if p.is_file()}
    return MegaFacePack(root, found[0], sizes, tree(PROBE_TREES), tree(DISTRACTOR_TREES), noise)


def read_noises(path: Path) -> set[str]:
    """Image names of an insightface noise list (``facescrub_noises.txt`` / ``megaface_noises.txt``);
    lines starting with ``#`` are comments."""
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}
