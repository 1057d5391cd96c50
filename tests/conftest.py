"""Shared fixtures (the embedded split, built once per session, and a CLI runner), the ``slow``
marker for everything under ``tests/e2e`` and ``tests/attacks``, and the check that the package under test is this checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from oltr_bench.registry import DATASETS
from oltr_bench.splits.format import load_split_dir
from tests.checkout import ROOT, foreign_modules

SLOW_FOLDERS = (ROOT / "tests" / "e2e", ROOT / "tests" / "attacks")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains models, starts processes or a browser, or tries hostile inputs (tests/e2e, tests/attacks); "
                                       "pytest -m 'not slow' leaves them out")
    problems = foreign_modules()
    if problems:
        pytest.exit("the package under test is not this checkout (" + "; ".join(problems) + "); install it with "
                    f"'pip install -e {ROOT}' in the environment that runs the tests", returncode=4)


def pytest_collection_modifyitems(config, items):
    for item in items:
        # Everything end to end and hostile, and whatever needs the rendered embedded benchmark (about 15 s to build).
        parents = Path(str(item.fspath)).resolve().parents
        if any(folder in parents for folder in SLOW_FOLDERS) or "embedded_split" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def own_work_folder(tmp_path, monkeypatch):
    """Every test gets its own work folder ($OLTR_BENCH_HOME): no test reads or writes the
    user's runs, splits or leaderboard entries (./oltr_work, or $OLTR_BENCH_HOME as set)."""
    monkeypatch.setenv("OLTR_BENCH_HOME", str(tmp_path / "work"))


@pytest.fixture(scope="session")
def embedded_split(tmp_path_factory):
    """The embedded benchmark with seed 0, built once (about 15 s on 2 cores)."""
    root = tmp_path_factory.mktemp("splits")
    split = DATASETS.get("embedded")().make_splits(root, seed=0, overwrite=False, progress=False)
    return load_split_dir(split.path)


@pytest.fixture
def cli():
    """Invoke ``oltr-bench`` in the test's own work folder (``tmp_path / "work"``)."""
    from oltr_bench.cli import main

    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def write_tree(root: Path, counts: dict[str, int], ext: str = ".png") -> None:
    """A class-folder tree of tiny valid images (``counts[class]`` images each)."""
    from PIL import Image

    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i % 256, len(cls) * 20 % 256, 0)).save(root / cls / f"img{i:04d}{ext}")
