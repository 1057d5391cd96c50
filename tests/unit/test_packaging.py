"""Packaging: every Python package folder is listed in setup.cfg, and the data folders ship."""

import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = cfg["options"]["packages"].split()
    mapping = dict(line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines())
    return packages, mapping


def test_every_package_folder_is_declared():
    packages, mapping = declared()
    reverse = {folder: pkg for pkg, folder in mapping.items()}
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in ("tests", "build", ".venv") or any(p.startswith(".") for p in rel.parts):
            continue
        top = rel.parts[0]
        prefix = reverse.get(top, top)
        found.add(".".join([prefix, *rel.parts[1:]]))
    assert found == set(packages)


def test_data_folders_map_into_the_namespace():
    _, mapping = declared()
    assert mapping == {
        "oltr_bench.baselines": "baselines",
        "oltr_bench.splits_data": "splits",
        "oltr_bench.leaderboard_data": "leaderboard",
    }


@pytest.mark.slow
def test_a_plain_install_carries_the_data(tmp_path):
    """``pip install .`` (not editable) ships configs, split fingerprints, entries and site assets."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # Build from a copy: setuptools leaves build/ and *.egg-info next to the sources.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "oltr_work", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("oltr_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "oltr_bench/baselines/configs/imagenet_lt/_base.yaml",
        "oltr_bench/baselines/configs/imagenet_lt/dme.yaml",
        "oltr_bench/baselines/dme.py",
        "oltr_bench/splits_data/official_lists.json",
        "oltr_bench/splits_data/imagenet_lt_canonical.json",
        "oltr_bench/splits_data/imagenet_wnids.txt",
        "oltr_bench/leaderboard_data/imagenet_lt/oltr2019-dme.json",
        "oltr_bench/report/ci/verify-leaderboard.yml",
    }
    assert shipped <= names, shipped - names
    assert any(n.startswith("oltr_bench/report/templates/") for n in names)
    assert any(n.startswith("oltr_bench/report/static/") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "baselines/", "splits/", "leaderboard/")) for n in names)
