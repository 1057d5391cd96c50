"""Packaging: every Python package folder is listed in setup.cfg, and the data folders ship."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
