"""One row per leaderboard entry or per run configuration: the common shape of tables and pages.

Runs of the same configuration that differ only in ``seed`` (same method, dataset, split,
protocol, threshold and config.yaml apart from ``seed``) become one row whose metrics are the
mean and sample standard deviation (ddof = 1) over the seeds, with the seed count. Runs that
repeat a seed are not more seeds: they are averaged into that seed's value first, so two runs
with one seed are one seed, without a standard deviation (the row says how many runs it holds).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from oltr_bench.config import config_hash, run_profile
from oltr_bench.formats.rundir import RunDir
from oltr_bench.metrics.keys import BY_KEY, HEADLINE_KEYS
from oltr_bench.report import entries as lb
from oltr_bench.report.collect import Collected, EntryRecord, RunRecord

UNKNOWN = "unknown"  # open threshold of a reported number whose threshold is not known


@dataclass
class Row:
    kind: str  # "run" (one or more seeds of a configuration) or "entry"
    dataset: str
    protocol: str
    evaluation_set: str
    open_threshold: float | str | None  # a number, None (the method's own rejection) or UNKNOWN
    name: str
    method: str
    source: str  # reported | reproduced | verified
    backbone: str | None = None
    pretraining: str | None = None
    extra_data: bool | None = None
    epochs: int | None = None
    partial: bool = False
    profile: str | None = None  # runs: standard | faithful | fast | unrecorded (config.yaml's PROFILE_SETTINGS); entries: None
    metrics: dict[str, float | None] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    other_metrics: dict[str, float] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)
    code_url: str | None = None
    notes: str = ""
    runs: list[RunRecord] = field(default_factory=list)
    entry: EntryRecord | None = None
    config_key: str = ""
    slug: str = ""  # the page's folder inside its dataset's folder
    folder: str = ""  # the dataset's folder in the site (its name made safe for a path)

    @property
    def n_seeds(self) -> int | None:
        """Distinct seeds (runs without a recorded seed count as one each); None if unknown."""
        if not self.runs:
            return len(self.seeds) or None
        return len(self.seeds) + sum(1 for run in self.runs if run_seed(run) is None)

    @property
    def repeats(self) -> int:
        """Runs beyond one per seed (a seed run again)."""
        return len(self.runs) - (self.n_seeds or 0) if self.runs else 0

    @property
    def display_name(self) -> str:
        return self.name + (" (fast)" if self.fast else "") + (" (quick)" if self.partial else "")

    @property
    def fast(self) -> bool:
        """A run of the ``fast`` profile: bf16, compile and the feature cache, not the protocol's numerics."""
        return self.profile == "fast"

    @property
    def table_key(self) -> tuple[str, str, str]:
        return (self.dataset, self.protocol, self.evaluation_set)


def config_without_seed_hash(config: dict[str, Any]) -> str:
    """Hash of a resolved config with ``seed`` removed: the identity of a configuration across seeds."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def aggregate(values: Sequence[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    keys: list[str] = []
    for metrics in values:
        keys += [k for k in metrics if k not in keys]
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for key in keys:
        xs = [float(m[key]) for m in values if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool)]
        xs = [x for x in xs if math.isfinite(x)]
        mean[key] = statistics.fmean(xs) if xs else None
        std[key] = statistics.stdev(xs) if len(xs) >= 2 else None
    return mean, std


def aggregate_seeds(values: Sequence[dict[str, Any]], seeds: Sequence[int | None]) -> tuple[dict[str, float | None], dict[str, float | None], int]:
    """Mean and sample std (ddof 1; {} for one seed) over seeds of runs' ``values``, and the seed
    count: runs with the same seed are averaged into that seed first; a run without a seed (None)
    is a seed of its own."""
    by_seed: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for i, (metrics, seed) in enumerate(zip(values, seeds)):
        by_seed[("run", i) if seed is None else seed].append(metrics)
    per_seed = [aggregate(group)[0] for group in by_seed.values()]
    mean, std = aggregate(per_seed)
    return mean, std if len(per_seed) > 1 else {}, len(per_seed)


def _run_epochs(record: RunRecord) -> int | None:
    """Epochs of the run (the manifest's actual count, else the config's), plus its stage-1 run's."""
    manifest = record.manifest or {}
    epochs = (manifest.get("training") or {}).get("epochs")
    if epochs is None and record.config:
        epochs = (record.config.get("train") or {}).get("epochs")
    stage1 = manifest.get("stage1_run")
    if epochs is not None and stage1:
        stage1_manifest = RunDir(stage1).read_manifest() or {}
        epochs += (stage1_manifest.get("training") or {}).get("epochs") or 0
    return int(epochs) if isinstance(epochs, (int, float)) else None


def config_key(record: RunRecord) -> str:
    """The configuration of a run across seeds: the first 8 hex digits of its config hash without
    ``seed`` ("" for a results file without a config)."""
    return "" if record.config is None else config_without_seed_hash(record.config)[:8]


def _run_group_key(record: RunRecord) -> tuple:
    res = record.results
    common = (res.get("dataset"), res.get("method"), res.get("protocol"), res.get("open_threshold"),
              res.get("evaluation_set", "test"), res.get("split_fingerprint"), bool(res.get("partial")))
    if record.config is None:
        return common + ("file", str(record.path.resolve()))
    return common + ("config", config_without_seed_hash(record.config))


def run_seed(record: RunRecord) -> int | None:
    for source in (record.config or {}, record.manifest or {}):
        if isinstance(source.get("seed"), int):
            return source["seed"]
    return None


def profile_of(record: RunRecord) -> str:
    """The run's profile: as recorded in ``results.json`` (``provenance.profile``), else from its
    config (a config written before profiles existed: ``standard``, which every run was then),
    else ``unrecorded`` (a results file alone)."""
    recorded = (record.results.get("provenance") or {}).get("profile")
    if isinstance(recorded, str) and recorded:
        return recorded
    return run_profile(record.config)


def run_description(record: RunRecord) -> dict[str, Any]:
    """Backbone, pretraining, extra data and epochs of a run, from its config and manifest
    (None where the results file has no run directory around it)."""
    model = (record.config or {}).get("model") or {}
    weights = model.get("weights")
    return {
        "backbone": model.get("backbone"),
        "pretraining": None if record.config is None else ("none" if not weights else f"weights: {Path(str(weights)).name}"),
        "extra_data": None if record.config is None else False,
        "epochs": _run_epochs(record),
    }


def run_rows(records: Iterable[RunRecord]) -> list[Row]:
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[_run_group_key(record)].append(record)
    rows = []
    for key, group in groups.items():
        group.sort(key=lambda r: (run_seed(r) is None, run_seed(r) or 0, str(r.path)))
        first = group[0]
        res = first.results
        seeds = [run_seed(r) for r in group]
        mean, std, _ = aggregate_seeds([r.results.get("metrics") or {} for r in group], seeds)
        rows.append(Row(
            kind="run",
            dataset=str(res.get("dataset")),
            protocol=str(res.get("protocol", "oltr")),
            evaluation_set=str(res.get("evaluation_set", "test")),
            open_threshold=res.get("open_threshold"),
            name=str(res.get("method") or "?"),
            method=str(res.get("method") or "?"),
            source="reproduced",
            **run_description(first),
            partial=bool(res.get("partial")),
            profile=profile_of(first),
            metrics=mean,
            std=std,
            seeds=sorted({s for s in seeds if s is not None}),
            runs=group,
            config_key=config_key(first),
        ))
    return rows


def entry_row(record: EntryRecord) -> Row:
    data = record.data
    return Row(
        kind="entry",
        dataset=data["dataset"],
        protocol=data["protocol"],
        evaluation_set="test",
        open_threshold=data.get("open_threshold", UNKNOWN),
        name=data["name"],
        method=data["method"],
        source="verified" if data.get("verified") else data["source"],
        backbone=data.get("backbone"),
        pretraining=data.get("pretraining"),
        extra_data=data.get("extra_data"),
        epochs=data.get("epochs"),
        metrics=dict(data.get("metrics") or {}),
        std=dict(data.get("metrics_std") or {}),
        seeds=list(data.get("seeds") or []),
        other_metrics=dict(data.get("other_metrics") or {}),
        paper=dict(data.get("paper") or {}),
        code_url=data.get("code_url"),
        notes=data.get("notes") or "",
        entry=record,
    )


def build_rows(collected: Collected) -> list[Row]:
    """Rows of every run configuration and entry, with names disambiguated and unique page slugs."""
    rows = run_rows(collected.runs) + [entry_row(e) for e in collected.entries]
    _disambiguate(rows)
    _assign_slugs(rows)
    return sorted(rows, key=lambda r: (r.dataset, r.protocol, r.kind != "entry", r.name.lower()))


def _disambiguate(rows: list[Row]) -> None:
    """Several configurations of one method in one table get their config hash in the name."""
    by_name: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        if row.kind == "run":
            by_name[(row.table_key, row.name, row.partial)].append(row)
    for same in by_name.values():
        if len(same) > 1:
            for row in same:
                row.name = f"{row.name} [{row.config_key or Path(row.runs[0].path).parent.name}]"


def _assign_slugs(rows: list[Row]) -> None:
    folders: dict[str, str] = {}
    for dataset in sorted({r.dataset for r in rows}):
        folder, n = lb.slugify(dataset, "dataset"), 1
        while folder in folders.values():
            n += 1
            folder = f"{lb.slugify(dataset, 'dataset')}-{n}"
        folders[dataset] = folder
    taken: set[tuple[str, str]] = set()
    for row in rows:
        row.folder = folders[row.dataset]
        if row.kind == "entry":
            base = "entry-" + lb.slugify(row.entry.path.stem)
        else:
            base = "run-" + lb.slugify(f"{row.method}-{row.config_key or row.runs[0].path.parent.name}") + ("-quick" if row.partial else "")
        slug, n = base, 1
        while (row.dataset, slug) in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add((row.dataset, slug))
        row.slug = slug


def rows_for_tables(rows: Sequence[Row]) -> list[Row]:
    """What the tables show: runs, entries named on the command line, and leaderboard entries of
    the datasets those cover (every entry when nothing else was given)."""
    own = [r for r in rows if r.kind == "run" or (r.entry is not None and r.entry.named)]
    if not own:
        return list(rows)
    datasets = {r.dataset for r in own}
    return [r for r in rows if r.dataset in datasets]


RANK_RULE = ("rank by open F under the table's protocol, higher first; rows without open F follow, ranked by few-shot "
             "accuracy; equal values share a rank; –: neither reported, or a --quick run")
"""The rule of :func:`ranked`, as the pages state it."""


def ranked(table: Sequence[Row]) -> list[tuple[int | None, Row]]:
    """The rows of one table in page order, each with its rank by :data:`HEADLINE_KEYS`.

    Rows are compared on the first headline key (open F, higher first; directions from
    :mod:`oltr_bench.metrics.keys`), then on the next; a row without a key comes after every row
    that has it. Equal keys share a rank (1, 2, 2, 4). Rows with none of the keys, and ``--quick``
    runs (never a result), are unranked (None) and listed last, by name.
    """
    def key(row: Row) -> tuple:
        parts = []
        for name in HEADLINE_KEYS:
            value = row.metrics.get(name)
            parts.append((1, 0.0) if value is None else (0, -value if BY_KEY[name].higher_is_better else value))
        return tuple(parts)

    rankable = [r for r in table if not r.partial and any(r.metrics.get(k) is not None for k in HEADLINE_KEYS)]
    keys = sorted(key(r) for r in rankable)
    order = sorted(rankable, key=lambda r: (key(r), r.display_name.lower()))
    rest = sorted((r for r in table if not any(r is x for x in rankable)), key=lambda r: r.display_name.lower())
    return [(keys.index(key(r)) + 1, r) for r in order] + [(None, r) for r in rest]


def group_tables(rows: Sequence[Row]) -> dict[tuple[str, str, str], list[Row]]:
    """Rows by (dataset, protocol, evaluation set), sorted by those keys."""
    tables: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        tables[row.table_key].append(row)
    return dict(sorted(tables.items()))
