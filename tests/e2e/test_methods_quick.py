"""Every registered method end to end: ``oltr-bench run --method M --quick`` on the embedded benchmark.

One runs folder for the module, so the stage-2 methods find the quick stage-1 run trained for the
first of them (as a user's runs folder would) instead of training it again. A quick run sees at
most ``quick.train_per_class`` = 8 training images per class, far fewer than
``info.train_counts``: this is where a method that assumed the full counts would fail.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from oltr_bench.metrics.predictions import load_predictions
from oltr_bench.registry import METHODS

BUILT_IN = sorted(n for n in METHODS.names() if METHODS.get(n).__module__.startswith("oltr_bench.baselines."))
METRICS = ("top1", "many", "medium", "few", "open_f1", "auroc", "open_accept_rate")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("quick_runs")


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_runs_quick_through_the_cli(method, embedded_split, runs, cli):
    out = cli("run", "--method", method, "--splits", str(embedded_split.path), "--out", str(runs), "--quick",
              "--no-progress").output
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == runs / "embedded" / method
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["quick"] is True
    results = json.loads((run_dir / "results.json").read_text())
    assert results["partial"] is True and results["method"] == method
    for key in METRICS:
        assert math.isfinite(results["metrics"][key]), key

    preds = load_predictions(run_dir / "predictions" / "test.npz")
    assert preds.scores.shape == (len(preds.ids), 120) and np.isfinite(preds.scores).all()
    if preds.pred is not None:
        assert ((preds.pred >= -1) & (preds.pred < 120)).all()
    if preds.known_score is not None:
        assert np.isfinite(preds.known_score).all()

    cls = METHODS.get(method)
    if cls.stage == 2:
        stage1 = Path(manifest["stage1_run"])
        assert stage1.parent == runs / "embedded" / cls.init_from
        assert json.loads((stage1 / "manifest.json").read_text())["quick"] is True
        # Reused, not retrained: the run trained for the first stage-2 method, plus the init_from method's own test run.
        assert len(list(stage1.parent.iterdir())) <= 2
    if method == "fslwf":
        from oltr_bench.engine import checkpoint

        episode = checkpoint.load(run_dir / "checkpoints" / "best.pt")["method"]["episode"]
        assert episode["episodes_per_epoch"] == 4 and episode["smallest"] <= 8 and episode["shots"] >= 1
