"""Result tables, one per dataset x protocol: Markdown, CSV and LaTeX.

Columns: the row's description (backbone, pretraining, extra data, epochs, source, open
threshold τ, seed count) and the closed-set many/medium/few/top-1, open-set F, AUROC, FPR@95 and
OSCR; Markdown and LaTeX take another choice of :data:`COLUMN_KEYS` (``report --columns``). A
table's title names its protocol (shot-group thresholds and F-measure rule). Values are
fractions (``percent=True``: percent, Markdown and LaTeX only); several seeds show as mean ± sample std.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.metrics.keys import METRIC_KEYS, OPEN_SHOT_KEYS, TABLE_KEYS, columns
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.report.collect import Collected, RunRecord
from oltr_bench.report.compare import Comparison, reported_vs_reproduced
from oltr_bench.report.redact import Redactor, site_anchors
from oltr_bench.report.rows import UNKNOWN, Row, build_rows, group_tables

METRIC_COLUMNS = columns(TABLE_KEYS)
OPEN_SHOT_COLUMNS = columns(OPEN_SHOT_KEYS)
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


def fmt_seeds(row: Row) -> str:
    """The seed count, and the runs behind it when a seed was run more than once."""
    if row.n_seeds is None:
        return DASH
    return str(row.n_seeds) + (f" ({len(row.runs)} runs)" if row.repeats else "")


def fmt_other(row: Row) -> str:
    return "; ".join(f"{label}: {value:g}" for label, value in row.other_metrics.items())


def table_title(dataset: str, protocol: str, evaluation_set: str) -> str:
    proto = PROTOCOLS.get(protocol)
    what = f" ({proto.description})" if proto else ""
    on = "" if evaluation_set == "test" else f", evaluated on the {evaluation_set} set"
    return f"{dataset} — protocol `{protocol}`{what}{on}"


LEGEND = (
    "τ: open-set threshold on the known score (own: the method's own rejection; ?: not reported). "
    "Many/Medium/Few/Top-1: closed-set accuracy; Open F: open-set F-measure at τ under the table's protocol. "
    "Seeds > 1: mean ± sample standard deviation over the seeds (runs repeating a seed are averaged into it first). "
    "Profile: the numerics of a run (faithful: the official protocol's; standard: the config as set; fast: bf16, "
    "compile and the feature cache, marked (fast))."
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


@dataclass(frozen=True)
class Column:
    """A column of the Markdown and LaTeX tables: its key (for ``--columns``), title and cell text."""

    key: str
    title: str
    numeric: bool
    text: Callable[[Row, bool], str]  # (row, percent) -> cell


def _metric_column(key: str, title: str) -> Column:
    return Column(key, title, True, lambda row, percent: fmt_metric(row, key, percent))


NAME_COLUMN = Column("name", "Method", False, lambda row, _: row.display_name)
INFO_COLUMNS = (
    Column("backbone", "Backbone", False, lambda row, _: row.backbone or DASH),
    Column("pretraining", "Pretraining", False, lambda row, _: row.pretraining or DASH),
    Column("extra_data", "Extra data", False, lambda row, _: fmt_flag(row.extra_data)),
    Column("epochs", "Epochs", True, lambda row, _: DASH if row.epochs is None else str(row.epochs)),
    Column("source", "Source", False, lambda row, _: row.source),
    Column("tau", "τ", True, lambda row, _: fmt_threshold(row.open_threshold)),
    Column("seeds", "Seeds", True, lambda row, _: fmt_seeds(row)),
    Column("profile", "Profile", False, lambda row, _: row.profile or DASH),
)
OTHER_COLUMN = Column("other", "Other reported", False, lambda row, _: fmt_other(row))
COLUMN_KEYS = (*(c.key for c in INFO_COLUMNS), *METRIC_KEYS, OTHER_COLUMN.key)
"""What ``--columns`` may name (the name column always comes first)."""


def parse_columns(text: str) -> tuple[str, ...]:
    """``--columns many,few,top1``: known keys, each once."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in COLUMN_KEYS and k != NAME_COLUMN.key]
    if not keys or unknown:
        raise OltrError(f"--columns {text!r}: {'unknown ' + ', '.join(map(repr, unknown)) if unknown else 'no column'}; "
                        f"expected comma-separated keys from: {', '.join(COLUMN_KEYS)}")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise OltrError(f"--columns {text!r}: {', '.join(repeated)} given twice; expected each column once")
    return tuple(k for k in keys if k != NAME_COLUMN.key)


def table_columns(table: Sequence[Row], selected: Sequence[str] | None = None) -> list[Column]:
    """The name column, then ``selected`` (in that order) or, by default, every description column,
    the metric columns of :func:`metric_columns` and, where some row has one, other reported numbers."""
    by_key = {c.key: c for c in INFO_COLUMNS} | {key: _metric_column(key, title) for key, title in columns(METRIC_KEYS)}
    by_key[OTHER_COLUMN.key] = OTHER_COLUMN
    if selected is None:
        chosen = [*INFO_COLUMNS, *(by_key[key] for key, _ in metric_columns(table))]
        if any(r.other_metrics for r in table):
            chosen.append(OTHER_COLUMN)
    else:
        chosen = [by_key[key] for key in selected]
    return [NAME_COLUMN, *chosen]



def markdown_tables(rows: Sequence[Row], percent: bool = False, compare: bool = True,
                    selected: Sequence[str] | None = None) -> str:
    """One Markdown table per dataset x protocol, then the reported-vs-reproduced gaps; ``selected``:
    the columns after the name (:func:`table_columns`)."""
    out = []
    for (dataset, protocol, evaluation_set), table in group_tables(rows).items():
        cols = table_columns(table, selected)
        out.append(f"### {table_title(md_escape(dataset), protocol, evaluation_set)}\n")
        out.append("| " + " | ".join(c.title for c in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for row in table:
            # Numeric columns are ours; text columns come from strangers' files.
            out.append("| " + " | ".join(c.text(row, percent) if c.numeric else md_escape(c.text(row, percent)) for c in cols) + " |")
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
        if c.ours.fast:
            ours += " — fast profile: not the protocol's numerics"
        for key, reported, mine, gap in c.gaps:
            sign = "+" if gap >= 0 else "−"
            cells = [md_escape(c.reported.dataset), md_escape(c.reported.method), rep, ours, key, fmt_number(reported, percent),
                     fmt_number(mine, percent), sign + fmt_number(abs(gap), percent)]
            out.append("| " + " | ".join(_md_cell(x) for x in cells) + " |")
    out.append("\n" + COMPARISON_LEGEND + "\n")
    return "\n".join(out)


CSV_INFO = ("dataset", "protocol", "evaluation_set", "open_threshold", "name", "method", "source", "backbone",
            "pretraining", "extra_data", "epochs", "seeds", "partial", "profile")


def csv_table(rows: Sequence[Row], local_paths: bool = False) -> str:
    """All rows in one CSV: description, every metric of SPEC.md §3 with its std, and the source
    files (relative to the runs or work folder, as on the site, unless ``local_paths``)."""
    paths = Redactor(site_anchors(run for row in rows for run in row.runs), enabled=not local_paths)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_INFO, *(c for key in METRIC_KEYS for c in (key, f"{key}_std")), "other_metrics", "paper_url", "files"])
    for table in group_tables(rows).values():
        for row in table:
            threshold = "" if row.open_threshold is None else ("unknown" if row.open_threshold == UNKNOWN else row.open_threshold)
            info = [row.dataset, row.protocol, row.evaluation_set, threshold, row.display_name, row.method, row.source,
                    row.backbone or "", row.pretraining or "", "" if row.extra_data is None else row.extra_data,
                    "" if row.epochs is None else row.epochs, row.n_seeds or "", row.partial, row.profile or ""]
            values = []
            for key in METRIC_KEYS:
                values += [_csv_number(row.metrics.get(key)), _csv_number(row.std.get(key))]
            files = [paths.path(r.path) for r in row.runs] or ([paths.path(row.entry.path)] if row.entry else [])
            other = json.dumps(row.other_metrics, ensure_ascii=False) if row.other_metrics else ""
            writer.writerow([*info, *values, other, row.paper.get("url", ""), ";".join(files)])
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


LATEX_SEQUENCES = {">=": r"$\geq$", "<=": r"$\leq$"}
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
                 "<": "$<$", ">": "$>$", "≤": r"$\leq$", "≥": r"$\geq$", "−": "$-$", "–": "--", "τ": r"$\tau$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return re.sub(r">=|<=|[\s\S]", lambda m: LATEX_SEQUENCES.get(m.group(), LATEX_SPECIAL.get(m.group(), m.group())), text)


NARROW = 9
"""Columns that fit one column of a two-column paper in ``\\small``; wider tables span both columns."""


def latex_label(dataset: str, protocol: str, evaluation_set: str) -> str:
    """``tab:oltr-<dataset>-<protocol>[-<set>]``, to cite with ``\\ref``."""
    parts = [dataset, protocol] + ([evaluation_set] if evaluation_set != "test" else [])
    return "tab:oltr-" + "-".join(re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-") for p in parts)


def latex_tables(rows: Sequence[Row], percent: bool = False, selected: Sequence[str] | None = None) -> str:
    """One booktabs table per dataset x protocol with a ``\\label`` (:func:`latex_label`); up to
    :data:`NARROW` columns a ``table`` in ``\\small`` type, wider ones a ``table*`` scaled to the
    text width (``selected`` picks the columns, :func:`table_columns`). Needs
    ``\\usepackage{booktabs,graphicx}``."""
    out = ["% Generated by oltr-bench; needs \\usepackage{booktabs,graphicx}."]
    for (dataset, protocol, evaluation_set), table in group_tables(rows).items():
        cols = table_columns(table, selected)
        unit = " Values in percent." if percent else " Values are fractions."
        if OTHER_COLUMN in cols:
            unit += " Other reported: published numbers that are none of oltr-bench's metrics, as published."
        if any(c.key == "tau" for c in cols):
            unit += " τ: open-set threshold (own: the method’s own rejection; ?: not reported)."
        narrow = len(cols) <= NARROW
        env = "table" if narrow else "table*"
        out += [
            f"\\begin{{{env}}}[t]",
            "\\centering",
            *(["\\small"] if narrow else []),
            f"\\caption{{{latex_escape(table_title(dataset, protocol, evaluation_set).replace('`', ''))}.{latex_escape(unit)}}}",
            f"\\label{{{latex_label(dataset, protocol, evaluation_set)}}}",
            *([] if narrow else ["\\resizebox{\\textwidth}{!}{%"]),
            "\\begin{tabular}{" + "".join("r" if c.numeric else "l" for c in cols) + "}",
            "\\toprule",
            " & ".join(latex_escape(c.title) for c in cols) + " \\\\",
            "\\midrule",
        ]
        for row in table:
            out.append(" & ".join(latex_escape(c.text(row, percent)) for c in cols) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}" + ("" if narrow else "}"), f"\\end{{{env}}}", ""]
    return "\n".join(out)


def render(rows: Sequence[Row], fmt: str = "md", percent: bool = False, local_paths: bool = False,
           selected: Sequence[str] | None = None) -> str:
    """The tables in ``fmt``; ``selected``: the Markdown or LaTeX columns after the name (CSV has them all)."""
    if selected is not None and fmt == "csv":
        raise OltrError("--columns applies to Markdown and LaTeX tables; CSV always has every column (for programs): "
                        "drop --columns, or use --format md or latex")
    if fmt == "md":
        return markdown_tables(rows, percent, selected=selected)
    if fmt == "csv":
        if percent:
            # CSV is read by programs: its columns keep the meaning of SPEC.md §3 (fractions).
            raise OltrError("--percent applies to Markdown and LaTeX tables; CSV always holds fractions in [0, 1] "
                            "as results.json does (SPEC.md §3): drop --percent, or use --format md or latex")
        return csv_table(rows, local_paths)
    if fmt == "latex":
        return latex_tables(rows, percent, selected)
    raise ValueError(f"unknown table format {fmt!r}; expected one of {FORMATS}")


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """Markdown tables straight from results dicts (as ``evaluate`` prints them)."""
    records = [RunRecord(results=r, path=Path(r.get("_path", RunDir.RESULTS))) for r in results]
    return markdown_tables(build_rows(Collected(runs=records)))
