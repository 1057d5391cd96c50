"""The methods overview: one row per method, our results and the published ones side by side.

Each column group holds one dataset under one protocol, and either our results (runs and
reproduced entries) or published ones (reported entries). Numbers in different groups are not
comparable: other data, or another protocol. A gap (Δ, ours − published) is computed only
between our group and the published group of the same dataset and protocol, and for open-set
metrics only where both used the same threshold τ. So the paper's ImageNet-LT numbers and a run
on the embedded benchmark share a row, but never a gap.

A method with several rows in one group (configurations, entries) shows one of them, chosen
without looking at its numbers: full runs before ``--quick`` ones, verified before reproduced,
more seeds first, then by name; the cell says how many more the dataset page lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from oltr_bench.metrics.keys import BY_KEY, columns, label
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.report.rows import Row

# The metrics of a group (those a paper reports for a method), kept where some row has them.
KEYS = columns(("open_f1", "many", "medium", "few", "top1"))
# Shot accuracies with rejection, for published rows that report only those (the OLTR README).
OPEN_SHOTS = {key: (f"open_{key}", label(f"open_{key}")) for key in ("many", "medium", "few")}


@dataclass
class Group:
    dataset: str
    protocol: str
    ours: bool
    keys: list[tuple[str, str]] = field(default_factory=list)
    other: bool = False  # an "Other reported" column: published numbers that are none of oltr-bench's metrics
    gap_keys: list[tuple[str, str]] = field(default_factory=list)  # Δ columns (our groups with a published counterpart)

    @property
    def width(self) -> int:
        return len(self.keys) + len(self.gap_keys) + int(self.other)

    @property
    def side(self) -> str:
        return "ours" if self.ours else "published"


@dataclass
class Cell:
    row: Row
    more: int = 0  # further rows of the method in this group (on the dataset page)
    gaps: dict[str, float] = field(default_factory=dict)


@dataclass
class Overview:
    groups: list[Group]
    methods: list[str]
    cells: dict[tuple[str, int], Cell]
    unpublished: list[str]  # datasets with our results but no published ones on this site

    def cell(self, method: str, group: int) -> Cell | None:
        return self.cells.get((method, group))


def _is_ours(row: Row) -> bool:
    return row.source in ("reproduced", "verified")


def _preference(row: Row) -> tuple:
    return (row.partial, row.source != "verified", -(row.n_seeds or 0), row.display_name.lower())


def methods_overview(rows: Sequence[Row]) -> Overview:
    by_group: dict[tuple[str, str, bool], dict[str, list[Row]]] = {}
    for row in rows:
        if row.evaluation_set == "test":
            by_group.setdefault((row.dataset, row.protocol, _is_ours(row)), {}).setdefault(row.method, []).append(row)
    ours_datasets = sorted({d for d, _, ours in by_group if ours})
    datasets = ours_datasets + sorted({d for d, _, _ in by_group} - set(ours_datasets))
    protocols = list(PROTOCOLS)
    order = sorted(by_group, key=lambda k: (datasets.index(k[0]), not k[2], protocols.index(k[1]) if k[1] in protocols else len(protocols), k[1]))
    groups: dict[tuple[str, str, bool], Group] = {}
    cells: dict[tuple[str, str, bool], dict[str, Cell]] = {}
    for key in order:
        shown = {}
        for method, candidates in by_group[key].items():
            candidates.sort(key=_preference)
            shown[method] = Cell(candidates[0], more=len(candidates) - 1)
        group = Group(*key, keys=_keys([c.row for c in shown.values()]))
        group.other = not group.keys and any(c.row.other_metrics for c in shown.values())
        if group.width:
            groups[key], cells[key] = group, shown
    for key, group in groups.items():
        published = (key[0], key[1], False)
        if group.ours and published in groups:
            published_keys = dict(groups[published].keys)
            group.gap_keys = [(k, t) for k, t in group.keys if k in published_keys]
            for method, cell in cells[key].items():
                # A --quick run's numbers are not a result: no gap, as on the comparison page.
                if method in cells[published] and not cell.row.partial and not cells[published][method].row.partial:
                    cell.gaps = _gaps(cell.row, cells[published][method].row, [k for k, _ in group.gap_keys])
    listed = list(groups)
    overview_cells = {(method, listed.index(key)): cell for key, shown in cells.items() for method, cell in shown.items()}
    published_datasets = {d for d, _, ours in groups if not ours}
    return Overview(list(groups.values()), sorted({m for m, _ in overview_cells}), overview_cells,
                    [d for d in ours_datasets if d not in published_datasets])


def _keys(rows: list[Row]) -> list[tuple[str, str]]:
    def has(key: str) -> bool:
        return any(r.metrics.get(key) is not None for r in rows)

    chosen = [OPEN_SHOTS[key] if key in OPEN_SHOTS and not has(key) and has(OPEN_SHOTS[key][0]) else (key, title)
              for key, title in KEYS]
    return [k for k in chosen if has(k[0])]


def _gaps(ours: Row, published: Row, keys: list[str]) -> dict[str, float]:
    """ours − published for each key both have; open-set metrics only at the same τ."""
    gaps = {}
    for key in keys:
        a, b = ours.metrics.get(key), published.metrics.get(key)
        if a is None or b is None or (BY_KEY[key].uses_threshold and ours.open_threshold != published.open_threshold):
            continue
        gaps[key] = a - b
    return gaps
