"""Result tables: one per dataset x protocol, in Markdown (more formats in later versions)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

COLUMNS = (
    ("method", "Method"),
    ("many", "Many"),
    ("medium", "Medium"),
    ("few", "Few"),
    ("top1", "Top-1"),
    ("open_f1", "Open F"),
)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def group_rows(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str, Any], list[dict[str, Any]]]:
    tables: dict[tuple[str, str, Any], list[dict[str, Any]]] = defaultdict(list)
    for res in results:
        tables[(res["dataset"], res["protocol"], res.get("open_threshold"))].append(res)
    return dict(sorted(tables.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))))


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """Markdown tables of closed-set many/medium/few/top-1 and open-set F, one per dataset x protocol."""
    out = []
    for (dataset, protocol, threshold), rows in group_rows(results).items():
        thr = "method's own rejection" if threshold is None else f"τ = {threshold:g}"
        out.append(f"### {dataset} — protocol `{protocol}`, open threshold {thr}\n")
        out.append("| " + " | ".join(title for _, title in COLUMNS) + " | Run |")
        out.append("|" + "---|" * (len(COLUMNS) + 1))
        for res in sorted(rows, key=lambda r: r.get("method") or ""):
            m = res["metrics"]
            name = (res.get("method") or "?") + (" (quick)" if res.get("partial") else "")
            cells = [name] + [fmt(m.get(key)) for key, _ in COLUMNS[1:]]
            out.append("| " + " | ".join(cells) + f" | {res.get('provenance', {}).get('run_dir', res['_path'])} |")
        out.append("")
    return "\n".join(out)
