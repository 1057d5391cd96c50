"""Leaderboard entries from runs, predictions or a hand-written file, and their re-verification:
the API behind ``leaderboard add``, ``leaderboard submit`` and ``leaderboard verify``.

``verified`` is decided here and nowhere else: an entry is verified only when its metrics were
computed by :func:`oltr_bench.metrics.evaluate.evaluate` from predictions files on a split whose
fingerprint is the dataset's canonical one (:func:`entries.canonical_fingerprint`): a run's
predictions that agree with its ``results.json`` (``add``), or a submitted predictions file
(``submit``). The entry keeps each file's sha256; :func:`verify_entry` re-scores the files that
are present and fails on any difference.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from oltr_bench import __version__, formats
from oltr_bench.errors import OltrError
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.keys import METRIC_KEYS
from oltr_bench.protocols import DEFAULT_THRESHOLD
from oltr_bench.metrics.predictions import load_predictions
from oltr_bench.report import entries as lb
from oltr_bench.report.collect import RunRecord, predictions_file, recorded_split_dir
from oltr_bench.report.rows import aggregate_seeds, run_rows, run_seed
from oltr_bench.splits.format import SplitDir, load_split_dir
from oltr_bench.utils.io import atomic_open, sha256_file

log = logging.getLogger(__name__)

# Options of ``leaderboard add`` and ``submit`` that describe the entry (None = keep what the runs say).
DESCRIPTIVE = ("name", "method", "backbone", "pretraining", "extra_data", "epochs", "notes", "code_url")
TOLERANCE = 1e-9
PREDICTIONS_FOLDER = "predictions"  # <leaderboard>/<dataset>/predictions/<sha256[:16]>.npz: submitted predictions


def rescore(predictions: Path, split: SplitDir, protocol: str, threshold: float | None, method: str | None) -> dict[str, Any]:
    """The results of a test predictions file on ``split`` (threshold None: the default τ, which a
    file with its own ``pred`` ignores)."""
    return evaluate(load_predictions(predictions, split, "test"), split, which="test", protocol=protocol,
                    threshold=DEFAULT_THRESHOLD if threshold is None else threshold, method=method)


def differences(claimed: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """``key: claimed X, recomputed Y`` for each metric key of ``claimed`` whose value differs by more than
    :data:`TOLERANCE` (or is null on one side only)."""
    out = []
    for key, value in claimed.items():
        if key not in METRIC_KEYS:
            continue
        other = found.get(key)
        same = (value is None and other is None) or (
            value is not None and other is not None and math.isclose(value, other, rel_tol=0, abs_tol=TOLERANCE))
        if not same:
            out.append(f"{key}: claimed {value}, recomputed {other}")
    return out


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
    recomputed = rescore(preds_path, split, res["protocol"], res.get("open_threshold"), res.get("method"))
    wrong = differences(res.get("metrics") or {}, recomputed["metrics"])
    if wrong:
        raise OltrError(
            f"{record.path}: metrics.{wrong[0]} from its predictions {preds_path}; "
            "the results file does not match its predictions (re-run 'oltr-bench evaluate')"
        )
    return preds_path, ""


def _verification(dataset: str, predictions: Sequence[Path], entry_dir: Path | None) -> dict[str, Any]:
    """The evidence of a verified entry: one predictions sha256 per run (in ``provenance.runs``
    order) and, when every file lies inside the entry's folder, where they are relative to it, so
    that ``leaderboard validate`` and ``verify`` can re-check them while they exist (nothing outside
    the entry's folder is ever read)."""
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
                     "for 'leaderboard validate' and 'verify' to re-check them)", entry_dir)
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
    if row.method == "?" and not options.get("method"):
        raise OltrError(
            f"{records[0].path}: the results name no method (evaluate was run without --method, and the predictions' meta "
            "has none); pass --method NAME (the method's registry name, e.g. 'dme', or your method's name)"
        )
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
    if row.std:
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
        "seed": run_seed(record),
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


# -- leaderboard submit -------------------------------------------------------------------------

def check_canonical(split: SplitDir) -> None:
    """A submission is scored on the dataset's canonical split, or not at all."""
    canonical = lb.canonical_fingerprint(split.dataset)
    if canonical is None:
        raise OltrError(
            f"dataset {split.dataset!r}: oltr-bench knows no canonical split for it, so a submission could not be verified; "
            "score the predictions with 'oltr-bench evaluate' (and 'leaderboard add' the results as an unverified entry)"
        )
    if split.fingerprint != canonical:
        raise OltrError(
            f"{split.path}: split fingerprint {split.fingerprint[:16]}..., expected the canonical {split.dataset} split "
            f"{canonical[:16]}... (the released lists imported unchanged: 'oltr-bench make-splits --dataset {split.dataset} "
            "--official DIR'); submissions are scored on it so that anyone can verify them"
        )


def entry_from_predictions(
    predictions: Path, split: SplitDir, *, protocol: str, threshold: float, options: dict[str, Any],
    paper: dict[str, Any], leaderboard: Path, copy: bool = True,
) -> tuple[dict[str, Any], Path]:
    """A ``verified`` entry from a predictions file (SPEC.md §2) scored on the canonical ``split``.

    The file is kept next to the entry, ``<leaderboard>/<dataset>/predictions/<sha256[:16]>.npz``
    (``copy``), or named where it is, so that :func:`verify_entry` can re-score it. Returns the
    entry and where the predictions are.
    """
    for key in ("name", "method"):
        if not options.get(key):
            raise OltrError(f"--{key} is required: the {key} shown on the leaderboard")
    check_canonical(split)
    results = rescore(predictions, split, protocol, threshold, options["method"])
    digest = sha256_file(predictions)
    folder = Path(leaderboard) / split.dataset
    stored = folder / PREDICTIONS_FOLDER / f"{digest[:16]}.npz" if copy else Path(predictions)
    entry: dict[str, Any] = {
        "format": formats.ENTRY, "name": options["name"], "method": options["method"], "dataset": split.dataset,
        "protocol": results["protocol"], "source": "reproduced", "verified": True,
    }
    if paper:
        entry["paper"] = paper
    entry["open_threshold"] = results["open_threshold"]
    entry["metrics"] = {k: v for k, v in results["metrics"].items() if k in METRIC_KEYS}
    for key in DESCRIPTIVE:
        if options.get(key) is not None:
            entry[key] = options[key]
    entry["verification"] = {"split_fingerprint": split.fingerprint, "predictions_sha256": [digest]}
    if _inside(stored, folder) is not None:
        entry["verification"]["predictions"] = [_inside(stored, folder)]
    entry["verification"]["evaluated_by"] = f"oltr-bench {__version__}"
    meta = results["provenance"]  # the file's meta (evaluate adds nothing here)
    if meta:
        entry["provenance"] = {"predictions_meta": meta}
    entry["added"] = time.strftime("%Y-%m-%d")
    if copy and not stored.is_file():
        with atomic_open(stored) as out, open(predictions, "rb") as source:
            shutil.copyfileobj(source, out)
    return entry, stored


def same_predictions_entry(root: Path, dataset: str, digest: str) -> Path | None:
    """An entry in ``root`` already verified from predictions with this sha256."""
    for path in sorted((Path(root) / dataset).glob("*.json")):
        try:
            other = lb.load_entry(path)
        except OltrError:
            continue
        verification = other.get("verification") if isinstance(other, dict) else None
        if isinstance(verification, dict) and digest in lb.predictions_digests(verification):
            return path
    return None


# -- leaderboard verify -------------------------------------------------------------------------

@dataclass
class Check:
    """What :func:`verify_entry` found for one entry file."""

    path: Path
    status: str  # "verified", "skipped" (predictions not present), "failed", or "unverified" (nothing to re-score)
    detail: str = ""


def verify_entry(path: Path, splits: Mapping[str, SplitDir], *, require_predictions: bool = False) -> Check:
    """Re-score a ``verified`` entry from its predictions files, if present, on the split of its
    dataset in ``splits``, which must be the canonical one; any difference from what it claims fails.

    Checked in order: the schema and the file's place; that every file in
    ``verification.predictions`` (relative to the entry's folder) exists (else ``skipped``, or
    ``failed`` with ``require_predictions``) and has the recorded sha256; then the metrics (mean
    over seeds as :func:`aggregate_seeds`, and their std) and τ recomputed from the files.
    """
    try:
        data = lb.load_entry(path)
    except OltrError as exc:
        return Check(path, "failed", str(exc))
    errors = lb.entry_errors(data) + (lb.location_errors(path, data) if isinstance(data, dict) else [])
    if errors:
        return Check(path, "failed", "; ".join(errors))
    if not data["verified"]:
        return Check(path, "unverified")
    verification = data["verification"]
    names, digests = verification.get("predictions") or [], lb.predictions_digests(verification)
    files = [path.parent / name for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        why = ("the entry names no predictions files (verification.predictions)" if not files
               else f"predictions not present: {', '.join(missing)}")
        return Check(path, "failed" if require_predictions else "skipped", why)
    for i, (file, digest) in enumerate(zip(files, digests)):
        if (found := sha256_file(file)) != digest:
            return Check(path, "failed", f"{file} has sha256 {found[:16]}..., but verification.predictions_sha256[{i}] is "
                                         f"{digest[:16]}...: the file changed since it was verified")
    split = splits.get(data["dataset"])
    if split is None:
        return Check(path, "failed", f"no canonical {data['dataset']} split was given to re-score it with (--splits DIR)")
    try:
        check_canonical(split)
    except OltrError as exc:
        return Check(path, "failed", str(exc))
    threshold = data.get("open_threshold")
    runs = (data.get("provenance") or {}).get("runs") or []
    seeds = [r.get("seed") if isinstance(r, dict) else None for r in runs] if len(runs) == len(files) else [None] * len(files)
    try:
        results = [rescore(f, split, data["protocol"], threshold, data["method"]) for f in files]
    except OltrError as exc:
        return Check(path, "failed", f"its predictions cannot be scored on the canonical split: {exc}")
    mean, std, _ = aggregate_seeds([r["metrics"] for r in results], seeds)
    wrong = differences(data["metrics"], mean) + [f"metrics_std.{d}" for d in differences(data.get("metrics_std") or {}, std)]
    own = {r["open_threshold"] for r in results}
    if "open_threshold" in data and own != {threshold}:
        wrong.append(f"open_threshold: claimed {threshold}, the predictions give {sorted(own, key=str)}")
    if wrong:
        return Check(path, "failed", "recomputed from its predictions: " + "; ".join(wrong))
    return Check(path, "verified", f"{len(files)} predictions file{'s' if len(files) > 1 else ''} re-scored, every metric agrees")
