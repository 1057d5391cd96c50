"""``oltr-bench evaluate``: score a predictions file against a split (SPEC.md §2–3)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from oltr_bench.formats.rundir import RunDir
from oltr_bench.errors import OltrError
from oltr_bench.metrics.keys import GROUP_TITLES, in_group
from oltr_bench.protocols import DEFAULT_THRESHOLD, PROTOCOLS
from oltr_bench.splits.locate import find_split

def summary(metrics: dict) -> str:
    """Every metric, one labelled line per group (the table above it shows only the headline columns); – = undefined."""

    def value(key: str) -> str:
        return "–" if metrics.get(key) is None else f"{metrics[key]:.3f}"

    lines = [(title, in_group(group)) for group, title in GROUP_TITLES.items()]
    width = max(len(title) for title, _ in lines)
    return "\n".join(f"{title + ':':<{width + 1}}  " + "  ".join(f"{key} {value(key)}" for key in keys) for title, keys in lines)

log = logging.getLogger(__name__)


def _refuse_run_directory(default: Path) -> None:
    """Never write the default ./results.json into a run directory: it is that run's result.

    A run's results.json is written last and marks it complete, so replacing it (or adding one
    to an unfinished run) would change what the run claims; --json says where on purpose.
    """
    if RunDir.holds_run(default.parent):
        what = "would replace that run's results.json" if default.exists() else "would mark that unfinished run complete"
        raise OltrError(
            f"the current folder {default.parent.resolve()} is a run directory (its manifest.json is a run manifest), and "
            f"writing the default ./{RunDir.RESULTS} {what}; pass --json PATH to write the results elsewhere "
            f"(or --json {RunDir.RESULTS} to replace the run's on purpose)"
        )


@click.command("evaluate")
@click.option("--predictions", required=True, type=click.Path(path_type=Path), help="Predictions .npz (SPEC.md §2).")
@click.option("--splits", required=True, help="The split the predictions were made for: its directory, or a dataset name "
              "whose split lies under oltr_work/splits (e.g. embedded, imagenet_lt).")
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
      oltr-bench evaluate --predictions run/predictions/test.npz --splits embedded
      oltr-bench evaluate --predictions p.npz --splits DIR --method mine --protocol oltr-2019 --threshold 0.2 --json r.json
    """
    from oltr_bench.formats.results import write_results
    from oltr_bench.metrics.evaluate import evaluate_file
    from oltr_bench.report.tables import markdown
    if json_out is None:
        json_out = Path(RunDir.RESULTS)
        _refuse_run_directory(json_out)
    split = find_split(splits)
    results = evaluate_file(predictions, split, which=which, protocol=protocol, threshold=threshold, method=method, partial=partial)
    results["provenance"]["predictions"] = str(predictions)
    write_results(json_out, results)
    click.echo(markdown([{**results, "_path": str(json_out)}]))
    click.echo(summary(results["metrics"]))
    log.info("results written to %s", json_out)


COMMANDS = (evaluate_cmd,)
