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
recognition (MegaFace identification), which :func:`ms1m_lt_cell` supplies; until that
evaluation exists, the column says "not evaluated".
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

from oltr_bench.metrics.keys import label
from oltr_bench.report.compare import Comparison, reported_vs_reproduced
from oltr_bench.report.rows import Row
from oltr_bench.report.tables import DASH, fmt_number, latex_escape, md_escape

SUITE_KEYS = ("open_f1", "many", "medium", "few", "top1", "auroc")
"""The suite's tables: the paper's (open F) first, then the shot groups, top-1 and AUROC."""
PAPER_URL = "arxiv.org/abs/1904.05160"  # the OLTR paper: its entries are "the published value"
FACES_DATASET = "ms1m_lt"
NOT_EVALUATED = "not evaluated"
FAST_MARK = "†"


@dataclass
class SuiteCell:
    ours: Row | None = None
    published: Row | None = None
    delta: float | None = None
    note: str = ""  # shown instead of numbers (the MS1M-LT column before face evaluation)


def ms1m_lt_cell(method: str, key: str, rows: Sequence[Row]) -> SuiteCell:
    """THE MS1M-LT COLUMN of the suite's tables (one place; the faces evaluation plugs in here).

    MS1M-LT is scored as MegaFace identification, not by the closed/open-set metrics of the other
    columns, so a run's results.json does not fill this column. When the faces evaluation exists,
    return its cell for ``method`` here (ours, published, Δ); until then: "not evaluated"."""
    return SuiteCell(note=NOT_EVALUATED)


def _published(dataset: str, method: str, rows: Sequence[Row]) -> Row | None:
    reported = [r for r in rows if r.source == "reported" and r.dataset == dataset and r.method == method]
    reported.sort(key=lambda r: (PAPER_URL not in str(r.paper.get("url", "")), r.name))
    return reported[0] if reported else None


def suite_cells(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str],
                key: str, comparisons: Sequence[Comparison] | None = None) -> dict[tuple[str, str], SuiteCell]:
    """(method, dataset) -> its cell for ``key``; ``rows`` are the suite's runs and the leaderboard entries."""
    comparisons = reported_vs_reproduced(rows) if comparisons is None else comparisons
    cells = {}
    for dataset in datasets:
        for method in methods:
            if dataset == FACES_DATASET:
                cells[(method, dataset)] = ms1m_lt_cell(method, key, rows)
                continue
            ours = [r for r in rows if r.kind == "run" and r.dataset == dataset and r.method == method and r.evaluation_set == "test"]
            ours.sort(key=lambda r: (r.partial, -(r.n_seeds or 0), r.name))
            cell = SuiteCell(ours[0] if ours else None, _published(dataset, method, rows))
            if cell.ours is not None and cell.published is not None:
                for c in comparisons:
                    if c.ours is cell.ours and c.reported is cell.published and c.same_protocol and c.same_threshold:
                        cell.delta = next((gap for k, _, _, gap in c.gaps if k == key), None)
            cells[(method, dataset)] = cell
    return cells


def _ours_text(cell: SuiteCell, key: str, percent: bool) -> str:
    if cell.note:
        return cell.note
    if cell.ours is None or cell.ours.metrics.get(key) is None:
        return DASH
    value, std = cell.ours.metrics.get(key), cell.ours.std.get(key)
    text = fmt_number(value, percent) + (f" ± {fmt_number(std, percent)}" if std is not None else "")
    return text + (f" {FAST_MARK}" if cell.ours.fast else "") + (" (quick)" if cell.ours.partial else "")


def _published_text(cell: SuiteCell, key: str, percent: bool) -> str:
    if cell.note or cell.published is None or cell.published.metrics.get(key) is None:
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
    "protocol's numerics. MS1M-LT is evaluated as face recognition: 'not evaluated' until that evaluation exists."
)


def _grid(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], key: str, percent: bool,
          comparisons: Sequence[Comparison]) -> tuple[list[str], list[list[str]]]:
    cells = suite_cells(rows, methods, datasets, key, comparisons)
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


def suite_markdown(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], percent: bool = False) -> str:
    comparisons = reported_vs_reproduced(rows)
    out = [f"Profiles of these runs: {_profiles(rows, datasets)}.\n"]
    for key in SUITE_KEYS:
        header, body = _grid(rows, methods, datasets, key, percent, comparisons)
        out.append(f"### {_title(key)}\n")
        out.append("| " + " | ".join(md_escape(h) for h in header) + " |")
        out.append("|---|" + "---:|" * (len(header) - 1))
        out += ["| " + " | ".join(md_escape(c) for c in line) + " |" for line in body]
        out.append("")
    out.append(LEGEND + "\n")
    return "\n".join(out)


def suite_latex(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], percent: bool = False) -> str:
    comparisons = reported_vs_reproduced(rows)
    out = ["% Generated by oltr-bench suite; needs \\usepackage{booktabs,graphicx}."]
    for key in SUITE_KEYS:
        header, body = _grid(rows, methods, datasets, key, percent, comparisons)
        out += ["\\begin{table*}[t]", "\\centering", f"\\caption{{{latex_escape(_title(key))}. {latex_escape(LEGEND)}}}",
                f"\\label{{tab:oltr-suite-{key.replace('_', '-')}}}", "\\resizebox{\\textwidth}{!}{%",
                "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
                " & ".join(latex_escape(h) for h in header) + " \\\\", "\\midrule"]
        out += [" & ".join(latex_escape(c) for c in line) + " \\\\" for line in body]
        out += ["\\bottomrule", "\\end{tabular}}", "\\end{table*}", ""]
    return "\n".join(out)


def suite_html(rows: Sequence[Row], methods: Sequence[str], datasets: Sequence[str], percent: bool = False) -> str:
    """The suite's page of the site (``suite.html``, beside ``index.html``)."""
    comparisons = reported_vs_reproduced(rows)
    e = html.escape
    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>oltr-bench suite</title>",
             "<link rel=\"stylesheet\" href=\"static/style.css\"></head><body><main>",
             "<p class=\"crumbs\"><a href=\"index.html\">leaderboard</a> ›</p><h1>The OLTR comparison (oltr-bench suite)</h1>",
             f"<p>Profiles of these runs: {e(_profiles(rows, datasets))}.</p>"]
    for key in SUITE_KEYS:
        header, body = _grid(rows, methods, datasets, key, percent, comparisons)
        parts.append(f"<h2>{e(_title(key))}</h2><table class=\"suite\"><thead><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for line in body:
            cells = [f"<td>{e(line[0])}</td>", *(f'<td class="num">{e(c)}</td>' for c in line[1:])]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f"<p class=\"legend\">{e(LEGEND)}</p></main></body></html>\n")
    return "\n".join(parts)
