"""``oltr-bench make-splits``: build a benchmark split directory (SPEC.md §1)."""

from __future__ import annotations

from pathlib import Path

import click

from oltr_bench.errors import OltrError
from oltr_bench.paths import splits_root
from oltr_bench.registry import DATASETS
from oltr_bench.splits.datasets import check_options
from oltr_bench.splits.profile import Profile


def _profile(alpha, max_count, min_count, counts) -> Profile | None:
    if counts:
        try:
            values = [int(c) for c in counts.replace(",", " ").split()]
        except ValueError:
            raise OltrError(f"--counts {counts!r}: expected comma-separated integers") from None
        if alpha is not None or max_count is not None or min_count is not None:
            raise OltrError("--counts gives the profile explicitly; do not combine it with --alpha/--max/--min")
        return Profile("counts", counts=tuple(values))
    if alpha is None and max_count is None and min_count is None:
        return None
    if None in (alpha, max_count, min_count):
        raise OltrError("a Pareto profile needs all of --alpha, --max and --min")
    return Profile("pareto", alpha=alpha, max_count=max_count, min_count=min_count)


@click.command("make-splits")
@click.option("--dataset", "dataset", default="embedded", show_default=True, help="Dataset to build (see 'oltr-bench datasets').")
@click.option("--root", type=click.Path(path_type=Path), help="The dataset as you have it on disk.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Parent folder of the split directory [default: oltr_work/splits].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--name", help="folder: dataset name for the split directory [default: the root folder's name].")
@click.option("--open-classes", type=int, help="folder: number of classes held out as the open set [default: a fifth].")
@click.option("--alpha", type=float, help="folder: Pareto shape of the long-tailed profile.")
@click.option("--max", "max_count", type=int, help="folder: training images of the largest class.")
@click.option("--min", "min_count", type=int, help="folder: training images of the smallest class.")
@click.option("--counts", help="folder: explicit per-class training counts, comma-separated (in sorted class order).")
@click.option("--val-per-class", type=int, help="folder: validation images per class [default: 20].")
@click.option("--test-per-class", type=int, help="folder: test images per class [default: 50].")
@click.option("--open-per-class", type=int, help="folder: open-set images per held-out class [default: all].")
@click.option("--workers", type=int, help="embedded: rendering processes [default: 2].")
@click.option("--overwrite", is_flag=True, help="Replace an existing split directory.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def make_splits_cmd(dataset, root, out, seed, name, open_classes, alpha, max_count, min_count, counts,
                    val_per_class, test_per_class, open_per_class, workers, overwrite, no_progress) -> None:
    """Build train/val/test/open lists and a manifest for a dataset.

    With no --dataset it builds the embedded benchmark: 120 known and 24 open character classes
    rendered locally (no data, no network), long-tailed with the same Pareto split code as the
    real benchmarks. Prints the split directory it wrote.

    \b
    Examples:
      oltr-bench make-splits
      oltr-bench make-splits --dataset folder --root ~/data/flowers --open-classes 10 --alpha 6 --max 500 --min 5
    """
    spec = DATASETS.get(dataset)()
    profile = _profile(alpha, max_count, min_count, counts)
    options = {
        "root": root, "name": name, "open_classes": open_classes, "profile": profile,
        "val_per_class": val_per_class, "test_per_class": test_per_class, "open_per_class": open_per_class,
        "workers": workers,
    }
    check_options(spec, options)
    split = spec.make_splits(
        out or splits_root(), seed=seed, overwrite=overwrite, progress=not no_progress,
        **{k: v for k, v in options.items() if v is not None},
    )
    files = split.manifest["files"]
    counts_text = ", ".join(f"{k} {v['lines']:,}" for k, v in files.items())
    click.echo(f"{split.dataset}: {split.num_classes} classes; {counts_text}; fingerprint {split.fingerprint[:16]}", err=True)
    click.echo(str(split.path))


COMMANDS = (make_splits_cmd,)
