"""Checkpoints are read with weights_only: a file from someone else cannot run code (issue 12, point 1)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from oltr_bench import formats
from oltr_bench.engine import checkpoint
from oltr_bench.engine.runner import run_method
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS
from tests.tiny_data import TINY, make_tiny_split


class Payload:
    """Unpickling this creates ``marker``: the stand-in for code a hostile checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def run(tiny, root: Path, method="plain", *extra, **kwargs) -> Path:
    return run_method(method, tiny, runs_root=root, overrides=[*TINY, *extra], progress=False, **kwargs)


def test_encode_decode_round_trip_keeps_numpy_state_exactly():
    rng = np.random.RandomState(3)
    state = {"numpy": rng.get_state(), "order": np.arange(7, dtype=np.int64)[::-1], "acc": {np.float64(0.5): np.float32(0.25)},
             "t": torch.arange(3), "nested": [(np.int64(4), "x", None)]}
    path = Path(__import__("tempfile").mkdtemp()) / "c.pt"
    checkpoint.save(path, {"model": {}, **state})
    loaded = torch.load(path, weights_only=True)  # what a reader that knows nothing of us can do
    assert loaded["format"] == formats.CHECKPOINT
    back = checkpoint.load(path)
    name, key, pos, has_gauss, cached = back["numpy"]
    assert name == "MT19937" and key.dtype == np.uint32 and np.array_equal(key, state["numpy"][1])
    assert (pos, has_gauss, cached) == state["numpy"][2:]
    assert np.array_equal(back["order"], state["order"]) and back["order"].dtype == np.int64
    assert back["acc"] == {0.5: 0.25} and type(next(iter(back["acc"]))) is float
    assert torch.equal(back["t"], state["t"]) and back["nested"] == [(4, "x", None)]


def test_a_stage1_checkpoint_that_would_run_code_is_refused_and_never_run(tiny, tmp_path):
    stage1 = run(tiny, tmp_path / "runs", "plain", "train.epochs=1")
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "method": Payload(marker)}, stage1 / "checkpoints" / "best.pt")
    with pytest.raises(OltrError, match="--allow-unsafe-checkpoints") as err:
        run(tiny, tmp_path / "runs", "crt", "train.epochs=1", stage1=stage1)
    assert "best.pt" in str(err.value) and "run code" in str(err.value)
    assert not marker.exists()


def test_even_the_flag_never_runs_code_from_a_checkpoint(tiny, tmp_path):
    # --allow-unsafe-checkpoints admits numpy arrays (format 1), not arbitrary globals.
    stage1 = run(tiny, tmp_path / "runs", "plain", "train.epochs=1")
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "method": Payload(marker)}, stage1 / "checkpoints" / "best.pt")
    with pytest.raises(OltrError, match="other than numpy arrays") as err:
        run(tiny, tmp_path / "runs", "crt", "train.epochs=1", stage1=stage1, allow_unsafe_checkpoints=True)
    assert "best.pt" in str(err.value)
    assert not marker.exists()


def test_the_cli_refuses_it_with_exit_status_2_and_no_traceback(tiny, tmp_path, cli):
    stage1 = run(tiny, tmp_path / "runs", "plain", "train.epochs=1")
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "method": Payload(marker)}, stage1 / "checkpoints" / "best.pt")
    result = cli("run", "--method", "crt", "--splits", str(tiny.path), "--out", str(tmp_path / "runs"), "--stage1", str(stage1),
                 *[f"--set={o}" for o in TINY], "--no-progress", ok=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--allow-unsafe-checkpoints" in result.output and not marker.exists()


def _crash_at(epoch_to_fail: int):
    def on_epoch_start(self, epoch):
        if epoch == epoch_to_fail:
            raise KeyboardInterrupt("simulated crash")

    return on_epoch_start


def test_an_old_pickled_checkpoint_resumes_only_with_the_loud_flag(tiny, tmp_path, monkeypatch):
    extra = ("data.sampler=class_aware", "train.epochs=3")
    straight = run(tiny, tmp_path / "a", "plain", *extra)
    monkeypatch.setattr(METHODS.get("plain"), "on_epoch_start", _crash_at(2), raising=False)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "b", "plain", *extra)
    monkeypatch.undo()
    (crashed,) = (tmp_path / "b" / "tiny" / "plain").iterdir()
    last = crashed / "checkpoints" / "last.pt"
    old = checkpoint.load(last)
    old["format"] = "oltr-bench-checkpoint/1"
    torch.save(old, last)  # as format 1 wrote it: numpy RNG state and sampler orders pickled
    with pytest.raises(OltrError, match="--allow-unsafe-checkpoints"):
        run(tiny, tmp_path / "b", "plain", *extra, resume=True)
    assert json.loads((crashed / "manifest.json").read_text())["status"] == "failed"
    resumed = run(tiny, tmp_path / "b", "plain", *extra, resume=True, allow_unsafe_checkpoints=True)
    assert resumed == crashed
    a, b = (np.load(d / "predictions" / "test.npz") for d in (straight, resumed))
    assert np.array_equal(a["logits"], b["logits"])
