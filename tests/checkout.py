"""Which checkout the package under test comes from (the tests must test this checkout, not another installed one)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def foreign_modules(root: Path = ROOT) -> list[str]:
    """``module: imported from X, expected Y`` for each of ``oltr_bench`` and ``oltr_bench.baselines``
    that is not imported from ``root`` (the package-dir remap could take the methods from another
    editable install)."""
    import oltr_bench
    import oltr_bench.baselines

    expected = {oltr_bench: root / "oltr_bench", oltr_bench.baselines: root / "baselines"}
    problems = []
    for module, folder in expected.items():
        actual = Path(module.__file__).resolve().parent
        if actual != folder.resolve():
            problems.append(f"{module.__name__}: imported from {actual}, expected {folder}")
    return problems
