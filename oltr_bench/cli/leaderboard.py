"""``oltr-bench leaderboard add|submit|validate|verify|workflow``: entries of the leaderboard (SPEC.md §4)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.report import entries as lb
from oltr_bench.formats.jsonio import read_json
from oltr_bench.formats.rundir import RunDir
from oltr_bench.protocols import DEFAULT_THRESHOLD, PROTOCOLS
from oltr_bench.registry import DATASETS
from oltr_bench.report.collect import load_run, refuse_predictions
from oltr_bench.paths import splits_root
from oltr_bench.splits.locate import find_split, split_by_name

log = logging.getLogger(__name__)


@click.group("leaderboard")
def leaderboard_cmd() -> None:
    """Add, submit, check and re-verify leaderboard entries.

    A leaderboard is a folder of JSON files, <dir>/<dataset>/<slug>.json, one per entry
    (SPEC.md §4). 'oltr-bench report --html' renders them next to your runs.

    \b
    From predictions to the site:
      oltr-bench evaluate --predictions test.npz --splits imagenet_lt --method mine   # look at the numbers
      oltr-bench leaderboard submit test.npz --dataset imagenet_lt --name "Mine" --method mine
      oltr-bench report --html site/
    \b
    Examples:
      oltr-bench leaderboard add oltr_work/runs/imagenet_lt/dme/20250101-120000-abcd1234 --name "DME (ours)"
      oltr-bench leaderboard validate
      oltr-bench leaderboard verify leaderboard --splits splits
    """


def _results_file(path: Path) -> Path:
    if path.is_dir():
        run = RunDir(path)
        if not run.results_file.is_file():
            raise OltrError(f"{path} has no {RunDir.RESULTS}; expected a completed run directory (or its {RunDir.RESULTS})")
        return run.results_file
    if not path.is_file():
        raise OltrError(f"{path} does not exist; expected a run directory, a results.json file or an entry JSON file")
    return path


ENTRY_OPTIONS = (
    click.option("--dir", "root", type=click.Path(path_type=Path), help="Leaderboard folder [default: oltr_work/leaderboard, or $OLTR_BENCH_HOME/leaderboard]."),
    click.option("--backbone", help="Backbone, e.g. resnet10, resnext50 [default for runs: model.backbone of the config]."),
    click.option("--pretraining", help="Pretraining, e.g. 'none' or 'imagenet-1k' [default for runs: from the config]."),
    click.option("--extra-data/--no-extra-data", default=None, help="Whether data beyond the train list was used [default for runs: no]."),
    click.option("--epochs", type=click.IntRange(min=0), help="Training epochs [default for runs: from the manifest]."),
    click.option("--notes", help="Free-text notes shown on the entry's page."),
    click.option("--paper-title", help="Title of the paper describing the method."),
    click.option("--paper-url", help="http(s) link to the paper."),
    click.option("--venue", help="Venue of the paper, e.g. CVPR."),
    click.option("--year", type=click.IntRange(1900, 2100), help="Year of the paper."),
    click.option("--code-url", help="http(s) link to the code."),
    click.option("--slug", help="File name (without .json) [default: from --name]."),
)


def entry_options(command):
    """The options that describe an entry, shared by add and submit."""
    for option in reversed(ENTRY_OPTIONS):
        command = option(command)
    return command


def _described(params: dict) -> tuple[Path, dict, dict]:
    """The leaderboard folder, the descriptive options and the paper of an add or submit command."""
    for key, url in (("--paper-url", params["paper_url"]), ("--code-url", params["code_url"])):
        if url is not None and not lb.is_http_url(url):
            raise OltrError(f"{key} {url!r}: expected an http(s) URL")
    root = params["root"] or lb.default_entries_dir()
    lb.check_writable_location(root)
    options = {key: params.get(key) for key in ("name", "method", "backbone", "pretraining", "extra_data", "epochs", "notes", "code_url")}
    paper = {k: params[p] for k, p in (("title", "paper_title"), ("venue", "venue"), ("year", "year"), ("url", "paper_url"))
             if params[p] is not None}
    return root, options, paper


@leaderboard_cmd.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", help="Name shown on the leaderboard [default: the method].")
@click.option("--method", help="Method name [default: from the results].")
@entry_options
@click.option("--splits", type=click.Path(path_type=Path), help="The split directory, if the run's recorded one moved (used to verify the numbers).")
def add_cmd(paths, splits, **params) -> None:
    """Add a run (or several seeds of one configuration, averaged) as a leaderboard entry.

    PATHS are run directories or results.json files of one configuration (several seeds become
    one entry with mean, std and the seed list), or one entry JSON file with reported numbers.
    The entry is verified only if oltr-bench recomputes its metrics from the run's predictions
    on the dataset's canonical split. The file is written atomically and never replaces another
    entry: a taken name gets a -2, -3, ... suffix. Prints the path of the new entry.
    A predictions file of your own model goes in with 'leaderboard submit'.

    \b
    Examples:
      oltr-bench leaderboard add RUN_DIR --name "DME (ours)" --paper-url https://arxiv.org/abs/1904.05160
      oltr-bench leaderboard add RUN_SEED0 RUN_SEED1 RUN_SEED2 --name "plain, 3 seeds"
      oltr-bench leaderboard add my_paper_entry.json --dir ./leaderboard
    """
    from oltr_bench.report.submit import entry_from_file, entry_from_runs, same_runs_entry  # imports the metrics

    root, options, paper = _described(params)
    for path in paths:
        if path.is_file():
            refuse_predictions(path)
    single = read_json(paths[0], "a leaderboard entry (SPEC.md §4) or a run's results.json") if len(paths) == 1 and paths[0].is_file() else {}
    if formats.is_format(single.get("format"), formats.ENTRY):
        entry = entry_from_file(paths[0], single, options=options, paper=paper)
        why_not = ""
        default_slug = paths[0].stem
    else:
        records = [load_run(_results_file(p)) for p in paths]
        entry, why_not = entry_from_runs(records, options=options, paper=paper, splits=splits, leaderboard=root)
        existing = same_runs_entry(root, entry)
        if existing is not None:
            raise OltrError(f"{existing} already holds an entry for these runs; delete it first to replace it")
        default_slug = entry["name"]
    target = lb.write_entry(root, entry, lb.slugify(params["slug"] or default_slug))
    if entry["source"] == "reproduced":
        log.info("verified: yes" if entry["verified"] else f"verified: no ({why_not})")
    click.echo(str(target))


@leaderboard_cmd.command("submit")
@click.argument("predictions", type=click.Path(path_type=Path))
@click.option("--dataset", required=True, help="The dataset, e.g. imagenet_lt or places_lt: the predictions are scored on its canonical split.")
@click.option("--name", required=True, help="Name shown on the leaderboard.")
@click.option("--method", required=True, help="Method name (the registry name for a method of oltr-bench, e.g. 'crt').")
@entry_options
@click.option("--protocol", type=click.Choice(sorted(PROTOCOLS)), default="oltr", show_default=True, help="Shot thresholds and F-measure rule (SPEC.md §3).")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True, help="Open-set threshold τ (ignored when the file has 'pred').")
@click.option("--splits", help="The canonical split: its directory or a dataset name under oltr_work/splits [default: --dataset's].")
@click.option("--copy-predictions/--no-copy-predictions", default=True, show_default=True,
              help="Keep a copy of the predictions next to the entry (<dir>/<dataset>/predictions/<sha256>.npz), so that "
                   "'leaderboard verify' can re-score it wherever the leaderboard goes; without, the entry names the file where it is.")
def submit_cmd(predictions, dataset, protocol, threshold, splits, copy_predictions, **params) -> None:
    """Score a predictions file on the dataset's canonical split and add it as a verified entry.

    PREDICTIONS is a .npz of the test and open lists (SPEC.md §2: ids, logits or probs, optionally
    pred and known_score), written by 'oltr-bench run', by oltr_bench.evaluate_model(...,
    predictions=PATH) or by your own code with oltr_bench.metrics.write_predictions. It is
    validated and scored as 'evaluate' does; the entry records its sha256 (and, by default, keeps a
    copy), which 'leaderboard verify' re-scores. Prints the path of the new entry.

    \b
    Example:
      oltr-bench leaderboard submit test.npz --dataset imagenet_lt --name "My method" --method mine \\
          --backbone resnet10 --pretraining none --epochs 90 --paper-url https://arxiv.org/abs/...
    """
    from oltr_bench.report.submit import entry_from_predictions, same_predictions_entry
    from oltr_bench.utils.io import sha256_file

    root, options, paper = _described(params)
    if not predictions.is_file():
        raise OltrError(f"{predictions} does not exist; expected a predictions file (.npz, SPEC.md §2)")
    dataset = DATASETS.canonical(dataset) if dataset in DATASETS else dataset
    split = find_split(splits) if splits else split_by_name(dataset)
    if split.dataset != dataset:
        raise OltrError(f"--splits {splits}: a split of {split.dataset!r}, expected one of --dataset {dataset!r}")
    existing = same_predictions_entry(root, dataset, sha256_file(predictions))
    if existing is not None:
        raise OltrError(f"{existing} already holds an entry verified from these predictions; delete it first to replace it")
    entry, stored = entry_from_predictions(predictions, split, protocol=protocol, threshold=threshold, options=options,
                                           paper=paper, leaderboard=root, copy=copy_predictions)
    target = lb.write_entry(root, entry, lb.slugify(params["slug"] or entry["name"]))
    log.info("verified: scored on the canonical %s split; predictions %s at %s", dataset,
             "copied" if copy_predictions else "kept", stored)
    click.echo(str(target))


def _files_to_validate(paths: tuple[Path, ...]) -> list[Path]:
    if not paths:
        root = lb.default_entries_dir()
        paths = (root if root.is_dir() else lb.shipped_entries_dir(),)
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.glob("*.json") if not p.name.startswith(".")) + lb.entry_files(path)
        else:
            raise OltrError(f"{path} does not exist; expected a leaderboard folder or an entry JSON file")
    return files


@leaderboard_cmd.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate_cmd(paths) -> None:
    """Check leaderboard entries against the schema (SPEC.md §4) and their file locations.

    PATHS are entry files or leaderboard folders [default: oltr_work/leaderboard (or
    $OLTR_BENCH_HOME/leaderboard) if it exists, else the entries shipped with oltr-bench]. Every
    problem is listed as 'file: key: found X, expected Y'; the exit status is 2 if any.

    \b
    Example:
      oltr-bench leaderboard validate leaderboard/
    """
    files = _files_to_validate(paths)
    if not files:
        raise OltrError(f"no entry files (<dataset>/<slug>.json) found in {', '.join(map(str, paths))}")
    problems = [f"{path}: {error}" for path, errors in lb.validate_files(files).items() for error in errors]
    if problems:
        bad = len({p.split(': ', 1)[0] for p in problems})
        raise OltrError(f"{bad} of {len(files)} entries are invalid:\n  " + "\n  ".join(problems))
    click.echo(f"{len(files)} entries valid")


def _canonical_splits(given: tuple[str, ...], datasets: set[str]) -> dict:
    """The split of each dataset to re-score with (verify checks that it is the canonical one): from --splits (split directories, folders of them, or
    dataset names under the work folder), else each dataset's split under the work folder if it has one."""
    from oltr_bench.splits.format import SplitDir

    found = []
    for item in given:
        path = Path(item)
        if path.is_dir() and not SplitDir.exists(path):
            found += [find_split(p) for p in sorted(path.iterdir()) if SplitDir.exists(p)]
        else:
            found.append(find_split(item))
    if not given:
        found = [split_by_name(d) for d in sorted(datasets) if SplitDir.exists(splits_root() / d)]
    return {s.dataset: s for s in found}


@leaderboard_cmd.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--splits", "splits", multiple=True,
              help="Canonical split directories to re-score with, a folder of them, or dataset names under oltr_work/splits "
                   "(repeatable) [default: each dataset's split under oltr_work/splits].")
@click.option("--require-predictions", is_flag=True,
              help="Fail on a verified entry whose predictions files are not present (for a leaderboard repository's CI) "
                   "instead of skipping it.")
def verify_cmd(paths, splits, require_predictions) -> None:
    """Re-score every verified entry whose predictions are present, and fail on any difference.

    PATHS are entry files or leaderboard folders [default: as 'validate']. For each entry with
    verified: true, the predictions files it names (verification.predictions, next to the entry)
    must have the recorded sha256 and, scored on the dataset's canonical split under the entry's
    protocol and τ, give exactly the metrics (and std) the entry claims. Entries whose files are
    not present are skipped (listed; an error with --require-predictions), entries that are not
    verified are not re-scored. One line per verified entry; exit status 2 on any failure.

    \b
    Examples:
      oltr-bench leaderboard verify
      oltr-bench leaderboard verify leaderboard --splits splits --require-predictions   # in CI
    """
    from oltr_bench.report.submit import verify_entry

    files = _files_to_validate(paths)
    if not files:
        raise OltrError(f"no entry files (<dataset>/<slug>.json) found in {', '.join(map(str, paths))}")
    datasets = {p.parent.name for p in files}
    canonical = _canonical_splits(splits, datasets)
    checks = [verify_entry(path, canonical, require_predictions=require_predictions) for path in files]
    for check in checks:
        if check.status != "unverified":
            click.echo(f"{check.path}: {check.status}" + (f" ({check.detail})" if check.detail and check.status != "failed" else ""))
    counts = {status: sum(c.status == status for c in checks) for status in ("verified", "skipped", "failed", "unverified")}
    summary = (f"{counts['verified']} verified entries re-scored, {counts['skipped']} skipped (predictions not present), "
               f"{counts['unverified']} not verified (nothing to re-score)")
    failed = [c for c in checks if c.status == "failed"]
    if failed:
        raise OltrError(f"{len(failed)} of {len(files)} entries failed verification:\n  "
                        + "\n  ".join(f"{c.path}: {c.detail}" for c in failed) + f"\n{summary}")
    click.echo(summary)


@leaderboard_cmd.command("workflow")
def workflow_cmd() -> None:
    """Print a GitHub Actions workflow that runs 'leaderboard verify' on each pull request.

    For a leaderboard repository of your own (entries, their predictions and the canonical
    splits); the comments at its top give the layout it expects.

    \b
    Example:
      oltr-bench leaderboard workflow > .github/workflows/verify-leaderboard.yml
    """
    from importlib.resources import files

    from oltr_bench import __version__

    text = (files("oltr_bench.report") / "ci" / "verify-leaderboard.yml").read_text(encoding="utf-8")
    click.echo(text.replace("@VERSION@", __version__), nl=False)


COMMANDS = (leaderboard_cmd,)
