"""``oltr-bench run``: train and evaluate a registered method through the one harness."""

from __future__ import annotations

from pathlib import Path

import click

from oltr_bench.errors import OltrError
from oltr_bench.paths import runs_root
from oltr_bench.registry import DATASETS, METHODS
from oltr_bench.splits.locate import find_split, split_by_name


def resolve_split_dir(dataset: str | None, splits: Path | None):
    """The split named by ``--splits DIR`` or by ``--dataset NAME`` (looked up under oltr_work/splits)."""
    if splits is not None and dataset is not None:
        raise OltrError("give either --dataset NAME or --splits DIR, not both")
    return split_by_name(dataset or "embedded") if splits is None else find_split(splits)


@click.command("run")
@click.option("--method", required=True, help="Registered method name (see 'oltr-bench methods').")
@click.option("--dataset", help="Dataset whose split lies under oltr_work/splits [default: embedded].")
@click.option("--splits", type=click.Path(path_type=Path), help="Split directory written by make-splits.")
@click.option("--out", type=click.Path(path_type=Path), help="Runs folder [default: oltr_work/runs].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value, e.g. --set train.epochs=5 (repeatable).")
@click.option("--quick", is_flag=True, help="Seconds-long reduced run of the same code path (tiny subset, a few steps).")
@click.option("--resume", is_flag=True,
              help="Continue the newest unfinished run of this method with the same config from its last epoch checkpoint "
                   "(exactly as if never interrupted); a new run if there is none.")
@click.option("--stage1", type=click.Path(path_type=Path), help="Stage-1 run directory a stage-2 method starts from [default: found or trained].")
@click.option("--no-lr-scaling", is_flag=True,
              help="Keep the configured learning rates when the global batch differs from train.reference_batch_size "
                   "(default: scale them linearly); prints a warning.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: the GPU of this process (cuda:LOCAL_RANK) if there is one, else the CPU.")
@click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images and count them in the manifest (default: fail naming the file).")
@click.option("--tensorboard", is_flag=True,
              help="Also log to <run>/tensorboard (needs the tensorboard package, which is not installed by default).")
@click.option("--allow-unsafe-checkpoints", is_flag=True,
              help="Also load format-1 checkpoints (written by oltr-bench before checkpoints became weights-only), "
                   "which pickled numpy arrays: still weights-only, with numpy's array types allowed and nothing else.")
@click.option("--print-config", is_flag=True,
              help="Print the resolved config (every value with its meaning and the file or --set it came from) and exit; "
                   "needs no split: --dataset names the config folder.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run_cmd(method, dataset, splits, out, overrides, quick, resume, stage1, no_lr_scaling, device, skip_corrupt, tensorboard,
            allow_unsafe_checkpoints, print_config, no_progress) -> None:
    """Train and evaluate a method; prints the run directory.

    The run directory holds the resolved config.yaml, manifest.json, train_log.jsonl,
    checkpoints/ (best.pt, and last.pt after every epoch), predictions/val.npz,
    predictions/test.npz and results.json. A stage-2 method (e.g. dme) starts from a matching
    stage-1 plain run, which is trained first if none exists.

    train.batch_size is the global batch. Several GPUs or nodes: start the same command with
    torchrun (nccl on GPUs, gloo on CPU); every process trains on its share of each global batch.

    \b
    Examples:
      oltr-bench run --method plain --quick
      oltr-bench run --method dme --dataset imagenet_lt --set train.batch_size=256
      oltr-bench run --method plain --dataset imagenet_lt --resume
      torchrun --nproc_per_node 8 -m oltr_bench run --method plain --dataset imagenet_lt --set train.batch_size=1024
      oltr-bench run --method dme --dataset imagenet_lt --print-config
    """
    method = METHODS.canonical(method)  # an unknown method fails before anything else
    extra = [*(["train.lr_scaling=false"] if no_lr_scaling else []), *(["data.skip_corrupt=true"] if skip_corrupt else []),
             *(["log.tensorboard=true"] if tensorboard else [])]
    if print_config:
        from oltr_bench.config import render, resolve

        name = find_split(splits).dataset if splits else DATASETS.canonical(dataset) if dataset in DATASETS else dataset or "embedded"
        click.echo(render(resolve(method, name, METHODS.get(method).defaults, [*overrides, *extra])), nl=False)
        return
    from oltr_bench.engine import distributed
    from oltr_bench.engine.runner import run_method
    from oltr_bench.log import only_rank_zero

    split = resolve_split_dir(dataset, splits)
    dist = distributed.setup(device)
    only_rank_zero(dist.rank)
    try:
        run_dir = run_method(
            method, split, runs_root=out or runs_root(), overrides=[*overrides, *extra], quick=quick, resume=resume,
            progress=not no_progress, stage1=stage1, dist=dist, allow_unsafe_checkpoints=allow_unsafe_checkpoints,
        )
    finally:
        distributed.teardown(dist)
    if dist.is_main:
        click.echo(str(run_dir))


COMMANDS = (run_cmd,)
