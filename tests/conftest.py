"""Shared fixtures: the embedded split (built once per session) and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from oltr_bench.registry import DATASETS
from oltr_bench.splits.format import load_split_dir


@pytest.fixture(scope="session")
def embedded_split(tmp_path_factory):
    """The embedded benchmark with seed 0, built once (about 15 s on 2 cores)."""
    root = tmp_path_factory.mktemp("splits")
    split = DATASETS.get("embedded")().make_splits(root, seed=0, overwrite=False, progress=False)
    return load_split_dir(split.path)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Invoke ``oltr-bench`` in a fresh work folder; returns (runner, invoke)."""
    from oltr_bench.cli import main

    monkeypatch.setenv("OLTR_BENCH_HOME", str(tmp_path / "work"))
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
