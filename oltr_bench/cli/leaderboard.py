"""``oltr-bench leaderboard add`` and ``leaderboard validate``: entries of the leaderboard (SPEC.md §4)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.report import entries as lb
from oltr_bench.formats.jsonio import read_json
from oltr_bench.formats.rundir import RunDir
from oltr_bench.report.collect import load_run

log = logging.getLogger(__name__)


@click.group("leaderboard")
def leaderboard_cmd() -> None:
    """Add entries to a leaderboard folder and check them.

    A leaderboard is a folder of JSON files, <dir>/<dataset>/<slug>.json, one per entry
    (SPEC.md §4). 'oltr-bench report --html' renders them next to your runs.

    \b
    Examples:
      oltr-bench leaderboard add oltr_work/runs/imagenet_lt/dme/20250101-120000-abcd1234 --name "DME (ours)"
      oltr-bench leaderboard validate
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


@leaderboard_cmd.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dir", "root", type=click.Path(path_type=Path), help="Leaderboard folder [default: ./leaderboard in a clone of oltr-bench, else oltr_work/leaderboard].")
@click.option("--name", help="Name shown on the leaderboard [default: the method].")
@click.option("--method", help="Method name [default: from the results].")
@click.option("--backbone", help="Backbone [default: model.backbone of the run's config].")
@click.option("--pretraining", help="Pretraining, e.g. 'none' or 'imagenet-1k' [default: from the run's config].")
@click.option("--extra-data/--no-extra-data", default=None, help="Whether data beyond the train list was used [default: no, for runs].")
@click.option("--epochs", type=click.IntRange(min=0), help="Training epochs [default: from the run's manifest].")
@click.option("--notes", help="Free-text notes shown on the entry's page.")
@click.option("--paper-title", help="Title of the paper describing the method.")
@click.option("--paper-url", help="http(s) link to the paper.")
@click.option("--venue", help="Venue of the paper, e.g. CVPR.")
@click.option("--year", type=click.IntRange(1900, 2100), help="Year of the paper.")
@click.option("--code-url", help="http(s) link to the code.")
@click.option("--slug", help="File name (without .json) [default: from --name].")
@click.option("--splits", type=click.Path(path_type=Path), help="The split directory, if the run's recorded one moved (used to verify the numbers).")
def add_cmd(paths, root, name, method, backbone, pretraining, extra_data, epochs, notes, paper_title, paper_url, venue, year, code_url, slug, splits) -> None:
    """Add a run (or several seeds of one configuration, averaged) as a leaderboard entry.

    PATHS are run directories or results.json files of one configuration (several seeds become
    one entry with mean, std and the seed list), or one entry JSON file with reported numbers.
    The entry is verified only if oltr-bench recomputes its metrics from the run's predictions
    on the dataset's canonical split. The file is written atomically and never replaces another
    entry: a taken name gets a -2, -3, ... suffix. Prints the path of the new entry.

    \b
    Examples:
      oltr-bench leaderboard add RUN_DIR --name "DME (ours)" --paper-url https://arxiv.org/abs/1904.05160
      oltr-bench leaderboard add RUN_SEED0 RUN_SEED1 RUN_SEED2 --name "plain, 3 seeds"
      oltr-bench leaderboard add my_paper_entry.json --dir ./leaderboard
    """
    from oltr_bench.report.submit import entry_from_file, entry_from_runs, same_runs_entry  # imports the metrics

    for key, url in (("--paper-url", paper_url), ("--code-url", code_url)):
        if url is not None and not lb.is_http_url(url):
            raise OltrError(f"{key} {url!r}: expected an http(s) URL")
    root = root or lb.default_entries_dir()
    lb.check_writable_location(root)
    options = {"name": name, "method": method, "backbone": backbone, "pretraining": pretraining, "extra_data": extra_data,
               "epochs": epochs, "notes": notes, "code_url": code_url}
    paper = {k: v for k, v in (("title", paper_title), ("venue", venue), ("year", year), ("url", paper_url)) if v is not None}
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
    target = lb.write_entry(root, entry, lb.slugify(slug or default_slug))
    if entry["source"] == "reproduced":
        log.info("verified: yes" if entry["verified"] else f"verified: no ({why_not})")
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

    PATHS are entry files or leaderboard folders [default: ./leaderboard in a clone of
    oltr-bench, else oltr_work/leaderboard, else the entries shipped with oltr-bench]. Every
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


COMMANDS = (leaderboard_cmd,)
