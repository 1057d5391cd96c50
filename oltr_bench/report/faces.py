"""Face identification in reports (SPEC.md §6): one table per dataset and protocol of the
``face_results.json`` files found, and the CMC curves as an inline SVG for the site (no file, no
script, no external resource: the site stays offline).

Rows are ``reproduced`` (computed by this tool from a run's embeddings) and never ``verified``:
no canonical MegaFace or held-out face split is shipped to verify them against. The published
MS1M-LT values stay leaderboard entries (their metric could not be determined; see the entries'
notes), shown in the MS1M-LT tables as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Sequence

from oltr_bench.config.schema import UNRECORDED
from oltr_bench.protocols import FACE_GROUPS

TAR_KEY = "1e-03"
COLUMNS = (("rank1", "Rank-1"), *((f"rank1_{g}", g.capitalize()) for g in FACE_GROUPS))
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass
class FaceRow:
    name: str
    dataset: str
    protocol: str
    method: str | None
    embedding: str | None
    distractors: int
    metrics: dict[str, Any]
    source: str
    path: str
    profile: str = UNRECORDED  # the run's profile (standard | faithful | fast), from collect's ``_profile``

    @property
    def cmc(self) -> list[float | None]:
        return list(self.metrics.get("cmc") or [])

    def tar(self, far: str = TAR_KEY) -> float | None:
        return (self.metrics.get("tar_at_far") or {}).get(far)


def face_rows(results: Sequence[dict[str, Any]]) -> list[FaceRow]:
    rows = []
    for r in results:
        prov = r.get("provenance") or {}
        meta = prov.get("meta") or {}
        run = meta.get("run_id") or Path(str(r.get("_path", ""))).parent.name
        method = r.get("method")
        rows.append(FaceRow(f"{method or 'unnamed'} ({run})" if run else str(method), str(r["dataset"]), str(r.get("protocol") or "faces"),
                            method, prov.get("embedding"), int(r["distractors"]), r["metrics"], "reproduced",
                            str(r.get("_path", "")), str(r.get("_profile") or UNRECORDED)))
    rows.sort(key=lambda row: (row.dataset, row.protocol, -(row.metrics.get("rank1") or -1.0), row.name))
    return rows


def tables(rows: Sequence[FaceRow]) -> list[tuple[str, str, list[FaceRow]]]:
    """``(dataset, protocol, rows)`` groups, in order."""
    out: dict[tuple[str, str], list[FaceRow]] = {}
    for row in rows:
        out.setdefault((row.dataset, row.protocol), []).append(row)
    return [(d, p, rs) for (d, p), rs in out.items()]


def _num(value: Any, percent: bool) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def markdown(rows: Sequence[FaceRow], percent: bool = False) -> str:
    """Markdown tables: rank-1 overall and per shot group, CMC@5, CMC@10, TAR@FAR=1e-3."""
    parts = []
    for dataset, protocol, group in tables(rows):
        head = ["Name", "Profile", "Embedding", "Distractors", *(label for _, label in COLUMNS), "CMC@5", "CMC@10", f"TAR@FAR={TAR_KEY}", "Source"]
        lines = [f"### {dataset} — face identification ({protocol}; SPEC.md §6)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in group:
            cmc = r.cmc + [None] * (10 - len(r.cmc))
            cells = [r.name, r.profile, r.embedding or "–", f"{r.distractors:,}", *(_num(r.metrics.get(k), percent) for k, _ in COLUMNS),
                     _num(cmc[4], percent), _num(cmc[9], percent), _num(r.tar(), percent), r.source]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def cmc_svg(rows: Sequence[FaceRow], width: int = 420, height: int = 260) -> str:
    """The CMC curves (rank 1..10) of ``rows`` as one inline SVG with a legend."""
    left, right, top, bottom = 46, 12, 12, 34
    w, h = width - left - right, height - top - bottom
    values = [v for r in rows for v in r.cmc if v is not None]
    lo = min(values, default=0.0)
    lo = max(0.0, (int(lo * 10) / 10.0) if lo < 1 else 0.9)

    def x(k: int) -> float:
        return left + (k - 1) * w / 9

    def y(v: float) -> float:
        return top + h - (v - lo) / max(1.0 - lo, 1e-9) * h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="cmc-plot" role="img" viewBox="0 0 {width} {height + 16 * len(rows)}" '
           f'width="{width}" height="{height + 16 * len(rows)}"><title>CMC: identification rate at rank 1..10</title>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for i in range(6):
        v = lo + (1 - lo) * i / 5
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{100 * v:.0f}%</text>')
    for k in range(1, 11):
        out.append(f'<text x="{x(k):.1f}" y="{top + h + 14}" font-size="10" text-anchor="middle">{k}</text>')
    out.append(f'<text x="{left + w / 2:.1f}" y="{top + h + 28}" font-size="10" text-anchor="middle">rank</text>')
    for i, r in enumerate(rows):
        colour = COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in enumerate(r.cmc, 1) if v is not None)
        if pts:
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = height + 16 * i + 4
        out.append(f'<rect x="{left}" y="{ly}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + 14}" y="{ly + 9}" font-size="11">{escape(r.name)}</text>')
    out.append("</svg>")
    return "".join(out)
