"""``oltr-bench report``: tables from run directories, results files and folders of runs."""

from __future__ import annotations

from pathlib import Path

import click

from oltr_bench.errors import OltrError
from oltr_bench.paths import runs_root
from oltr_bench.report.collect import find_results_files, load_results
from oltr_bench.report.tables import markdown
from oltr_bench.utils.io import atomic_write_text


@click.command("report")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md"]), default="md", show_default=True, help="Table format.")
@click.option("--output", type=click.Path(path_type=Path), help="Write the tables to this file instead of standard output.")
def report_cmd(paths, fmt, output) -> None:
    """Tables of many/medium/few/top-1 and open F for runs and results files.

    PATHS may be run directories, results.json files or folders searched for them
    [default: oltr_work/runs]. One table per dataset and protocol.

    \b
    Example:
      oltr-bench report oltr_work/runs --output report.md
    """
    files = find_results_files(paths or [runs_root()])
    if not files:
        raise OltrError(f"no results.json found under {', '.join(map(str, paths or [runs_root()]))}; run 'oltr-bench run' first")
    text = markdown([load_results(f) for f in files])
    if output:
        atomic_write_text(output, text)
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text)


COMMANDS = (report_cmd,)
