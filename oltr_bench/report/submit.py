"""Turn runs (or a hand-written entry) into a leaderboard entry: the API behind ``leaderboard add``.

``verified`` is decided here and nowhere else: an entry is verified only when its metrics were
recomputed by :func:`oltr_bench.metrics.evaluate.evaluate` from the run's predictions file, on a
split whose fingerprint is the dataset's canonical one (:func:`entries.canonical_fingerprint`),
and agree with the run's ``results.json``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

from oltr_bench import __version__, formats
from oltr_bench.errors import OltrError
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.keys import METRIC_KEYS
from oltr_bench.protocols import DEFAULT_THRESHOLD
from oltr_bench.metrics.predictions import load_predictions
from oltr_bench.report import entries as lb
from oltr_bench.report.collect import RunRecord, predictions_file, recorded_split_dir
from oltr_bench.report.rows import run_rows
from oltr_bench.splits.format import SplitDir, load_split_dir
from oltr_bench.utils.io import sha256_file

log = logging.getLogger(__name__)

# Options of ``leaderboard add`` that describe the entry (None = keep what the runs say).
DESCRIPTIVE = ("name", "method", "backbone", "pretraining", "extra_data", "epochs", "notes", "code_url")
TOLERANCE = 1e-9


def verify_run(record: RunRecord, splits: Path | None = None) -> tuple[Path | None, str]:
    """Recompute a run's test metrics from its predictions on the canonical split.

    Returns (the predictions file, "") when verified, else (None, why not). A results.json that
    disagrees with its own predictions is an error, not merely unverified.
    """
    res = record.results
    dataset = res["dataset"]
    canonical = lb.canonical_fingerprint(dataset)
    if canonical is None:
        return None, f"oltr-bench knows no canonical split fingerprint for {dataset!r}"
    if res.get("split_fingerprint") != canonical:
        return None, f"evaluated on split {str(res.get('split_fingerprint'))[:16]}..., not the canonical {dataset} split {canonical[:16]}..."
    if res.get("evaluation_set", "test") != "test":
        return None, f"scored on the {res.get('evaluation_set')} set, not test + open"
    preds_path = predictions_file(record)
    if preds_path is None:
        return None, "its predictions file (predictions/test.npz) was not found"
    split_path = splits or recorded_split_dir(record)
    if split_path is None or not SplitDir.exists(split_path):
        return None, "the split directory it was evaluated on was not found (pass --splits DIR)"
    split = load_split_dir(split_path)
    if split.fingerprint != canonical:
        return None, f"--splits {split_path} is not the canonical {dataset} split"
    threshold = res.get("open_threshold")
    recomputed = evaluate(
        load_predictions(preds_path, split, "test"), split, which="test", protocol=res["protocol"],
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold, method=res.get("method"),
    )
    for key, claimed in (res.get("metrics") or {}).items():
        if key not in METRIC_KEYS:
            continue
        value = recomputed["metrics"].get(key)
        same = (claimed is None and value is None) or (
            claimed is not None and value is not None and math.isclose(claimed, value, rel_tol=0, abs_tol=TOLERANCE)
        )
        if not same:
            raise OltrError(
                f"{record.path}: metrics.{key} is {claimed} but its predictions {preds_path} give {value}; "
                "the results file does not match its predictions (re-run 'oltr-bench evaluate')"
            )
    return preds_path, ""


def _verification(dataset: str, predictions: Sequence[Path], entry_dir: Path | None) -> dict[str, Any]:
    """The evidence of a verified entry: one predictions sha256 per run (in ``provenance.runs``
    order) and, when every file lies inside the entry's folder, where they are relative to it, so
    that ``leaderboard validate`` can re-check them while they exist (it never reads outside the
    entry's folder)."""
    evidence: dict[str, Any] = {
        "split_fingerprint": lb.canonical_fingerprint(dataset),
        "predictions_sha256": [sha256_file(p) for p in predictions],
    }
    if entry_dir is not None:
        relative = [_inside(p, entry_dir) for p in predictions]
        if all(r is not None for r in relative):
            evidence["predictions"] = relative
        else:
            log.info("the predictions are outside %s: the entry keeps their sha256 only (keep a copy beside the entry "
                     "for 'leaderboard validate' to re-check them)", entry_dir)
    evidence["evaluated_by"] = f"oltr-bench {__version__}"
    return evidence


def _inside(path: Path, folder: Path) -> str | None:
    """``path`` relative to ``folder`` if it lies inside it, else None."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def entry_from_runs(
    records: Sequence[RunRecord], *, options: dict[str, Any], paper: dict[str, Any], splits: Path | None = None,
    leaderboard: Path | None = None,
) -> tuple[dict[str, Any], str]:
    """A ``reproduced`` entry from one run or several seeds of one configuration; returns it and,
    when it is not verified, why not. ``leaderboard`` is the folder the entry will be written to."""
    for record in records:
        if record.results.get("partial"):
            raise OltrError(f"{record.path}: partial results (a --quick run or evaluate --partial) are never a valid submission; add a full run")
    rows = run_rows(records)
    if len(rows) != 1:
        raise OltrError(
            f"the {len(records)} runs are not seeds of one configuration (they differ in method, dataset, split, "
            "protocol, threshold or config.yaml beyond 'seed'); add them one at a time"
        )
    row = rows[0]
    checks = [verify_run(r, splits) for r in records]
    verified = all(predictions is not None for predictions, _ in checks)
    why_not = next((why for predictions, why in checks if predictions is None), "")
    entry: dict[str, Any] = {
        "format": formats.ENTRY,
        "name": row.name,
        "method": row.method,
        "dataset": row.dataset,
        "protocol": row.protocol,
        "source": "reproduced",
        "verified": verified,
    }
    if paper:
        entry["paper"] = paper
    entry.update({
        "backbone": row.backbone,
        "pretraining": row.pretraining,
        "extra_data": row.extra_data,
        "epochs": row.epochs,
        "open_threshold": row.open_threshold,
        "metrics": {k: v for k, v in row.metrics.items() if k in METRIC_KEYS},
    })
    if len(records) > 1:
        entry["metrics_std"] = {k: v for k, v in row.std.items() if k in METRIC_KEYS}
    if row.seeds:
        entry["seeds"] = row.seeds
    for key in DESCRIPTIVE:
        if options.get(key) is not None:
            entry[key] = options[key]
    if verified:
        entry_dir = None if leaderboard is None else Path(leaderboard) / row.dataset
        entry["verification"] = _verification(row.dataset, [predictions for predictions, _ in checks], entry_dir)
    entry["provenance"] = {"runs": [_run_provenance(r) for r in records]}
    entry["added"] = time.strftime("%Y-%m-%d")
    return entry, why_not


def _run_provenance(record: RunRecord) -> dict[str, Any]:
    manifest = record.manifest or {}
    return {
        "run_id": record.run_dir.name if record.run_dir else record.path.name,
        "config_hash": manifest.get("config_hash"),
        "git_sha": manifest.get("git_sha"),
        "split_fingerprint": record.results.get("split_fingerprint"),
        "oltr_bench": (manifest.get("versions") or {}).get("oltr_bench"),
    }


def entry_from_file(path: Path, data: dict[str, Any], *, options: dict[str, Any], paper: dict[str, Any]) -> dict[str, Any]:
    """The hand-written entry ``data`` read from ``path`` (reported numbers), with the command line's descriptions applied."""
    if data.get("verified") is True:
        raise OltrError(f"{path}: verified: found true in a hand-written entry, expected false; only 'leaderboard add' of a run can verify numbers")
    if data.get("source") == "reproduced":
        raise OltrError(f"{path}: source: found 'reproduced' in a hand-written entry, expected 'reported'; add the run directory to enter reproduced numbers")
    entry = dict(data)
    for key in DESCRIPTIVE:
        if options.get(key) is not None:
            entry[key] = options[key]
    if paper:
        entry["paper"] = {**(entry.get("paper") or {}), **paper}
    errors = lb.entry_errors(entry)
    if errors:
        raise OltrError(f"{path}: the entry is not valid (SPEC.md §4):\n  " + "\n  ".join(errors))
    return entry


def same_runs_entry(root: Path, entry: dict[str, Any]) -> Path | None:
    """An existing entry in ``root`` made from exactly the same runs (to refuse adding it twice)."""
    runs = [r.get("run_id") for r in (entry.get("provenance") or {}).get("runs", [])]
    if not runs:
        return None
    for path in sorted((Path(root) / entry["dataset"]).glob("*.json")):
        try:
            other = lb.load_entry(path)
        except OltrError:
            continue
        other_runs = [r.get("run_id") for r in ((other.get("provenance") or {}).get("runs") or []) if isinstance(r, dict)]
        if other_runs == runs and other.get("protocol") == entry["protocol"]:
            return path
    return None
