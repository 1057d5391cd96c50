"""``oltr-bench make-splits``: build a benchmark split directory (SPEC.md §1)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from oltr_bench.errors import OltrError
from oltr_bench.paths import splits_root
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.registry import DATASETS
from oltr_bench.splits.datasets import check_options
from oltr_bench.splits.profile import PartialPareto, Profile, read_counts, shot_groups
from oltr_bench.splits.spec import PROFILE_OPTIONS

log = logging.getLogger(__name__)


def _profile(alpha, max_count, min_count, counts, dataset: str) -> Profile | PartialPareto | None:
    """The profile flags as one value; the dataset fills what was not given from its defaults."""
    if counts:
        if alpha is not None or max_count is not None or min_count is not None:
            raise OltrError("--counts gives the profile explicitly; do not combine it with --alpha/--max/--min")
        return read_counts(counts, dataset if dataset in ("imagenet_lt", "places_lt") else None)
    if alpha is None and max_count is None and min_count is None:
        return None
    return PartialPareto(alpha, max_count, min_count)


@click.command("make-splits")
@click.option("--dataset", "dataset", default="embedded", show_default=True, help="Dataset to build (see 'oltr-bench datasets').")
@click.option("--root", type=click.Path(path_type=Path), help="The dataset as you have it on disk.")
@click.option("--official", type=click.Path(path_type=Path), help="imagenet/places: folder with the released <Prefix>_*.txt lists to import and verify instead of generating.")
@click.option("--open-root", type=click.Path(path_type=Path), help="imagenet/places: the open-set images (ILSVRC-2010 val + devkit; Places-Extra69 test; or the <Prefix>_open/ folder shipped with the lists).")
@click.option("--allow-missing", is_flag=True, help="Write the split although images are missing: imported lists are kept whole (the manifest counts the missing images); a generated test list leaves out the validation images that are missing.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Parent folder of the split directory [default: oltr_work/splits].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--name", help="folder: name of the split directory, [A-Za-z0-9][A-Za-z0-9_.-]*, lower-cased [default: the root folder's name].")
@click.option("--open-classes", type=int, help="folder: number of classes held out as the open set [default: a fifth].")
@click.option("--alpha", type=float, help="Pareto shape of the long-tailed profile [imagenet 6, places 1.54, folder 6]. Any of --alpha/--max/--min not given takes the dataset's default.")
@click.option("--max", "max_count", type=int, help="Training images of the largest class [imagenet 1280, places 4980, folder: the largest whose profile fits the class folders].")
@click.option("--min", "min_count", type=int, help="Training images of the smallest class [5; folder: 5 or the smallest class's room if less].")
@click.option("--counts", help="Explicit per-class training counts in label order: 'released' (imagenet/places), a file of integers, or 5,7,12,...")
@click.option("--val-per-class", type=int, help="Validation images per class [imagenet/places/folder 20, ms1m 2].")
@click.option("--test-per-class", type=int, help="folder/ms1m: test images per class [folder 50, ms1m 5].")
@click.option("--open-per-class", type=int, help="folder/ms1m: open-set images per held-out class or identity [folder all, ms1m 5].")
@click.option("--train-fraction", type=float, help="ms1m: expected share of all images kept for training [887,500/5,822,653 as in the paper].")
@click.option("--workers", type=int, help="embedded: rendering processes [default: 2].")
@click.option("--overwrite", is_flag=True, help="Replace an existing split directory.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def make_splits_cmd(dataset, root, official, open_root, allow_missing, out, seed, name, open_classes, alpha, max_count,
                    min_count, counts, val_per_class, test_per_class, open_per_class, train_fraction, workers,
                    overwrite, no_progress) -> None:
    """Build train/val/test/open lists and a manifest for a dataset.

    With no --dataset it builds the embedded benchmark: 120 known and 24 open character classes
    rendered locally (no data, no network), long-tailed with the same Pareto split code as the
    real benchmarks. Prints the split directory it wrote; 'oltr-bench datasets' says what each
    dataset needs on disk.

    \b
    Examples:
      oltr-bench make-splits
      oltr-bench make-splits --dataset imagenet --root /data/ILSVRC2012 --open-root /data/ILSVRC2010
      oltr-bench make-splits --dataset imagenet --root /data/ILSVRC2012 --official data/ImageNet_LT
      oltr-bench make-splits --dataset places --root /data/places365 --counts released
      oltr-bench make-splits --dataset ms1m --root /data/faces_emore
      oltr-bench make-splits --dataset folder --root ~/data/flowers --open-classes 10 --alpha 6 --max 500 --min 5
    """
    dataset = DATASETS.canonical(dataset)
    spec = DATASETS.get(dataset)()
    # Keyed by flag name and checked before the profile is built, so an error names the flag typed.
    given = {
        "root": root, "official": official, "open_root": open_root, "allow_missing": allow_missing,
        "name": name, "open_classes": open_classes, "alpha": alpha, "max": max_count, "min": min_count, "counts": counts,
        "val_per_class": val_per_class, "test_per_class": test_per_class, "open_per_class": open_per_class,
        "train_fraction": train_fraction, "workers": workers,
    }
    check_options(spec, given)
    options = {k: v for k, v in given.items() if k not in PROFILE_OPTIONS and v is not None and v is not False}
    profile = _profile(alpha, max_count, min_count, counts, dataset)
    if profile is not None:
        options["profile"] = profile
    split = spec.make_splits(out or splits_root(), seed=seed, overwrite=overwrite, progress=not no_progress, **options)
    files = split.manifest["files"]
    counts_text = ", ".join(f"{k} {v['lines']:,}" for k, v in files.items())
    many, medium, few = shot_groups(split.train_counts)
    log.info("%s: %s classes; %s; fingerprint %s", split.dataset, f"{split.num_classes:,}", counts_text, split.fingerprint[:16])
    log.info("train shape: %d/%d/%d many/medium/few-shot classes (%s)", many, medium, few, PROTOCOLS["oltr"].rule)
    click.echo(str(split.path))


COMMANDS = (make_splits_cmd,)
