"""Result tables, one per dataset x protocol: Markdown, CSV and LaTeX.

Columns: the row's description (backbone, pretraining, extra data, epochs, source, open
threshold τ, seed count) and the closed-set many/medium/few/top-1, open-set F, AUROC, FPR@95 and
OSCR. A table's title names its protocol (shot-group thresholds and F-measure rule). Values are
fractions (``percent=True``: percent, Markdown and LaTeX only); several seeds show as mean ± sample std.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.metrics.keys import METRIC_KEYS, OPEN_SHOT_KEYS, TABLE_KEYS, columns
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.report.collect import Collected, RunRecord
from oltr_bench.report.compare import Comparison, reported_vs_reproduced
from oltr_bench.report.rows import UNKNOWN, Row, build_rows, group_tables

METRIC_COLUMNS = columns(TABLE_KEYS)
OPEN_SHOT_COLUMNS = columns(OPEN_SHOT_KEYS)
INFO_COLUMNS = ("Method", "Backbone", "Pretraining", "Extra data", "Epochs", "Source", "τ", "Seeds")
FORMATS = ("md", "csv", "latex")
DASH = "–"


def fmt_number(value: Any, percent: bool = False) -> str:
    if value is None:
        return DASH
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def fmt_metric(row: Row, key: str, percent: bool = False, pm: str = " ± ") -> str:
    value = row.metrics.get(key)
    std = row.std.get(key)
    if value is None or std is None:
        return fmt_number(value, percent)
    return f"{fmt_number(value, percent)}{pm}{fmt_number(std, percent)}"


def fmt_threshold(value: float | str | None) -> str:
    if value == UNKNOWN:
        return "?"
    return "own" if value is None else f"{value:g}"


def fmt_flag(value: bool | None) -> str:
    return DASH if value is None else ("yes" if value else "no")


def fmt_other(row: Row) -> str:
    return "; ".join(f"{label}: {value:g}" for label, value in row.other_metrics.items())


def info_cells(row: Row) -> list[str]:
    return [
        row.display_name,
        row.backbone or DASH,
        row.pretraining or DASH,
        fmt_flag(row.extra_data),
        DASH if row.epochs is None else str(row.epochs),
        row.source,
        fmt_threshold(row.open_threshold),
        DASH if row.n_seeds is None else str(row.n_seeds),
    ]


def table_title(dataset: str, protocol: str, evaluation_set: str) -> str:
    proto = PROTOCOLS.get(protocol)
    what = f" ({proto.description})" if proto else ""
    on = "" if evaluation_set == "test" else f", evaluated on the {evaluation_set} set"
    return f"{dataset} — protocol `{protocol}`{what}{on}"


LEGEND = (
    "τ: open-set threshold on the known score (own: the method's own rejection; ?: not reported). "
    "Many/Medium/Few/Top-1: closed-set accuracy; Open F: open-set F-measure at τ under the table's protocol. "
    "Seeds > 1: mean ± sample standard deviation."
)


def metric_columns(table: Sequence[Row]) -> tuple[tuple[str, str], ...]:
    """The metric columns of a table; open-set-setting shot accuracies are added when some row
    reports only those (as the OLTR repository's README does)."""
    only_open = any(r.metrics.get("open_many") is not None and r.metrics.get("many") is None for r in table)
    return METRIC_COLUMNS + (OPEN_SHOT_COLUMNS if only_open else ())


_MD_ESCAPES = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]",
               "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "}


def md_escape(text: str) -> str:
    """``text`` as literal Markdown text: no table cell break, no HTML, no link, no emphasis or code
    (names and notes come from strangers' files)."""
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in text)


def _md_cell(text: str) -> str:
    """A cell we composed (its data parts already :func:`md_escape`'d, our own markup kept): one line."""
    return text.replace("\n", " ").replace("\r", " ")


def markdown_tables(rows: Sequence[Row], percent: bool = False, compare: bool = True) -> str:
    """One Markdown table per dataset x protocol, then the reported-vs-reproduced gaps."""
    out = []
    for (dataset, protocol, evaluation_set), table in group_tables(rows).items():
        other = any(r.other_metrics for r in table)
        columns = metric_columns(table)
        headers = [*INFO_COLUMNS, *(title for _, title in columns), *(["Other reported"] if other else [])]
        out.append(f"### {table_title(md_escape(dataset), protocol, evaluation_set)}\n")
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "---|" * len(headers))
        for row in table:
            cells = [md_escape(c) for c in info_cells(row)] + [fmt_metric(row, key, percent) for key, _ in columns]
            if other:
                cells.append(md_escape(fmt_other(row)))
            out.append("| " + " | ".join(cells) + " |")
        notes = [LEGEND]
        if any(r.partial for r in table):
            notes.append("(quick): a `--quick` run on a subset of the test ids; never a valid result.")
        out.append("\n" + " ".join(notes) + "\n")
    comparisons = reported_vs_reproduced(rows) if compare else []
    if comparisons:
        out.append(markdown_comparison(comparisons, percent))
    return "\n".join(out)


def comparison_measure(c: Comparison, escape=lambda text: text) -> str:
    """How our numbers in a comparison were measured, and whether that matches the reported row
    (``escape`` applies to the free text, which may name a stranger's run)."""
    parts = [f"`{c.protocol}`, τ {fmt_threshold(c.threshold)}"]
    if c.rescored:
        parts.append(f"re-scored from its predictions (as run: `{c.ours.protocol}`, τ {fmt_threshold(c.ours.open_threshold)})")
    differ = [what for what, same in (("protocols", c.same_protocol), ("thresholds", c.same_threshold)) if not same]
    if differ:
        parts.append(f"{' and '.join(differ)} differ: {escape(c.mismatch)}")
    return "; ".join(parts)


COMPARISON_LEGEND = (
    "Gap = ours − reported. Where the protocols or thresholds differ, our numbers are re-scored from the run's "
    "predictions under the reported protocol and τ when the predictions and the split are on disk; pairs that could "
    "not be re-scored are not measured the same way (they say why)."
)


def markdown_comparison(comparisons: Sequence[Comparison], percent: bool = False) -> str:
    out = ["### Reported vs reproduced\n", "| Dataset | Method | Reported | Ours | Metric | Reported | Ours | Gap |", "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        rep = f"{md_escape(c.reported.display_name)} (`{c.reported.protocol}`, τ {fmt_threshold(c.reported.open_threshold)})"
        ours = f"{md_escape(c.ours.display_name)} ({comparison_measure(c, md_escape)})"
        for key, reported, mine, gap in c.gaps:
            sign = "+" if gap >= 0 else "−"
            cells = [md_escape(c.reported.dataset), md_escape(c.reported.method), rep, ours, key, fmt_number(reported, percent),
                     fmt_number(mine, percent), sign + fmt_number(abs(gap), percent)]
            out.append("| " + " | ".join(_md_cell(x) for x in cells) + " |")
    out.append("\n" + COMPARISON_LEGEND + "\n")
    return "\n".join(out)


CSV_INFO = ("dataset", "protocol", "evaluation_set", "open_threshold", "name", "method", "source", "backbone",
            "pretraining", "extra_data", "epochs", "seeds", "partial")


def csv_table(rows: Sequence[Row]) -> str:
    """All rows in one CSV: description, every metric of SPEC.md §3 with its std, and the source files."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_INFO, *(c for key in METRIC_KEYS for c in (key, f"{key}_std")), "other_metrics", "paper_url", "files"])
    for table in group_tables(rows).values():
        for row in table:
            threshold = "" if row.open_threshold is None else ("unknown" if row.open_threshold == UNKNOWN else row.open_threshold)
            info = [row.dataset, row.protocol, row.evaluation_set, threshold, row.display_name, row.method, row.source,
                    row.backbone or "", row.pretraining or "", "" if row.extra_data is None else row.extra_data,
                    "" if row.epochs is None else row.epochs, row.n_seeds or "", row.partial]
            values = []
            for key in METRIC_KEYS:
                values += [_csv_number(row.metrics.get(key)), _csv_number(row.std.get(key))]
            files = [str(r.path) for r in row.runs] or ([str(row.entry.path)] if row.entry else [])
            other = json.dumps(row.other_metrics, ensure_ascii=False) if row.other_metrics else ""
            writer.writerow([*info, *values, other, row.paper.get("url", ""), ";".join(files)])
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
                 "<": "$<$", ">": "$>$", "≤": r"$\leq$", "≥": r"$\geq$", "−": "$-$", "–": "--", "τ": r"$\tau$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_tables(rows: Sequence[Row], percent: bool = False) -> str:
    """One booktabs ``table`` per dataset x protocol (needs ``\\usepackage{booktabs,graphicx}``)."""
    out = ["% Generated by oltr-bench; needs \\usepackage{booktabs,graphicx}."]
    for (dataset, protocol, evaluation_set), table in group_tables(rows).items():
        other = any(r.other_metrics for r in table)
        columns = metric_columns(table)
        headers = [*INFO_COLUMNS, *(title for _, title in columns), *(["Other reported"] if other else [])]
        unit = " Values in percent." if percent else " Values are fractions."
        if other:
            unit += " Other reported: published numbers that are none of oltr-bench's metrics, as published."
        out += [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{latex_escape(table_title(dataset, protocol, evaluation_set).replace('`', ''))}.{latex_escape(unit)} "
            f"{latex_escape('τ: open-set threshold (own: the method’s own rejection; ?: not reported).')}}}",
            "\\resizebox{\\linewidth}{!}{%",
            "\\begin{tabular}{" + "l" * 4 + "r" + "l" + "r" * (2 + len(columns)) + ("l" if other else "") + "}",
            "\\toprule",
            " & ".join(latex_escape(h) for h in headers) + " \\\\",
            "\\midrule",
        ]
        for row in table:
            cells = info_cells(row) + [fmt_metric(row, key, percent) for key, _ in columns]
            if other:
                cells.append(fmt_other(row))
            out.append(" & ".join(latex_escape(c) for c in cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}}", "\\end{table}", ""]
    return "\n".join(out)


def render(rows: Sequence[Row], fmt: str = "md", percent: bool = False) -> str:
    if fmt == "md":
        return markdown_tables(rows, percent)
    if fmt == "csv":
        if percent:
            # CSV is read by programs: its columns keep the meaning of SPEC.md §3 (fractions).
            raise OltrError("--percent applies to Markdown and LaTeX tables; CSV always holds fractions in [0, 1] "
                            "as results.json does (SPEC.md §3): drop --percent, or use --format md or latex")
        return csv_table(rows)
    if fmt == "latex":
        return latex_tables(rows, percent)
    raise ValueError(f"unknown table format {fmt!r}; expected one of {FORMATS}")


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """Markdown tables straight from results dicts (as ``evaluate`` prints them)."""
    records = [RunRecord(results=r, path=Path(r.get("_path", RunDir.RESULTS))) for r in results]
    return markdown_tables(build_rows(Collected(runs=records)))
