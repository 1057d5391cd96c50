"""The long-tailed split builder shared by every generated benchmark.

Given the images of each class (as relative paths), it draws, per known class and with a random
stream derived only from ``(seed, class name)``:

* ``test_per_class`` test images (balanced test set),
* ``val_per_class`` validation images (balanced, disjoint from train and test),
* the class's training images: the profile's count for the class.

Which class gets which profile count is a seeded permutation of the classes (skipping classes too
small for a count, see :func:`assign_counts`); explicit counts go in class order. Open classes
contribute ``open_per_class`` images each (or all of them) to the open list with label -1.
The result depends only on the inputs and the seed, never on the order the file system lists
files in: file lists are sorted before sampling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.splits.profile import Profile


def class_rng(seed: int, *keys: str) -> np.random.Generator:
    """A random stream that depends only on the seed and the given keys (e.g. a class name)."""
    digest = hashlib.sha256("\0".join((str(seed), *keys)).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass
class BuiltSplit:
    lists: dict[str, list[tuple[str, int]]]
    class_counts: list[int]


def assign_counts(
    classes: Sequence[str], profile: Profile, seed: int, capacity: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Map each class to its training count.

    Explicit count profiles are taken in class order (so released counts are reproduced exactly).
    Pareto counts go to the classes in a seeded random order; with ``capacity`` (the most training
    images each class can give), each count, largest first, goes to the next class in that order
    that can hold it. Without binding capacities this is exactly the plain seeded order, and it
    finds an assignment whenever one exists (a class that can hold a count can hold every smaller
    one).
    """
    counts = profile.class_counts(len(classes))
    if profile.kind == "counts":
        return dict(zip(classes, counts))
    order = [classes[int(i)] for i in class_rng(seed, "class-order").permutation(len(classes))]
    if capacity is None:
        return dict(zip(order, counts))
    assigned: dict[str, int] = {}
    free = order
    for count in counts:
        pick = next((i for i, name in enumerate(free) if capacity[name] >= count), None)
        if pick is None:
            able = sum(1 for name in classes if capacity[name] >= count)
            need = sum(1 for c in counts if c >= count)
            raise OltrError(
                f"the profile needs {need} classes with at least {count} training images each (after the "
                f"val/test images), but only {able} classes have that many; lower --max or use fewer "
                "val/test images per class"
            )
        assigned[free[pick]] = count
        free = free[:pick] + free[pick + 1 :]
    return assigned


def build_lt_split(
    class_files: Mapping[str, Sequence[str]],
    known_classes: Sequence[str],
    open_classes: Sequence[str],
    profile: Profile,
    *,
    val_per_class: int,
    test_per_class: int,
    open_per_class: int | None,
    seed: int,
    source_name: str = "the dataset",
) -> BuiltSplit:
    """Draw train/val/test/open lists from per-class image lists (see the module docstring).

    Labels are the positions of ``known_classes``. Raises :class:`OltrError` naming the class
    when a class has too few images for val + test + its training count.
    """
    sizes = {name: len(class_files.get(name, ())) for name in known_classes}
    capacity = {name: n - val_per_class - test_per_class for name, n in sizes.items()}
    if profile.kind == "pareto":
        smallest = min(profile.class_counts(len(known_classes)))
        short = [name for name in known_classes if capacity[name] < smallest]
        if short:
            name = short[0]
            others = f" (and {len(short) - 1} more classes)" if len(short) > 1 else ""
            raise OltrError(
                f"class {name!r} in {source_name} has {sizes[name]} images; it needs at least "
                f"{test_per_class + val_per_class + smallest} ({test_per_class} test + {val_per_class} val + "
                f"the profile's minimum of {smallest} train){others}"
            )
    counts = assign_counts(list(known_classes), profile, seed, capacity)
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(known_classes):
        files = sorted(class_files.get(name, ()))
        need = test_per_class + val_per_class + counts[name]
        if len(files) < need:
            raise OltrError(
                f"class {name!r} in {source_name} has {len(files)} images; it needs {need} "
                f"({test_per_class} test + {val_per_class} val + {counts[name]} train)"
            )
        order = class_rng(seed, "class", name).permutation(len(files))
        picked = [files[int(i)] for i in order[:need]]
        lists["test"] += [(p, label) for p in picked[:test_per_class]]
        lists["val"] += [(p, label) for p in picked[test_per_class : test_per_class + val_per_class]]
        lists["train"] += [(p, label) for p in picked[test_per_class + val_per_class :]]
    if open_classes:
        lists["open"] = []
        for name in open_classes:
            files = sorted(class_files.get(name, ()))
            take = len(files) if open_per_class is None else open_per_class
            if len(files) < take or not files:
                raise OltrError(f"open class {name!r} in {source_name} has {len(files)} images; it needs {max(take, 1)}")
            order = class_rng(seed, "open", name).permutation(len(files))
            lists["open"] += [(files[int(i)], -1) for i in order[:take]]
    return BuiltSplit(lists, [counts[name] for name in known_classes])
