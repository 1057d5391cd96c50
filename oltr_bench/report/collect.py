"""Find and load what a report is made of: run directories, ``results.json`` files and leaderboard entries.

A path may be a results file, an entry file, a run directory, or a folder searched for both
(``results.json`` below it, and entry files ``*.json`` whose ``format`` is an entry's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from oltr_bench.errors import OltrError
from oltr_bench.report import entries as lb

RESULTS_PREFIX = "oltr-bench-results/"
# JSON files of a run or split directory that are never leaderboard entries.
NOT_ENTRIES = {"results.json", "manifest.json"}


@dataclass
class RunRecord:
    """One ``results.json`` with the run directory around it (config and manifest when present)."""

    results: dict[str, Any]
    path: Path
    run_dir: Path | None = None
    config: dict[str, Any] | None = None
    config_text: str | None = None
    manifest: dict[str, Any] | None = None


@dataclass
class EntryRecord:
    data: dict[str, Any]
    path: Path
    named: bool = True  # named on the command line (False: found in a leaderboard folder)


@dataclass
class Collected:
    runs: list[RunRecord] = field(default_factory=list)
    entries: list[EntryRecord] = field(default_factory=list)


def read_json(path: Path, expected: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``expected`` (e.g. "a results.json") completes the error message."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise OltrError(f"{path}: cannot read the file ({exc}); expected {expected}") from None
    except json.JSONDecodeError as exc:
        raise OltrError(f"{path}: not valid JSON ({exc}); expected {expected}") from None
    if not isinstance(data, dict):
        raise OltrError(f"{path}: found a JSON {type(data).__name__}, expected {expected} (a JSON object)")
    return data


def load_results(path: Path) -> dict[str, Any]:
    data = read_json(Path(path), "a results.json (SPEC.md §3)")
    if not str(data.get("format", "")).startswith(RESULTS_PREFIX):
        raise OltrError(f"{path}: format {data.get('format')!r} is not an oltr-bench results file")
    for key in ("dataset", "metrics"):
        if key not in data:
            raise OltrError(f"{path}: key {key!r} is missing; expected an oltr-bench results file (SPEC.md §3)")
    data["_path"] = str(path)
    return data


def load_run(path: Path) -> RunRecord:
    """A results file and, if it sits in a run directory, that run's config.yaml and manifest.json."""
    results = load_results(path)
    run_dir = path.parent if (path.parent / "manifest.json").is_file() or (path.parent / "config.yaml").is_file() else None
    record = RunRecord(results=results, path=path, run_dir=run_dir)
    if run_dir is not None:
        config_path, manifest_path = run_dir / "config.yaml", run_dir / "manifest.json"
        if config_path.is_file():
            record.config_text = config_path.read_text(encoding="utf-8")
            try:
                config = yaml.safe_load(record.config_text)
            except yaml.YAMLError as exc:
                raise OltrError(f"{config_path} is not valid YAML: {exc}") from None
            record.config = config if isinstance(config, dict) else None
        if manifest_path.is_file():
            record.manifest = read_json(manifest_path, "a run manifest")
    return record


def predictions_file(record: RunRecord) -> Path | None:
    """The run's test predictions (``predictions/test.npz``, or the file its results name), if present."""
    if record.run_dir is not None and (record.run_dir / "predictions" / "test.npz").is_file():
        return record.run_dir / "predictions" / "test.npz"
    named = (record.results.get("provenance") or {}).get("predictions")
    return Path(named) if named and Path(named).is_file() else None


def recorded_split_dir(record: RunRecord) -> Path | None:
    """The split directory the run's manifest records (it may have moved since)."""
    named = (record.manifest or {}).get("split_dir")
    return Path(named) if named else None


def _entry_candidates(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*.json")
        if p.name not in NOT_ENTRIES and not p.name.startswith(".") and "predictions" not in p.parts
    )


def load_entries(paths: Iterable[Path], named: bool = True) -> list[EntryRecord]:
    """Load entry files and refuse invalid ones, listing every problem."""
    records, problems = [], []
    for path in paths:
        data = lb.load_entry(path)
        errors = lb.entry_errors(data)
        if errors:
            problems += [f"{path}: {e}" for e in errors]
        else:
            records.append(EntryRecord(data=data, path=path, named=named))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise OltrError(f"invalid leaderboard entries (check them with 'oltr-bench leaderboard validate'):\n  {shown}")
    return records


def leaderboard_dirs() -> list[Path]:
    """The leaderboards a report includes by default: the shipped entries and the user's own."""
    dirs = [lb.shipped_entries_dir()]
    local = lb.default_entries_dir()
    if local.is_dir() and local.resolve() != dirs[0].resolve():
        dirs.append(local)
    return dirs


def collect(paths: Iterable[Path], *, leaderboard_dirs: Iterable[Path] = ()) -> Collected:
    """Runs and entries named by ``paths``, plus every entry in ``leaderboard_dirs`` (duplicates dropped)."""
    result_files: list[Path] = []
    entry_files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            fmt = str(read_json(path, "a results.json or a leaderboard entry (SPEC.md §3, §4)").get("format", ""))
            if fmt.startswith(lb.ENTRY_PREFIX):
                entry_files.append(path)
            elif fmt.startswith(RESULTS_PREFIX) or path.name == "results.json":
                result_files.append(path)
            else:
                raise OltrError(f"{path}: format {fmt or 'unknown'!r}; expected a results.json, a leaderboard entry, a run directory or a folder of runs")
        elif path.is_dir():
            result_files += sorted(path.rglob("results.json"))
            entry_files += [p for p in _entry_candidates(path) if lb.is_entry_file(p)]
        else:
            raise OltrError(f"{path} does not exist; expected a run directory, a results.json file, a leaderboard entry or a folder of them")
    seen: set[Path] = set()
    out = Collected()
    for path in result_files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            out.runs.append(load_run(path))
    named = []
    for path in entry_files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            named.append(path)
    out.entries += load_entries(named)
    for root in leaderboard_dirs:
        files = [p for p in lb.entry_files(root) if p.resolve() not in seen]
        seen.update(p.resolve() for p in files)
        out.entries += load_entries(files, named=False)
    return out
