"""The datasets ``make-splits`` knows, registered in :data:`oltr_bench.registry.DATASETS`.

Each dataset is a :class:`~oltr_bench.splits.spec.DatasetSpec` subclass that says what it needs on
disk and turns the user's copy into a split directory (SPEC.md §1). The embedded benchmark and any
image-folder dataset are defined here; ImageNet-LT, Places-LT and MS1M-LT have a module each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits import glyphs
from oltr_bench.splits.builder import assign_counts, build_lt_split, class_rng
from oltr_bench.splits.format import SplitDir, write_split_dir
from oltr_bench.splits.profile import PartialPareto, Profile, fit_pareto_max
from oltr_bench.splits.scan import scan_class_folders
from oltr_bench.splits.spec import PROFILE_OPTIONS, DatasetSpec, check_options, ensure_free, write_checked_split

__all__ = ["DatasetSpec", "check_options", "Embedded", "Folder"]


@DATASETS.register("embedded")
class Embedded(DatasetSpec):
    """Rendered-glyph open long-tailed benchmark generated locally (no data, no network)."""

    name = "embedded"
    needs = "nothing: 120 known + 24 open character classes are rendered from matplotlib's fonts (32x32 PNG)"
    sources = (("the glyphs", "matplotlib's bundled fonts, rendered on this machine"),)
    options = frozenset({"workers"})

    num_known = 120
    num_open = 24
    profile = Profile("pareto", alpha=6.0, max_count=500, min_count=4)
    val_per_class = 10
    test_per_class = 30
    open_per_class = 30

    def make_splits(self, out_root: Path, *, seed: int, overwrite: bool, progress: bool, workers: int | None = None, **_: Any) -> SplitDir:
        ensure_free(out_root / self.name, overwrite)
        known, unknown = glyphs.choose_classes(self.num_known, self.num_open, seed)
        train_counts = assign_counts([glyphs.class_dir(c) for c in known], self.profile, seed)
        plan = {c: train_counts[glyphs.class_dir(c)] + self.val_per_class + self.test_per_class for c in known}
        plan.update({c: self.open_per_class for c in unknown})
        # Rendering is deterministic, so the file names are known before the images exist.
        class_files = {glyphs.class_dir(c): [f"{glyphs.class_dir(c)}/{i:05d}.png" for i in range(n)] for c, n in plan.items()}
        built = build_lt_split(
            class_files,
            [glyphs.class_dir(c) for c in known],
            [glyphs.class_dir(c) for c in unknown],
            self.profile,
            val_per_class=self.val_per_class,
            test_per_class=self.test_per_class,
            open_per_class=self.open_per_class,
            seed=seed,
            source_name="the embedded benchmark",
        )
        source = {
            "kind": "generated",
            "generator": "oltr_bench.splits.glyphs",
            "seed": seed,
            "profile": self.profile.to_dict(),
            "val_per_class": self.val_per_class,
            "test_per_class": self.test_per_class,
            "open_per_class": self.open_per_class,
            "image_size": glyphs.IMAGE_SIZE,
            "open_classes": [glyphs.class_name(c) for c in unknown],
            "render": glyphs.font_versions(),
        }

        def render(tmp: Path) -> None:
            glyphs.render_tree(tmp / "images", plan, seed, workers=workers, progress=progress)

        return write_split_dir(
            out_root / self.name,
            dataset=self.name,
            prefix="Embedded_LT",
            classes=[glyphs.class_name(c) for c in known],
            lists=built.lists,
            roots={split: "images" for split in ("train", "val", "test", "open")},
            source=source,
            populate=render,
            overwrite=overwrite,
        )


@DATASETS.register("folder")
class Folder(DatasetSpec):
    """Any image-folder dataset (<root>/<class>/<images>) turned into an open long-tailed split."""

    name = "folder"
    needs = "--root DIR with one subfolder of images per class; some classes are held out as the open set"
    sources = (("the images", "your own image folders"),)
    options = frozenset({"root", "name", "open_classes", "val_per_class", "test_per_class", "open_per_class"}) | PROFILE_OPTIONS

    # Defaults for what --alpha/--min leave open (--max is fitted to the class folders).
    default_alpha = 6.0
    default_min = 5

    def make_splits(
        self,
        out_root: Path,
        *,
        seed: int,
        overwrite: bool,
        progress: bool,
        root: Path | None = None,
        name: str | None = None,
        open_classes: int | None = None,
        profile: Profile | PartialPareto | None = None,
        val_per_class: int | None = None,
        test_per_class: int | None = None,
        open_per_class: int | None = None,
        **_: Any,
    ) -> SplitDir:
        if root is None:
            raise OltrError("dataset 'folder' needs --root DIR (a folder with one subfolder per class)")
        dataset = split_name(name, Path(root))
        ensure_free(out_root / dataset, overwrite)
        class_files = scan_class_folders(Path(root), progress=progress)
        names = sorted(class_files)
        n_open = len(names) // 5 if open_classes is None else open_classes
        if not 0 <= n_open < len(names):
            raise OltrError(f"--open-classes {n_open}: {root} has {len(names)} classes; at least one must stay known")
        order = class_rng(seed, "open-classes").permutation(len(names))
        unknown = sorted(names[int(i)] for i in order[:n_open])
        known = [c for c in names if c not in unknown]
        val = 20 if val_per_class is None else val_per_class
        test = 50 if test_per_class is None else test_per_class
        from_data: list[str] = []
        if not isinstance(profile, Profile):
            # Defaults come from the data: what --alpha/--max/--min leave open is fitted to the classes.
            given = profile or PartialPareto()
            _check_class_sizes(Path(root), class_files, known, val, test, given.min_count)
            room = [len(class_files[c]) - val - test for c in known]
            smallest = min(room)
            alpha = self.default_alpha if given.alpha is None else given.alpha
            low = min(self.default_min, smallest, given.max_count or smallest) if given.min_count is None else given.min_count
            # The largest class is not enough: with uneven classes the 2nd, 3rd... largest counts
            # must fit the 2nd, 3rd... largest classes too.
            high = fit_pareto_max(room, alpha, low) if given.max_count is None else given.max_count
            from_data = [key for key, value in (("max", given.max_count), ("min", given.min_count)) if value is None]
            profile = given.complete(alpha, high, low)
        built = build_lt_split(
            class_files, known, unknown, profile,
            val_per_class=val, test_per_class=test, open_per_class=open_per_class, seed=seed, source_name=str(root),
        )
        source = {
            "kind": "generated",
            "generator": "folder",
            "seed": seed,
            "profile": profile.to_dict(),
            "profile_from_data": from_data,
            "val_per_class": val,
            "test_per_class": test,
            "open_per_class": open_per_class,
            "open_classes": unknown,
        }
        return write_checked_split(
            out_root / dataset, dataset=dataset, classes=known, lists=built.lists,
            roots={split: str(Path(root).resolve()) for split in built.lists}, source=source, overwrite=overwrite,
            progress=progress,
        )


SPLIT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def split_name(name: str | None, root: Path) -> str:
    """The split directory name: ``--name`` or the root folder's name, lower-cased and checked.

    The name becomes a folder under ``--out``, so it must not be able to leave it (``..``, ``/``).
    """
    if name is not None:
        chosen, what, fix = name.lower(), f"--name {name!r}", ""
    else:
        chosen = root.resolve().name.lower().replace("-", "_").replace(" ", "_") or "folder"
        what, fix = f"the split name {chosen!r} (from the folder name of --root {root})", "; choose one with --name"
    if not SPLIT_NAME.fullmatch(chosen):
        raise OltrError(
            f"{what} is not a valid split name: expected letters, digits, '_', '.' or '-', starting with a letter or "
            f"digit ([A-Za-z0-9][A-Za-z0-9_.-]*, lower-cased){fix}"
        )
    return chosen


def _check_class_sizes(root: Path, class_files: dict[str, list[str]], known: list[str], val: int, test: int,
                       min_count: int | None) -> None:
    """Every known class folder must hold its test and val images and at least ``--min`` (or 1) for training."""
    least = 1 if min_count is None else min_count
    need = test + val + least
    short = sorted((c for c in known if len(class_files[c]) < need), key=lambda c: (len(class_files[c]), c))
    if not short:
        return
    first = short[0]
    others = ""
    if len(short) > 1:
        examples = ", ".join(f"{c} ({len(class_files[c])})" for c in short[1:4])
        others = f"; {len(short) - 1} more of the {len(known)} known class folders are short too: {examples}" + (", ..." if len(short) > 4 else "")
    lower = "--test-per-class/--val-per-class" + ("/--min" if min_count is not None else "")
    raise OltrError(
        f"class folder {root / first} has {len(class_files[first])} images; it needs at least {need} "
        f"({test} test + {val} val + {least} train){others}; lower {lower}, or add images to "
        + ("these folders" if others else "the folder")
    )

