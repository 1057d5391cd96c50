"""Run directories: the one place that knows their layout, status, config and results.

``<runs>/<dataset>/<method>/<YYYYmmdd-HHMMSS>-<config hash>[-n]/`` holds

- ``config.yaml``: the resolved config;
- ``manifest.json``: provenance and ``status`` (``running`` until the run completes, ``failed``
  after an error), format :data:`~oltr_bench.formats.RUN`;
- ``train_log.jsonl``: a JSON record per epoch and every ``log.every_steps`` steps;
- ``checkpoints/{best,last}.pt``;
- ``predictions/{val,test}.npz`` (SPEC.md §2);
- ``results.json`` (SPEC.md §3), written last: a run without it did not complete;
- ``embeddings/<protocol>.npz`` and ``face_results.json`` (SPEC.md §6) when faces were evaluated;
- ``feature_cache/`` and ``tensorboard/`` when those are on.

The runner creates run directories, the engine writes them, and ``evaluate``, the reporter and
``leaderboard add`` read them, all through :class:`RunDir`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import loads_yaml, read_json
from oltr_bench.formats.results import load_results, write_results
from oltr_bench.utils.io import atomic_write_json, atomic_write_text

STATUSES = ("running", "failed", "complete")


class RunDir:
    """One run directory (it need not exist yet)."""

    CONFIG = "config.yaml"
    MANIFEST = "manifest.json"
    LOG = "train_log.jsonl"
    RESULTS = "results.json"
    FACE_RESULTS = "face_results.json"  # SPEC.md §6, written by embed + evaluate-faces (the demo) into the run directory
    CHECKPOINTS = "checkpoints"
    PREDICTIONS = "predictions"
    FEATURE_CACHE = "feature_cache"
    TENSORBOARD = "tensorboard"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- where things are ----------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def manifest_file(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def log_file(self) -> Path:
        return self.path / self.LOG

    @property
    def results_file(self) -> Path:
        return self.path / self.RESULTS

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.pt`` (``best`` or ``last``)."""
        return self.path / self.CHECKPOINTS / f"{name}.pt"

    def predictions(self, which: str) -> Path:
        """``predictions/<which>.npz`` (``val`` or ``test``)."""
        return self.path / self.PREDICTIONS / f"{which}.npz"

    @property
    def feature_cache(self) -> Path:
        return self.path / self.FEATURE_CACHE

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    # -- creating and recognising --------------------------------------------------------------
    @classmethod
    def create(cls, runs_root: Path, dataset: str, method: str, config_hash: str) -> "RunDir":
        """A new, empty run directory named by the time and the config hash (``-2``, ... if taken)."""
        base = Path(runs_root) / dataset / method
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = base / f"{stamp}-{config_hash[:8]}"
        n = 1
        while path.exists():
            n += 1
            path = base / f"{stamp}-{config_hash[:8]}-{n}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise OltrError(f"--out {runs_root}: cannot create the run directory {path} ({exc.strerror}); "
                            "expected a writable folder") from None
        return cls(path)

    @classmethod
    def around(cls, results_file: Path) -> "RunDir | None":
        """The run directory a ``results.json`` sits in (None for a results file on its own)."""
        run = cls(Path(results_file).parent)
        return run if run.manifest_file.is_file() or run.config_file.is_file() else None

    @classmethod
    def holds_run(cls, path: Path) -> bool:
        """Whether ``path`` is a run directory: its ``manifest.json`` is a run manifest."""
        manifest = cls(path).read_manifest()
        return manifest is not None and formats.is_format(manifest.get("format"), formats.RUN)

    # -- config, manifest, status --------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        """The resolved config the run was started with (None: absent or unreadable)."""
        text = self.config_text()
        if text is None:
            return None
        try:
            cfg = loads_yaml(text, str(self.config_file), "a run's config.yaml")
        except OltrError:
            return None
        return cfg if isinstance(cfg, dict) else None

    def config_text(self) -> str | None:
        try:
            return self.config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def write_config(self, cfg: dict[str, Any]) -> None:
        atomic_write_text(self.config_file, yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))

    def read_manifest(self) -> dict[str, Any] | None:
        """The run manifest (None: absent, unreadable or not a JSON object)."""
        try:
            return read_json(self.manifest_file, "a run manifest")
        except OltrError:
            return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_file, manifest)

    @property
    def status(self) -> str | None:
        return (self.read_manifest() or {}).get("status")

    @property
    def is_complete(self) -> bool:
        """Complete: the manifest says so and ``results.json`` exists (it is written last)."""
        return self.status == "complete" and self.results_file.is_file()

    # -- results and the training log ----------------------------------------------------------
    def read_results(self) -> dict[str, Any]:
        return load_results(self.results_file)

    def write_results(self, results: dict[str, Any]) -> None:
        """Write ``results.json``: last, since its presence marks the run complete."""
        write_results(self.results_file, results)

    def clear_results(self) -> None:
        self.results_file.unlink(missing_ok=True)

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _log_lines(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.log_file.is_file():
            return
        for line in self.log_file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a line cut by a crash
            if isinstance(record, dict):
                yield line, record

    def log_records(self) -> list[dict[str, Any]]:
        """The training log's records (a line cut by a crash is skipped)."""
        return [record for _, record in self._log_lines()]

    def truncate_log(self, epochs_done: int) -> None:
        """Drop training-log records of epochs after ``epochs_done`` (they are redone on resume)."""
        if not self.log_file.is_file():
            return
        kept = [line for line, record in self._log_lines() if int(record.get("epoch", 0)) <= epochs_done]
        atomic_write_text(self.log_file, "".join(f"{line}\n" for line in kept))

    # -- earlier runs --------------------------------------------------------------------------
    @classmethod
    def find(cls, runs_root: Path, dataset: str, method: str) -> list["RunDir"]:
        """Runs of ``method`` on ``dataset`` that have a manifest, any status (newest first)."""
        base = Path(runs_root) / dataset / method
        if not base.is_dir():
            return []
        found = [cls(d) for d in base.iterdir() if cls(d).read_manifest() is not None]
        return sorted(found, key=lambda r: os.path.getmtime(r.manifest_file), reverse=True)

    @classmethod
    def find_completed(cls, runs_root: Path, dataset: str, method: str, **match: Any) -> list["RunDir"]:
        """Completed runs of ``method`` on ``dataset`` whose manifest matches ``match`` (newest first)."""
        base = Path(runs_root) / dataset / method
        if not base.is_dir():
            return []
        found = []
        for path in base.iterdir():
            run = cls(path)
            manifest = run.read_manifest()
            if not manifest or manifest.get("status") != "complete" or not run.results_file.is_file():
                continue
            if all(manifest.get(k) == v for k, v in match.items()):
                found.append(run)
        return sorted(found, key=lambda r: os.path.getmtime(r.results_file), reverse=True)
