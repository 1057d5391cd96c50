"""Hostile trees and flaky machines: link loops, undecodable names, byte-order marks, concurrent
make-splits, builds killed half-way, and loader workers that die or stall."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oltr_bench.data import lists
from oltr_bench.engine.runner import run_method
from oltr_bench.errors import OltrError
from oltr_bench.splits.format import load_split_dir, parse_list, write_split_dir
from oltr_bench.utils.io import OWNER, DirectoryTaken, atomic_directory, remove_stale_partials
from tests.checkout import ROOT
from tests.hostile import refused
from tests.splits_trees import touch
from tests.tiny_data import TINY, make_tiny_split


def tree(root: Path, classes: int = 5, images: int = 80) -> Path:
    for c in range(classes):
        for j in range(images):
            touch(root / f"c{c}" / f"{j:03d}.jpg")
    return root


def make_folder_split(cli, root: Path, out: Path, *extra: str, ok: bool = True):
    return cli("make-splits", "--dataset", "folder", "--root", str(root), "--out", str(out), "--no-progress",
               "--val-per-class", "5", "--test-per-class", "10", *extra, ok=ok)


# -- trees -------------------------------------------------------------------------------------------

def test_a_symbolic_link_loop_is_skipped(cli, tmp_path):
    root = tree(tmp_path / "loop")
    os.symlink(root / "c0", root / "c0" / "again")  # c0/again/again/... forever
    result = make_folder_split(cli, root, tmp_path / "out")
    assert "a symbolic-link loop" in result.stderr and "c0/again" in result.stderr
    split = load_split_dir(Path(result.stdout.strip().splitlines()[-1]))
    paths = [p for s in ("train", "val", "test", "open") if split.has(s) for p in split.ids(s)]
    assert not any("again" in p for p in paths)  # nothing listed twice through the link


def test_a_file_name_that_is_not_utf8_is_named_with_the_fix(cli, tmp_path):
    root = tree(tmp_path / "latin")
    bad = os.fsencode(root / "c1") + b"/caf\xe9.jpg"
    with open(bad, "wb"):
        pass
    message = refused(make_folder_split(cli, root, tmp_path / "out", ok=False), "caf\\xe9.jpg", "is not valid UTF-8", "convmv")
    assert "Traceback" not in message and not (tmp_path / "out" / "latin").exists()


def test_a_byte_order_mark_at_the_start_of_a_list_is_handled(tmp_path):
    assert parse_list("\ufeffa/1.jpg 0\nb/2.jpg 1\n", "list") == [("a/1.jpg", 0), ("b/2.jpg", 1)]
    counts = tmp_path / "counts.txt"
    counts.write_bytes("\ufeff9 7 5 4 3\n".encode())
    from oltr_bench.splits.profile import read_counts

    assert read_counts(str(counts)).counts == (9, 7, 5, 4, 3)


# -- concurrent and killed make-splits -----------------------------------------------------------------

def test_another_writer_wins_the_folder_and_this_one_keeps_nothing(tmp_path):
    final = tmp_path / "split"
    with pytest.raises(DirectoryTaken, match="was created by another process while this one was building it"):
        with atomic_directory(final) as tmp:
            (tmp / "mine").write_text("x")
            final.mkdir()  # the other process finished first
            (final / "theirs").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["split"]  # no .partial left


def test_the_loser_of_a_race_for_the_same_split_uses_the_winners(tmp_path):
    lists_ = {"train": [("a.png", 0)], "val": [("b.png", 0)], "test": [("c.png", 0)]}
    common = dict(dataset="toy", classes=["x"], roots={s: "." for s in lists_}, source={"kind": "test"})

    def racing(other_lists):
        def populate(tmp):  # meanwhile, another make-splits writes the folder
            write_split_dir(tmp_path / "toy", lists=other_lists, **common)
        return write_split_dir(tmp_path / "toy", lists=lists_, populate=populate, **common)

    same = racing(lists_)
    assert same.fingerprint == load_split_dir(tmp_path / "toy").fingerprint
    import shutil

    shutil.rmtree(tmp_path / "toy")
    with pytest.raises(OltrError, match="its lists differ from these"):
        racing({**lists_, "train": [("z.png", 0)]})


@pytest.mark.slow
def test_two_make_splits_into_one_folder_give_one_complete_split(tmp_path):
    root = tree(tmp_path / "t")
    args = [sys.executable, "-m", "oltr_bench", "make-splits", "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "out"),
            "--no-progress", "--val-per-class", "5", "--test-per-class", "10"]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code in (0, 2) for code, _ in outcomes) and any(code == 0 for code, _ in outcomes), outcomes
    for code, err in outcomes:
        assert "Traceback" not in err
        if code == 2:
            assert "already exists" in err or "created by another process" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t"]
    load_split_dir(tmp_path / "out" / "t")


def test_partial_folders_of_dead_builders_are_removed_and_others_kept(tmp_path):
    final = tmp_path / "split"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partials = {name: tmp_path / f".split.{name}.partial" for name in ("dead", "alive", "elsewhere", "old")}
    owners = {"dead": {"pid": int(dead.stdout), "host": os.uname().nodename},
              "alive": {"pid": os.getpid(), "host": os.uname().nodename},
              "elsewhere": {"pid": int(dead.stdout), "host": "another-host"}}
    for name, path in partials.items():
        path.mkdir()
        if name in owners:
            (path / OWNER).write_text(json.dumps(owners[name]))
    assert remove_stale_partials(final) == [partials["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for n, p in partials.items() if n != "dead")


# -- loader workers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def _die(self, item):
    os._exit(7)


def _stall(self, item):
    time.sleep(600)


@pytest.mark.slow
@pytest.mark.parametrize("behaviour, found", [(_die, "exited unexpectedly"), (_stall, "DataLoader timed out after 2 seconds")])
def test_a_worker_that_dies_or_stalls_ends_the_run_in_bounded_time(tiny, tmp_path, monkeypatch, behaviour, found):
    monkeypatch.setattr(lists.ListDataset, "__getitem__", behaviour)  # workers are forked: they inherit it
    monkeypatch.setattr(lists, "LOADER_TIMEOUT", 2)
    start = time.monotonic()
    with pytest.raises(OltrError, match=f"a data-loading worker failed .*{found}.*set data.workers=0"):
        run_method("plain", tiny, runs_root=tmp_path, overrides=[*TINY, "data.workers=2"], quick=True, progress=False)
    assert time.monotonic() - start < 120
    (run,) = (tmp_path / "tiny" / "plain").iterdir()
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
