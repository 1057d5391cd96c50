"""Find and load what a report is made of: run directories, ``results.json`` files, leaderboard entries
and ``face_results.json`` files (SPEC.md §6).

A path may be a results file, an entry file, a run directory, or a folder searched for both
(``results.json`` below it, and entry files ``*.json`` whose ``format`` is an entry's).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from oltr_bench import formats
from oltr_bench.config.schema import run_profile
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import loads_yaml, read_json
from oltr_bench.formats.results import load_face_results, load_results
from oltr_bench.formats.rundir import RunDir
from oltr_bench.paths import work_dir_hint
from oltr_bench.report import entries as lb

# JSON files of a run or split directory that are never leaderboard entries.
NOT_ENTRIES = {RunDir.RESULTS, RunDir.MANIFEST, RunDir.FACE_RESULTS}


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
    faces: list[dict[str, Any]] = field(default_factory=list)  # face_results.json files (SPEC.md §6), ``_path`` set


def refuse_predictions(path: Path) -> None:
    """A predictions file (an .npz archive) given where results or an entry are expected: say how
    it becomes one, instead of failing to read it as JSON."""
    if zipfile.is_zipfile(path):
        raise OltrError(
            f"{path} is a predictions file (.npz, SPEC.md §2) that has not been scored: score it with 'oltr-bench evaluate "
            f"--predictions {path} --splits DATASET --method NAME' and use the results.json it writes, or make it a "
            f"verified leaderboard entry with 'oltr-bench leaderboard submit {path} --dataset DATASET --name ... --method ...'"
        )


def load_run(path: Path) -> RunRecord:
    """A results file and, if it sits in a run directory, that run's config.yaml and manifest.json."""
    results = load_results(path)
    run = RunDir.around(path)
    record = RunRecord(results=results, path=path, run_dir=run.path if run else None)
    if run is not None:
        if run.config_file.is_file():
            record.config_text = run.config_text()
            record.config = _config(run, record.config_text)
        if run.manifest_file.is_file():
            record.manifest = read_json(run.manifest_file, "a run manifest")
    return record


def _config(run: RunDir, text: str | None) -> dict[str, Any] | None:
    config = loads_yaml(text or "", str(run.config_file), "a run's config.yaml")
    return config if isinstance(config, dict) else None


def load_faces(path: Path) -> dict[str, Any]:
    """A ``face_results.json`` with ``_profile`` set: the profile of the run it sits in
    (``unrecorded`` outside a run directory)."""
    faces = load_face_results(path)
    run = RunDir.around(path)
    config = _config(run, run.config_text()) if run is not None and run.config_file.is_file() else None
    faces["_profile"] = run_profile(config)
    return faces


def predictions_file(record: RunRecord) -> Path | None:
    """The run's test predictions (``predictions/test.npz``, or the file its results name), if present."""
    if record.run_dir is not None and RunDir(record.run_dir).predictions("test").is_file():
        return RunDir(record.run_dir).predictions("test")
    named = (record.results.get("provenance") or {}).get("predictions")
    return Path(named) if named and Path(named).is_file() else None


def recorded_split_dir(record: RunRecord) -> Path | None:
    """The split directory the run's manifest records (it may have moved since)."""
    named = (record.manifest or {}).get("split_dir")
    return Path(named) if named else None


def _entry_candidates(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*.json")
        if p.name not in NOT_ENTRIES and not p.name.startswith(".") and RunDir.PREDICTIONS not in p.parts
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
    face_files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            refuse_predictions(path)
            fmt = str(read_json(path, "a results.json or a leaderboard entry (SPEC.md §3, §4)").get("format", ""))
            if formats.is_format(fmt, formats.ENTRY):
                entry_files.append(path)
            elif formats.is_format(fmt, formats.RESULTS) or path.name == RunDir.RESULTS:
                result_files.append(path)
            elif formats.is_format(fmt, formats.FACE_RESULTS):
                face_files.append(path)
            else:
                raise OltrError(f"{path}: format {fmt or 'unknown'!r}; expected a results.json, a leaderboard entry, a run directory or a folder of runs")
        elif path.is_dir():
            result_files += sorted(path.rglob(RunDir.RESULTS))
            face_files += sorted(path.rglob(RunDir.FACE_RESULTS))
            entry_files += [p for p in _entry_candidates(path) if lb.is_entry_file(p)]
        else:
            raise OltrError(f"{path} does not exist; expected a run directory, a results.json file, a leaderboard entry or a "
                            f"folder of them{work_dir_hint(path)}")
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
    for path in face_files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            out.faces.append(load_faces(path))
    for root in leaderboard_dirs:
        files = [p for p in lb.entry_files(root) if p.resolve() not in seen]
        seen.update(p.resolve() for p in files)
        out.entries += load_entries(files, named=False)
    return out
