"""The suite's tables: the OLTR paper's comparison, methods × datasets, next to the published values.

One table per metric: the paper's table (open-set F) first, then many/medium/few/top-1/AUROC.
Rows are methods, columns datasets; a cell is the mean ± sample std over the seeds of the
suite's runs of that method on that dataset (:mod:`~oltr_bench.report.rows`), the published value
(the OLTR paper's entry among the shipped leaderboard entries, else another reported entry of the
method), and Δ = ours − published where both are measured the same way: the comparison of
:mod:`~oltr_bench.report.compare` re-scores our predictions under the published row's protocol
and τ; where that is not possible there is no Δ. A ``--quick`` run is never compared. Cells of
``fast``-profile runs are marked †: their numerics are not the protocol's.

The MS1M-LT column does not come from closed/open-set runs: MS1M-LT is evaluated as face
identification (SPEC.md §6), so :func:`ms1m_lt_cell` fills it from the runs' ``face_results.json``
(the suite writes them: ``embed`` + ``evaluate-faces``, heldout protocol), with the rank-1 of the
shot group that stands for each table's metric (:data:`FACE_KEYS`); "not evaluated" where a method
has no face results. The published MS1M-LT values have no determined metric (see the entries'
notes), so that column has no published value and no Δ.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from oltr_bench.metrics.keys import label
from oltr_bench.report.compare import Comparison, reported_vs_reproduced
from oltr_bench.report.rows import Row, aggregate
from oltr_bench.report.tables import DASH, fmt_number, latex_escape, md_escape

SUITE_KEYS = ("open_f1", "many", "medium", "few", "top1", "auroc")
"""The suite's tables: the paper's (open F) first, then the shot groups, top-1 and AUROC."""
PAPER_URL = "arxiv.org/abs/1904.05160"  # the OLTR paper: its entries are "the published value"
FACES_DATASET = "ms1m_lt"
NOT_EVALUATED = "not evaluated"
FAST_MARK = "†"
FACE_KEYS = {"open_f1": "rank1_zero", "many": "rank1_many", "medium": "rank1_medium", "few": "rank1_few", "top1": "rank1"}
"""The face metric (SPEC.md §6) in the MS1M-LT column of each suite table: rank-1 identification of
the probes whose identity is in that shot group; the open-set table shows the zero-shot probes
(identities never trained on: MS1M-LT's open classes), top-1 the whole test. AUROC has none."""
FACE_LABELS = {"rank1_zero": "rank-1, zero-shot", "rank1_many": "rank-1, many", "rank1_medium": "rank-1, medium",
               "rank1_few": "rank-1, few", "rank1": "rank-1, all"}


@dataclass
class SuiteCell:
    ours: Row | None = None
    published: Row | None = None
    delta: float | None = None
    note: str = ""  # shown instead of numbers ("not evaluated")
    face_key: str = ""  # MS1M-LT: the face metric shown (FACE_KEYS), its mean and sample std over the runs
    face_mean: float | None = None
    face_std: float | None = None


def ms1m_lt_cell(method: str, key: str, faces: Sequence[dict], ours: Row | None = None) -> SuiteCell:
    """THE MS1M-LT COLUMN of the suite's tables (the one place it is decided).

    MS1M-LT is scored as face identification, not by the closed/open-set metrics of the other
    columns: the cell is the mean ± sample std of the rank-1 that :data:`FACE_KEYS` maps ``key`` to,
    over the face results (``faces``: loaded ``face_results.json`` files, ``_path`` set) of the runs
    of ``ours``, the row the other columns would show (one configuration: one profile, quick or
    not, so fast and quick cells are marked like theirs and never averaged with other runs).
    Without a row (face results with no run results beside them), over all the method's face
    results. "not evaluated" where there are none, – for a metric with no face counterpart."""
    mine = [f for f in faces if f.get("dataset") == FACES_DATASET and f.get("method") == method]
    if ours is not None:
        run_dirs = {Path(r.run_dir).resolve() for r in ours.runs if r.run_dir is not None}
        mine = [f for f in mine if f.get("_path") and Path(f["_path"]).resolve().parent in run_dirs]
    if not mine:
        return SuiteCell(note=NOT_EVALUATED)
    face_key = FACE_KEYS.get(key)
    if face_key is None:
        return SuiteCell(note=DASH)
    mean, std = aggregate([f.get("metrics") or {} for f in mine])
    return SuiteCell(ours=ours, face_key=face_key, face_mean=mean.get(face_key), face_std=std.get(face_key))


def _ours(rows: Sequence[Row], dataset: str, method: str) -> Row | None:
    """The method's row on the dataset that the suite shows: full runs before quick ones, then the most seeds."""
    ours = [r for r in rows if r.kind == "run" and r.dataset == dataset and r.method == method and r.evaluation_set == "test"]
    ours.sort(key=lambda r: (r.partial, -(r.n_seeds or 0), r.name))
    return ours[0] if ours else None


def _published(dataset: str, method: str, rows: Sequence[Row]) -> Row | None:
    reported = [r for r in rows if r.source == "reported" and r.dataset == dataset and r.method == method]
    reported.sort(key=lambda r: (PAPER_URL not in str(r.paper.get("url", "")), r.name))
    return reported[0] if reported else None


def suite_cells(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str],
                key: str, comparisons: Sequence[Comparison] | None = None,
                faces: Sequence[dict] = ()) -> dict[tuple[str, str], SuiteCell]:
    """(method, dataset) -> its cell for ``key``; ``rows`` are the suite's runs and the leaderboard
    entries, ``faces`` the face results of its runs (the MS1M-LT column)."""
    comparisons = reported_vs_reproduced(rows) if comparisons is None else comparisons
    cells = {}
    for dataset in datasets:
        for method in methods:
            if dataset == FACES_DATASET:
                cells[(method, dataset)] = ms1m_lt_cell(method, key, faces, _ours(rows, dataset, method))
                continue
            cell = SuiteCell(_ours(rows, dataset, method), _published(dataset, method, rows))
            if cell.ours is not None and cell.published is not None:
                for c in comparisons:
                    if c.ours is cell.ours and c.reported is cell.published and c.same_protocol and c.same_threshold:
                        cell.delta = next((gap for k, _, _, gap in c.gaps if k == key), None)
            cells[(method, dataset)] = cell
    return cells


def _ours_text(cell: SuiteCell, key: str, percent: bool) -> str:
    if cell.note:
        return cell.note
    if cell.face_key:
        if cell.face_mean is None:
            text = DASH
        else:
            text = fmt_number(cell.face_mean, percent) + (f" ± {fmt_number(cell.face_std, percent)}" if cell.face_std is not None else "")
        return text + _marks(cell.ours) + f" ({FACE_LABELS[cell.face_key]})"
    if cell.ours is None or cell.ours.metrics.get(key) is None:
        return DASH
    value, std = cell.ours.metrics.get(key), cell.ours.std.get(key)
    return fmt_number(value, percent) + (f" ± {fmt_number(std, percent)}" if std is not None else "") + _marks(cell.ours)


def _marks(ours: Row | None) -> str:
    """† for a fast-profile row, (quick) for quick runs."""
    if ours is None:
        return ""
    return (f" {FAST_MARK}" if ours.fast else "") + (" (quick)" if ours.partial else "")


def _published_text(cell: SuiteCell, key: str, percent: bool) -> str:
    if cell.note or cell.face_key or cell.published is None or cell.published.metrics.get(key) is None:
        return DASH
    return fmt_number(cell.published.metrics[key], percent)


def _delta_text(cell: SuiteCell, percent: bool) -> str:
    if cell.delta is None:
        return DASH
    return ("+" if cell.delta >= 0 else "−") + fmt_number(abs(cell.delta), percent)


def _title(key: str) -> str:
    return "Open-set F-measure (the OLTR paper's table)" if key == "open_f1" else label(key)


LEGEND = (
    "Ours: mean ± sample std over the seeds. Published: the OLTR paper's value (a shipped leaderboard entry). "
    "Δ = ours − published, with our predictions re-scored under the published protocol and τ; – where that is "
    f"not possible or nothing is published. {FAST_MARK}: fast profile (bf16, compile, feature cache), not the "
    "protocol's numerics. MS1M-LT is face identification (SPEC.md §6, heldout protocol): rank-1 of the probes of the "
    "row's shot group (the open-set table: zero-shot identities; top-1: all probes); no published value has a "
    "determined metric, so there is no Δ; 'not evaluated': no face results."
)


def _grid(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], key: str, percent: bool,
          comparisons: Sequence[Comparison], faces: Sequence[dict] = ()) -> tuple[list[str], list[list[str]]]:
    cells = suite_cells(rows, methods, datasets, key, comparisons, faces)
    header = ["Method"]
    for dataset in datasets:
        header += [dataset, "published", "Δ"]
    body = []
    for method in methods:
        line = [method]
        for dataset in datasets:
            cell = cells[(method, dataset)]
            line += [_ours_text(cell, key, percent), _published_text(cell, key, percent), _delta_text(cell, percent)]
        body.append(line)
    return header, body


def _profiles(rows: Sequence[Row], datasets: Sequence[str]) -> str:
    found = sorted({str(r.profile) for r in rows if r.kind == "run" and r.dataset in datasets})
    return ", ".join(found) or DASH


def suite_markdown(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], percent: bool = False,
                   faces: Sequence[dict] = ()) -> str:
    comparisons = reported_vs_reproduced(rows)
    out = [f"Profiles of these runs: {_profiles(rows, datasets)}.\n"]
    for key in SUITE_KEYS:
        header, body = _grid(rows, methods, datasets, key, percent, comparisons, faces)
        out.append(f"### {_title(key)}\n")
        out.append("| " + " | ".join(md_escape(h) for h in header) + " |")
        out.append("|---|" + "---:|" * (len(header) - 1))
        out += ["| " + " | ".join(md_escape(c) for c in line) + " |" for line in body]
        out.append("")
    out.append(LEGEND + "\n")
    return "\n".join(out)


def suite_latex(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], percent: bool = False,
                faces: Sequence[dict] = ()) -> str:
    comparisons = reported_vs_reproduced(rows)
    out = ["% Generated by oltr-bench suite; needs \\usepackage{booktabs,graphicx}."]
    for key in SUITE_KEYS:
        header, body = _grid(rows, methods, datasets, key, percent, comparisons, faces)
        out += ["\\begin{table*}[t]", "\\centering", f"\\caption{{{latex_escape(_title(key))}. {latex_escape(LEGEND)}}}",
                f"\\label{{tab:oltr-suite-{key.replace('_', '-')}}}", "\\resizebox{\\textwidth}{!}{%",
                "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
                " & ".join(latex_escape(h) for h in header) + " \\\\", "\\midrule"]
        out += [" & ".join(latex_escape(c) for c in line) + " \\\\" for line in body]
        out += ["\\bottomrule", "\\end{tabular}}", "\\end{table*}", ""]
    return "\n".join(out)


def suite_html(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], percent: bool = False,
               faces: Sequence[dict] = ()) -> str:
    """The suite's page of the site (``suite.html``, beside ``index.html``)."""
    comparisons = reported_vs_reproduced(rows)
    e = html.escape
    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>oltr-bench suite</title>",
             "<link rel=\"stylesheet\" href=\"static/style.css\"></head><body><main>",
             "<p class=\"crumbs\"><a href=\"index.html\">leaderboard</a> ›</p><h1>The OLTR comparison (oltr-bench suite)</h1>",
             f"<p>Profiles of these runs: {e(_profiles(rows, datasets))}.</p>"]
    for key in SUITE_KEYS:
        header, body = _grid(rows, methods, datasets, key, percent, comparisons, faces)
        parts.append(f"<h2>{e(_title(key))}</h2><table class=\"suite\"><thead><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for line in body:
            cells = [f"<td>{e(line[0])}</td>", *(f'<td class="num">{e(c)}</td>' for c in line[1:])]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f"<p class=\"legend\">{e(LEGEND)}</p></main></body></html>\n")
    return "\n".join(parts)
