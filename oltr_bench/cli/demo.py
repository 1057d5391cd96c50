"""``oltr-bench demo``: the whole pipeline on the embedded benchmark, no data or network needed."""

from __future__ import annotations

import logging

import click

from oltr_bench.paths import report_dir, runs_root, splits_root
from oltr_bench.registry import DATASETS
from oltr_bench.splits.format import SplitDir, load_split_dir
from oltr_bench.utils.io import atomic_write_text

log = logging.getLogger(__name__)


@click.command("demo")
@click.option("--method", "methods", multiple=True, default=("plain", "dme"), show_default=True,
              help="Methods to run (repeatable); the default is OLTR's plain model and its meta-embedding (dme), "
                   "which starts from the plain run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the embedded benchmark and of training.")
@click.option("--quick", is_flag=True, help="Tiny runs (seconds), for trying the setup.")
def demo_cmd(methods, seed, quick) -> None:
    """Build the embedded benchmark, train and evaluate methods, and write a report.

    Runs make-splits (reusing an existing embedded split with the same seed), then run for each
    method, then the face-identification analogue of MS1M-LT on each run (embed + evaluate-faces,
    heldout protocol: known classes give the shot groups, open classes the zero-shot probes and the
    distractors; one identification line per method), then report: Markdown tables and the HTML leaderboard site (these runs next to the
    published results shipped with oltr-bench); prints where both are.

    \b
    Examples:
      oltr-bench demo
      oltr-bench demo --method plain --method crt --method dme
    """
    from oltr_bench.engine.runner import run_method
    from oltr_bench.report.collect import collect, leaderboard_dirs
    from oltr_bench.report.rows import build_rows, rows_for_tables
    from oltr_bench.report.site import build_site
    from oltr_bench.report.tables import markdown_tables
    split_path = splits_root() / "embedded"
    if SplitDir.exists(split_path) and load_split_dir(split_path).manifest["source"].get("seed") == seed:
        split = load_split_dir(split_path)
        log.info("using the embedded split in %s", split_path)
    else:
        split = DATASETS.get("embedded")().make_splits(splits_root(), seed=seed, overwrite=True, progress=True)
        log.info("embedded split written to %s", split.path)
    run_dirs = []
    for method in methods:
        run_dirs.append(run_method(method, split, runs_root=runs_root(), overrides=[f"seed={seed}"], quick=quick))
    from oltr_bench.cli.faces import identification_line
    from oltr_bench.engine.embed import identify_run
    for run_dir in run_dirs:
        identify_run(run_dir)  # the embedded analogue of MS1M-LT's face identification: RUN/face_results.json
    collected = collect(run_dirs, leaderboard_dirs=leaderboard_dirs())
    rows, faces = build_rows(collected), collected.faces  # the face results as report reads them (with the run's profile)
    report = report_dir() / "report.md"
    from oltr_bench.report.faces import face_rows, markdown as face_markdown
    text = markdown_tables(rows_for_tables(rows)).rstrip("\n") + "\n\n" + face_markdown(face_rows(faces)) + "\n"
    atomic_write_text(report, "# oltr-bench demo report\n\n" + text)
    site = build_site(rows, report_dir() / "site", progress=True, faces=faces)
    click.echo(text)
    for results in faces:
        click.echo(identification_line(results))
    click.echo(f"report: {report.resolve()}")
    click.echo(f"methods overview, these runs next to the published OLTR results: {site.index.resolve().as_uri()}#methods")
    click.echo(f"site: {site.index.resolve()}  (open it in a browser)")


COMMANDS = (demo_cmd,)
