"""The suite's plan: every (dataset, method, seed) run with the stage-1 run it starts from.

A stage-2 method (``openmax``, ``dme``, ``fslwf``, ...) starts from a stage-1 run of its
``init_from`` method; that run is planned as the config the stage-2 run will look for
(:func:`~oltr_bench.engine.stage1.stage1_overrides_for`: the shared overrides and the stage-1
``params`` the method asks for), so a stage-2 run always finds the suite's stage-1 run and never
trains its own. A ``--set`` applies to every run as ``run --set`` would, except ``params.KEY``,
which applies to the methods that have that parameter. Runs with the same dataset, method and resolved config are one run: ``plain`` is
both a row of the paper's table and the stage-1 run of ``openmax`` and ``dme``, trained once per
seed. Each run's status is read from the runs folder: ``done`` (a complete run with this config:
skipped), ``resume`` (an unfinished one: continued from its last checkpoint) or ``new``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from oltr_bench.config import RunConfig, config_hash, parse_override, resolve
from oltr_bench.engine.runner import same_config_run
from oltr_bench.engine.stage1 import stage1_overrides_for
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir

PAPER_METHODS = ("plain", "focal", "range", "openmax", "fslwf", "dme")
"""The six methods of the OLTR paper's Table 3 that oltr-bench implements (lifted loss is not one)."""
MODERN_METHODS = ("crt", "lws", "tau_norm", "balanced_softmax", "logit_adjust", "logit_adjust_posthoc", "ldam_drw")
"""Later long-tail methods (classifier re-balancing, logit adjustment, LDAM-DRW)."""
METHOD_SETS = {"paper": PAPER_METHODS, "modern": MODERN_METHODS, "all": PAPER_METHODS + MODERN_METHODS}
STATUSES = ("done", "resume", "new")


def parse_methods(text: str) -> list[str]:
    """``paper``, ``modern``, ``all`` or a comma-separated list of registered methods."""
    if text in METHOD_SETS:
        return list(METHOD_SETS[text])
    names = [METHODS.canonical(name.strip()) for name in text.split(",") if name.strip()]
    if not names:
        raise OltrError(f"--methods {text!r}: expected paper, modern, all or a comma-separated list of methods")
    return list(dict.fromkeys(names))


def parse_seeds(text: str) -> list[int]:
    """``N`` (seeds 0..N-1) or a comma-separated list (``0,3,7``; ``0`` alone is the list [0])."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OltrError(f"--seeds {text!r}: expected a count (3: seeds 0, 1, 2) or a list of integers (0,1,2)") from None
    if not values:
        raise OltrError(f"--seeds {text!r}: no seed")
    if "," not in text and values[0] >= 1:
        return list(range(values[0]))
    if any(v < 0 for v in values):
        raise OltrError(f"--seeds {text!r}: seeds are non-negative integers")
    return list(dict.fromkeys(values))


@dataclass
class PlannedRun:
    """One run of the plan."""

    dataset: str
    method: str
    seed: int
    split: SplitDir
    config: RunConfig
    overrides: list[str]
    depends_on: str | None = None  # the key of the stage-1 run it starts from
    rows: list[str] = field(default_factory=list)  # the table rows it is (empty: only a stage-1 run)
    status: str = "new"
    run_dir: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.method}/seed{self.seed}/{config_hash(self.config)[:8]}"


@dataclass
class Plan:
    runs: dict[str, PlannedRun]
    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    quick: bool
    runs_root: Path

    def order(self) -> list[PlannedRun]:
        """Stage-1 runs before the runs that start from them (plan order otherwise)."""
        first = [r for r in self.runs.values() if r.depends_on is None]
        return first + [r for r in self.runs.values() if r.depends_on is not None]

    def dependents(self, key: str) -> list[PlannedRun]:
        return [r for r in self.runs.values() if r.depends_on == key]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.runs.values() if r.status == s) for s in STATUSES}

    def describe(self) -> str:
        """The plan as text (``--dry-run``)."""
        lines = [f"{len(self.runs)} run{'' if len(self.runs) == 1 else 's'} ({', '.join(f'{n} {s}' for s, n in self.counts().items())}); "
                 f"methods {', '.join(self.methods)}; datasets {', '.join(self.datasets)}; seeds "
                 f"{', '.join(map(str, self.seeds))}{'; --quick' if self.quick else ''}; runs folder {self.runs_root}"]
        for run in self.order():
            after = f"  after {run.depends_on}" if run.depends_on else ""
            role = "" if run.rows else "  (stage 1 only)"
            where = f"  {run.run_dir}" if run.run_dir else ""
            lines.append(f"  {run.status:<6} {run.key}  profile {run.config.profile}{role}{after}{where}")
        return "\n".join(lines)


def _params_of(method: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` without the ``params.KEY`` ones ``method`` does not have (a suite's ``--set
    params.setting=oltr`` is for OpenMax, not for every method)."""
    defaults = METHODS.get(method).defaults
    kept = []
    for text in overrides:
        path = parse_override(text)[0]
        if path[0] != "params" or len(path) < 2 or path[1] in defaults:
            kept.append(text)
    return kept


def make_plan(splits: Sequence[SplitDir], methods: Sequence[str], seeds: Sequence[int], runs_root: Path, *,
              overrides: Sequence[str] = (), quick: bool = False) -> Plan:
    """Every run of ``methods`` × ``splits`` × ``seeds`` with its stage-1 run, and its status."""
    runs: dict[str, PlannedRun] = {}

    def add(split: SplitDir, method: str, seed: int, run_overrides: list[str], row: str | None) -> PlannedRun:
        cls = METHODS.get(method)
        cfg = resolve(method, split.dataset, cls.defaults, run_overrides).config
        cfg.validate(quick=quick)
        run = PlannedRun(split.dataset, method, seed, split, cfg, run_overrides)
        run = runs.setdefault(run.key, run)
        if row is not None and row not in run.rows:
            run.rows.append(row)
        if cls.stage == 2 and cls.init_from and run.depends_on is None:
            first = add(split, cls.init_from, seed, stage1_overrides_for(cls, cfg.params, run_overrides), None)
            run.depends_on = first.key
        return run

    for text in overrides:
        path = parse_override(text)[0]
        if path[0] == "params" and len(path) > 1 and not any(path[1] in METHODS.get(m).defaults for m in methods):
            raise OltrError(f"--set {text}: none of the methods {', '.join(methods)} has the parameter {path[1]!r}")
    for split in splits:
        for seed in seeds:
            for method in methods:
                add(split, method, seed, [*_params_of(method, overrides), f"seed={seed}"], method)
    for run in runs.values():
        found = same_config_run(run.config, run.split, runs_root, quick)
        if found is not None:
            run.run_dir = found.path
            run.status = "done" if found.is_complete else "resume"
    return Plan(runs, list(methods), [s.dataset for s in splits], list(seeds), quick, Path(runs_root))
