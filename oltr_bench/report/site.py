"""The static leaderboard site: an index with the methods overview (every dataset's published and
our results side by side), one page per dataset, one page per entry or run (with its plots), and
the reported-vs-reproduced view.

A dataset page holds one ranked table per protocol (numbers under different protocols are not
comparable): a rank column by the headline metrics (:func:`oltr_bench.report.rows.ranked`), rows
in rank order, column headers that sort in each metric's better direction first, a sticky name
column, column groups (closed set, open set, detection, calibration) to show or hide, filters and
a search box. Every metric is shown in percent, with a switch to fractions (as ``results.json``
holds them); both texts are rendered here, so the page only swaps them.

Pages are rendered by Jinja2 with autoescaping on, so every string from an entry or a run is
shown as text; links are only made from http(s) URLs. The JavaScript and CSS ship with the
package (``report/static``) and are copied into the site, which therefore works from the file
system with no network. The site is built in a temporary folder and moved into place when
complete; a folder that is neither empty nor an earlier site is never overwritten.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Sequence

import jinja2
from tqdm import tqdm

from oltr_bench import __version__
from oltr_bench.errors import OltrError
from oltr_bench.protocols import FACE_FARS, FACE_GROUP_RULES, PROTOCOLS
from oltr_bench.report import faces as faces_mod
from oltr_bench.report import tables
from oltr_bench.metrics.keys import BY_KEY, GROUP_TITLES, METRIC_KEYS, PAPER_KEYS, SITE_GROUPS, MetricKey, page_keys
from oltr_bench.report.entries import is_http_url, slugify
from oltr_bench.report.overview import methods_overview
from oltr_bench.report.plots import PlotCache, page_plots
from oltr_bench.report.redact import Redactor, site_anchors
from oltr_bench.report.compare import Comparison, reported_vs_reproduced
from oltr_bench.report.rows import RANK_RULE, UNKNOWN, Row, group_tables, ranked
from oltr_bench.utils.io import atomic_directory

MARKER = ".oltr-bench-site"
STATIC_FILES = ("leaderboard.js", "style.css")
FILTERS = (("backbone", "Backbone"), ("pretraining", "Pretraining"), ("extra", "Extra data"), ("source", "Source"))
GROUPS = tuple((group, GROUP_TITLES[group]) for group in SITE_GROUPS)


@dataclass
class SiteSummary:
    index: Path
    pages: int
    plots_drawn: int
    plots_reused: int


@dataclass
class PageTable:
    """One protocol's table on a dataset page: its rows in rank order and its metric columns."""

    protocol: str
    evaluation_set: str
    rows: list[tuple[int | None, Row]]
    metrics: list[MetricKey]  # the page's metric columns some row has a value for
    has_other: bool


@dataclass
class DatasetPage:
    name: str
    rows: list[Row]

    @property
    def folder(self) -> str:
        return self.rows[0].folder if self.rows else slugify(self.name, "dataset")  # a dataset with face results only

    @cached_property
    def tables(self) -> list[PageTable]:
        out = []
        for (_, protocol, evaluation_set), table in group_tables(self.rows).items():
            metrics = [BY_KEY[key] for group in SITE_GROUPS for key in page_keys(group)
                       if any(r.metrics.get(key) is not None for r in table)]
            out.append(PageTable(protocol, evaluation_set, ranked(table), metrics, any(r.other_metrics for r in table)))
        return out

    @property
    def counts(self) -> Counter:
        return Counter(r.source for r in self.rows)

    @property
    def protocols(self) -> list[str]:
        return sorted({r.protocol for r in self.rows})


def _both(text: Callable[[bool], str]) -> dict[str, str]:
    """A number's text in percent and as a fraction (the page shows one, the switch swaps them)."""
    return {"pct": text(True), "frac": text(False)}


def _number(value: Any, percent: bool) -> str:
    return tables.fmt_number(value, percent) if isinstance(value, (int, float)) and not isinstance(value, bool) else tables.DASH


def _signed(value: float, percent: bool) -> str:
    return ("+" if value >= 0 else "−") + tables.fmt_number(abs(value), percent)


def _search_text(row: Row) -> str:
    """What the search box matches (lower case)."""
    paper = row.paper or {}
    parts = [row.display_name, row.method, row.backbone, row.pretraining, row.source,
             paper.get("title"), paper.get("venue"), paper.get("year")]
    return " ".join(str(p) for p in parts if p not in (None, "")).lower()


def _sortval(value: Any) -> str:
    """A cell's ``data-sort``: numbers as text, missing as ''."""
    if value is None or value == UNKNOWN or isinstance(value, bool):
        return ""
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


def _gap(comparison: Comparison, key: str) -> dict[str, float] | None:
    for metric, reported, ours, diff in comparison.gaps:
        if metric == key:
            return {"reported": reported, "ours": ours, "diff": diff}
    return None


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("oltr_bench.report", "templates"),
        autoescape=True,  # every page is HTML: escape everything that is not marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests["http_url"] = is_http_url
    env.filters.update(
        metric=lambda row, key: _both(lambda percent: tables.fmt_metric(row, key, percent)),
        number=lambda v: _both(lambda percent: _number(v, percent)),
        signed=lambda v: _both(lambda percent: _signed(v, percent)),
        search=_search_text,
        tau=tables.fmt_threshold,
        flag=tables.fmt_flag,
        other=tables.fmt_other,
        seeds=tables.fmt_seeds,
        sortval=_sortval,
        pretty=lambda obj: json.dumps(obj, indent=2, ensure_ascii=False, default=str),
        gap=_gap,
    )
    return env


def _run_label(run) -> str:
    seed = (run.config or {}).get("seed", (run.manifest or {}).get("seed"))
    name = run.run_dir.name if run.run_dir else run.path.name
    return f"seed {seed} ({name})" if seed is not None else name


def check_site_dir(out: Path) -> None:
    """``out`` must be new, empty, or an earlier oltr-bench site (which is replaced)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OltrError(f"--html {out}: exists and is not a folder; expected a new or empty folder, or an earlier oltr-bench site")
    if (out / MARKER).is_file() or not any(out.iterdir()):
        return
    raise OltrError(
        f"--html {out}: the folder is not empty and is not an oltr-bench site (no {MARKER} file); "
        "choose a new or empty folder so that nothing of yours is replaced"
    )


def build_site(rows: Sequence[Row], out: str | Path, *, plots: bool = True, progress: bool = False,
               local_paths: bool = False, faces: Sequence[dict[str, Any]] = (),
               extra_pages: dict[str, str] | None = None) -> SiteSummary:
    """Write the site for ``rows`` to ``out`` (atomically); returns where its index is.

    Local paths and machine details are redacted (:mod:`oltr_bench.report.redact`) unless
    ``local_paths``."""
    out = Path(out)
    check_site_dir(out)
    env = environment()
    redactor = Redactor(site_anchors(run for row in rows for run in row.runs), enabled=not local_paths)
    face_groups = faces_mod.tables(faces_mod.face_rows(faces))
    names = sorted({r.dataset for r in rows} | {d for d, _, _ in face_groups})
    datasets = [DatasetPage(name, [r for r in rows if r.dataset == name]) for name in names]
    comparisons = reported_vs_reproduced(rows)
    common = {"version": __version__, "generated": time.strftime("%Y-%m-%d %H:%M %Z"), "datasets": datasets,
              "protocols": PROTOCOLS, "current_dataset": None, "paths": redactor}
    cache = PlotCache(out if out.is_dir() else None)
    pages = 0
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / MARKER).write_text(json.dumps({"generator": "oltr-bench", "version": __version__}) + "\n", encoding="utf-8")
        static = tmp / "static"
        static.mkdir()
        for name in STATIC_FILES:
            shutil.copyfile(str(files("oltr_bench.report") / "static" / name), static / name)
        overview = methods_overview(rows)
        _write(tmp / "index.html", env.get_template("index.html").render(
            **common, root="", comparisons=comparisons, overview=overview, descriptions=_descriptions(overview.unpublished),
            published_datasets=_or_list(sorted({g.dataset for g in overview.groups if not g.ours}))))
        _write(tmp / "compare.html", env.get_template("compare.html").render(
            **{**common, "current_dataset": "@compare"}, root="", comparisons=comparisons, compare_keys=PAPER_KEYS))
        pages += 2
        for name, text in (extra_pages or {}).items():  # e.g. the suite's suite.html
            _write(tmp / name, text)
            pages += 1
        bar = tqdm(total=len(rows), desc="site pages", unit="page", disable=not progress)
        for ds in datasets:
            folder = tmp / ds.folder
            folder.mkdir()
            filters = [(key, label, sorted({_filter_value(r, key) for r in ds.rows})) for key, label in FILTERS]
            _write(folder / "index.html", env.get_template("dataset.html").render(
                **{**common, "current_dataset": ds.name}, root="../", dataset=ds, info_columns=INFO_COLUMNS, filters=filters,
                groups=GROUPS, rank_rule=RANK_RULE, legend=tables.LEGEND,
                faces=[(p, rs, faces_mod.cmc_svg(rs)) for d, p, rs in face_groups if d == ds.name],
                face_columns=faces_mod.COLUMNS, face_fars=FACE_FARS, face_rules=", ".join(f"{g} {r}" for g, r in FACE_GROUP_RULES.items())))
            pages += 1
            for row in ds.rows:
                _detail_page(env, common, row, folder / row.slug, cache if plots else None)
                pages += 1
                bar.update()
        bar.close()
    return SiteSummary(out / "index.html", pages, cache.drawn, cache.reused)


def _descriptions(datasets: Sequence[str]) -> dict[str, str]:
    """One line on each dataset that has only our results (what the embedded benchmark is)."""
    if not datasets:
        return {}
    from oltr_bench.registry import DATASETS, first_line  # imports the dataset modules: only when needed

    return {name: first_line(DATASETS.get(name)).rstrip(".") for name in datasets if name in DATASETS}


def _or_list(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + (names[-1] if names else "")


def _write(path: Path, text: str) -> None:
    # No fsync per page: the whole folder becomes visible at once when it is complete.
    path.write_text(text, encoding="utf-8")


def _filter_value(row: Row, key: str) -> str:
    if key == "extra":
        return tables.fmt_flag(row.extra_data)
    value = {"backbone": row.backbone, "pretraining": row.pretraining, "source": row.source}[key]
    return value or "–"


# The description columns of a dataset page after rank and name: (title, type, hint).
INFO_COLUMNS = (
    ("Method", "text", "registry name of the method"), ("Backbone", "text", ""), ("Pretraining", "text", ""),
    ("Extra data", "text", "trained with data beyond the train list"),
    ("Epochs", "num", "training epochs (stage 1 + stage 2 where known)"), ("Source", "text", "reported, reproduced or verified"),
    ("τ", "num", "open-set threshold on the known score (own: the method's own rejection; ?: not reported)"),
    ("Seeds", "num", "number of seeds averaged"),
)


def _detail_page(env: jinja2.Environment, common: dict, row: Row, folder: Path, cache: PlotCache | None) -> None:
    folder.mkdir()
    plots, skipped = [], []
    if cache is not None:
        page = page_plots(row)
        for spec in page.specs:
            plots.append({"file": cache.materialize(spec, folder).name, "title": spec.title})
        skipped = page.skipped
    else:
        skipped = [("Plots", "the site was built with --no-plots")]
    _write(folder / "index.html", env.get_template("detail.html").render(
        **{**common, "current_dataset": row.dataset}, root="../../", row=row, protocol=PROTOCOLS.get(row.protocol),
        metric_keys=METRIC_KEYS, metric_columns=tables.METRIC_COLUMNS, plots=plots, skipped=skipped, run_label=_run_label))
