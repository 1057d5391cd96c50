"""``oltr-bench evaluate``: score a predictions file against a split (SPEC.md §2–3)."""

from __future__ import annotations

from pathlib import Path

import click

from oltr_bench.metrics.evaluate import DEFAULT_THRESHOLD, evaluate_file, write_results
from oltr_bench.metrics.protocols import PROTOCOLS
from oltr_bench.report.tables import markdown
from oltr_bench.splits.format import load_split_dir


@click.command("evaluate")
@click.option("--predictions", required=True, type=click.Path(path_type=Path), help="Predictions .npz (SPEC.md §2).")
@click.option("--splits", required=True, type=click.Path(path_type=Path), help="The split directory the predictions were made for.")
@click.option("--protocol", type=click.Choice(sorted(PROTOCOLS)), default="oltr", show_default=True, help="Shot thresholds and F-measure rule.")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True, help="Open-set threshold τ on the known score.")
@click.option("--set", "which", type=click.Choice(["test", "val"]), default="test", show_default=True, help="Evaluation set: test (+ open) or val.")
@click.option("--partial", is_flag=True, help="Score only the ids present (for --quick runs; never a valid submission).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=Path("results.json"), show_default=True, help="Where to write the results.")
def evaluate_cmd(predictions, splits, protocol, threshold, which, partial, json_out) -> None:
    """Validate a predictions file against a split and compute every metric.

    The file must hold every test and open id of the split exactly once (any order), scores
    with the split's class count, and the split's fingerprint. Writes the results JSON
    atomically and prints a short table.

    \b
    Example:
      oltr-bench evaluate --predictions run/predictions/test.npz --splits oltr_work/splits/embedded
    """
    split = load_split_dir(splits)
    results = evaluate_file(predictions, split, which=which, protocol=protocol, threshold=threshold, partial=partial)
    results["provenance"]["predictions"] = str(predictions)
    write_results(json_out, dict(results))
    results["_path"] = str(json_out)
    click.echo(markdown([results]))
    click.echo(f"results written to {json_out}", err=True)


COMMANDS = (evaluate_cmd,)
