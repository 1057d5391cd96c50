"""``oltr-bench report``: tables and the leaderboard site from runs, results files and leaderboard entries."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from oltr_bench.errors import OltrError
from oltr_bench.paths import runs_root
from oltr_bench.report.tables import FORMATS, parse_columns, render
from oltr_bench.utils.io import atomic_write_text

log = logging.getLogger(__name__)


@click.command("report")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="md", show_default=True, help="Table format: Markdown, CSV or LaTeX.")
@click.option("--output", type=click.Path(path_type=Path), help="Write the tables to this file instead of standard output.")
@click.option("--html", "html", type=click.Path(path_type=Path), help="Build the leaderboard site in this folder (new, empty or an earlier site); tables are then printed only with --format or --output.")
@click.option("--columns", help="Markdown and LaTeX: the columns after the name, comma-separated, e.g. "
              "'backbone,many,medium,few,top1,open_f1' (keys: backbone, pretraining, extra_data, epochs, source, tau, seeds, "
              "other, and the metric keys of SPEC.md §3) [default: every description column and many, medium, few, top1, "
              "open_f1, auroc, fpr95, oscr].")
@click.option("--percent", is_flag=True, help="Markdown and LaTeX tables in percent instead of fractions (CSV always holds fractions; the site shows "
              "percent with a switch to fractions).")
@click.option("--no-leaderboard", is_flag=True, help="Leave out the leaderboard entries (the shipped ones and those in oltr_work/leaderboard).")
@click.option("--no-plots", is_flag=True, help="Build the site without plots (faster).")
@click.option("--local-paths", is_flag=True, help="Show the runs' absolute paths (site and CSV) and OS/kernel (site) as recorded "
              "(default: paths relative to the runs or work folder, OS left out, so the site and tables can be published).")
def report_cmd(paths, fmt, output, html, columns, percent, no_leaderboard, no_plots, local_paths) -> None:
    """Tables of many/medium/few/top-1, open F, AUROC, FPR@95 and OSCR, and the leaderboard site.

    PATHS may be run directories, results.json files, leaderboard entry files, face_results.json
    files (SPEC.md §6; Markdown and the site show them as face identification tables with CMC),
    or folders searched for them [default: oltr_work/runs]. Seeds of one configuration are averaged
    (mean ± std, with the seed count). One table per dataset and protocol; the tables also show
    the leaderboard entries of the datasets you report on, the site shows every entry, and its
    index a methods overview: your runs next to the published results of every dataset.

    \b
    Examples:
      oltr-bench report oltr_work/runs --output report.md
      oltr-bench report --format latex --percent --columns backbone,many,medium,few,top1,open_f1
      oltr-bench report oltr_work/runs --html site/    # then open site/index.html
    """
    from oltr_bench.report.collect import collect, leaderboard_dirs
    from oltr_bench.report.rows import build_rows, rows_for_tables
    from oltr_bench.report.site import build_site
    ctx = click.get_current_context()
    tables_wanted = not html or output or ctx.get_parameter_source("fmt") != click.core.ParameterSource.DEFAULT
    for flag, given in (("--percent", percent), ("--columns", columns is not None)):
        if given and not tables_wanted:
            raise OltrError(f"{flag} applies to the tables, and with --html they are written only with --format or --output; "
                            "the site has its own percent/fraction switch and column groups")
    selected = None if columns is None else parse_columns(columns)
    if paths:
        inputs = list(paths)
    else:
        inputs = [runs_root()] if runs_root().is_dir() else []
    collected = collect(inputs, leaderboard_dirs=[] if no_leaderboard else leaderboard_dirs())
    if not collected.runs and not collected.entries and not collected.faces:
        where = ", ".join(map(str, inputs)) or str(runs_root())
        raise OltrError(f"nothing to report: no results.json or leaderboard entry found under {where}; run 'oltr-bench run' first")
    rows = build_rows(collected)
    if tables_wanted:
        text = render(rows_for_tables(rows), fmt, percent, local_paths, selected)
        if collected.faces and fmt == "md":  # face identification (SPEC.md §6): its own table per dataset and protocol
            from oltr_bench.report.faces import face_rows, markdown
            text = text.rstrip("\n") + "\n\n" + markdown(face_rows(collected.faces), percent) + "\n"
        if output:
            atomic_write_text(output, text)
            log.info("tables written to %s", output)
        else:
            click.echo(text)
    if html:
        summary = build_site(rows, html, plots=not no_plots, progress=True, local_paths=local_paths, faces=collected.faces)
        log.info("%d pages, %d plots drawn, %d reused", summary.pages, summary.plots_drawn, summary.plots_reused)
        click.echo(f"site: {summary.index.resolve()}")


COMMANDS = (report_cmd,)
