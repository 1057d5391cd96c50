"""Find a split directory from what a user types: a path, or a dataset name under the work folder.

``run --dataset embedded``, ``evaluate --splits embedded``, ``leaderboard submit --dataset
imagenet_lt`` and :func:`oltr_bench.evaluate_model` all look a name up the same way: the split
directory ``<work folder>/splits/<name>`` (``$OLTR_BENCH_HOME/splits/<name>``, else
``./oltr_work/splits/<name>``), also under the dataset's registered name when ``name`` is an alias.
"""

from __future__ import annotations

import os
from pathlib import Path

from oltr_bench.errors import OltrError
from oltr_bench.paths import splits_root, work_dir_hint
from oltr_bench.registry import DATASETS
from oltr_bench.splits.format import SplitDir, load_split_dir


def split_by_name(name: str) -> SplitDir:
    """The split directory of dataset ``name`` under the work folder's ``splits/``."""
    candidates = [splits_root() / name]
    if name in DATASETS:
        candidates.append(splits_root() / DATASETS.canonical(name))
    for candidate in candidates:
        if SplitDir.exists(candidate):
            return load_split_dir(candidate)
    hint = "oltr-bench make-splits" + ("" if name == "embedded" else f" --dataset {name} --root ...")
    raise OltrError(f"no split directory for dataset {name!r} under {splits_root()}; create it with '{hint}' "
                    "or give the split directory's path")


def find_split(name_or_path: str | os.PathLike) -> SplitDir:
    """A split directory given by its path or, when no such folder exists and the text is a plain
    name (no ``/``), by its dataset name (:func:`split_by_name`)."""
    path = Path(name_or_path)
    if SplitDir.exists(path):
        return load_split_dir(path)
    text = str(name_or_path)
    if os.sep not in text and "/" not in text and not path.exists():
        return split_by_name(text)
    if not path.exists():
        hint = work_dir_hint(path)
        if not hint and SplitDir.exists(splits_root() / path.name):
            hint = f"; the work folder has {splits_root() / path.name}"
        raise OltrError(f"{path} does not exist; expected a split directory written by 'oltr-bench make-splits' "
                        f"(with a manifest.json) or a dataset name whose split lies under {splits_root()}{hint}")
    return load_split_dir(path)  # names what is missing from the folder
