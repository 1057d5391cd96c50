"""``oltr-bench evaluate``: score a predictions file against a split (SPEC.md §2–3)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from oltr_bench.engine.rundir import RUN_FORMAT
from oltr_bench.errors import OltrError
from oltr_bench.metrics.protocols import DEFAULT_THRESHOLD, PROTOCOLS
from oltr_bench.splits.format import load_split_dir

SUMMARY_LINES = (
    ("closed set", ("top1", "many", "medium", "few", "macro_f1", "ece")),
    ("open set", ("open_top1", "open_many", "open_medium", "open_few", "open_f1")),
    ("detection", ("auroc", "aupr_in", "aupr_out", "fpr95", "oscr")),
    ("open samples", ("open_accept_rate", "open_absorbed_many", "open_absorbed_medium", "open_absorbed_few")),
)


def summary(metrics: dict) -> str:
    """Every metric on four labelled lines (the table above it shows only the headline columns); – = undefined."""

    def value(key: str) -> str:
        return "–" if metrics.get(key) is None else f"{metrics[key]:.3f}"

    width = max(len(label) for label, _ in SUMMARY_LINES)
    return "\n".join(
        f"{label + ':':<{width + 1}}  " + "  ".join(f"{key} {value(key)}" for key in keys) for label, keys in SUMMARY_LINES
    )


def _refuse_run_directory(default: Path) -> None:
    """Never write the default ./results.json into a run directory: it is that run's result.

    A run's results.json is written last and marks it complete, so replacing it (or adding one
    to an unfinished run) would change what the run claims; --json says where on purpose.
    """
    manifest = default.parent / "manifest.json"
    try:
        is_run = json.loads(manifest.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return  # no manifest, or not one a run writes
    if is_run:
        what = "would replace that run's results.json" if default.exists() else "would mark that unfinished run complete"
        raise OltrError(
            f"the current folder {default.parent.resolve()} is a run directory (its manifest.json is a run manifest), and "
            f"writing the default ./results.json {what}; pass --json PATH to write the results elsewhere "
            "(or --json results.json to replace the run's on purpose)"
        )


@click.command("evaluate")
@click.option("--predictions", required=True, type=click.Path(path_type=Path), help="Predictions .npz (SPEC.md §2).")
@click.option("--splits", required=True, type=click.Path(path_type=Path), help="The split directory the predictions were made for.")
@click.option("--protocol", type=click.Choice(sorted(PROTOCOLS)), default="oltr", show_default=True, help="Shot thresholds and F-measure rule (SPEC.md §3).")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True, help="Open-set threshold τ on the known score (ignored when the file has 'pred').")
@click.option("--set", "which", type=click.Choice(["test", "val"]), default="test", show_default=True, help="Evaluation set: test (+ open) or val.")
@click.option("--method", default=None, help="Method name recorded in the results (default: the file's meta 'method').")
@click.option("--partial", is_flag=True, help="Score only the ids present (for --quick runs; never a valid submission).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Where to write the results [default: ./results.json, except in a run directory, whose results.json is the run's].")
def evaluate_cmd(predictions, splits, protocol, threshold, which, method, partial, json_out) -> None:
    """Validate a predictions file against a split and compute every metric.

    The file must hold every id of the evaluation set exactly once, in any order: the test and
    open ids for --set test, the val ids for --set val (with --partial, at least one of them, each at most
    once, and no others); finite scores with the split's class count (probabilities that sum to
    1), 'pred' values in {-1, 0..C-1} if given, and the split's fingerprint. It is read without
    unpickling. Each problem is reported with the key, what was found and what was expected.
    Writes the results JSON atomically (metrics, per-class accuracy, curves for plots) and prints
    a short table.

    \b
    Example:
      oltr-bench evaluate --predictions run/predictions/test.npz --splits oltr_work/splits/embedded
      oltr-bench evaluate --predictions p.npz --splits DIR --method mine --protocol oltr-2019 --threshold 0.2 --json r.json
    """
    from oltr_bench.metrics.evaluate import evaluate_file, write_results
    from oltr_bench.report.tables import markdown
    if json_out is None:
        json_out = Path("results.json")
        _refuse_run_directory(json_out)
    split = load_split_dir(splits)
    results = evaluate_file(predictions, split, which=which, protocol=protocol, threshold=threshold, method=method, partial=partial)
    results["provenance"]["predictions"] = str(predictions)
    write_results(json_out, results)
    click.echo(markdown([{**results, "_path": str(json_out)}]))
    click.echo(summary(results["metrics"]))
    click.echo(f"results written to {json_out}", err=True)


COMMANDS = (evaluate_cmd,)
