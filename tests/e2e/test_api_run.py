"""oltr_bench.evaluate_model on a torchvision model over the embedded split gives what `run` and
`evaluate` give for the same model: the run's own predictions, and the same numbers."""

import json

import numpy as np
import pytest
import torch
from torchvision.models.resnet import BasicBlock, ResNet

import oltr_bench
from oltr_bench.engine.runner import run_method
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.predictions import Predictions, load_predictions


def test_a_torchvision_model_scores_as_the_run_that_trained_it(embedded_split, tmp_path, cli):
    # A --quick plain run with OLTR's ResNet-10 (torchvision's ResNet with one BasicBlock per stage).
    run = run_method("plain", embedded_split, runs_root=tmp_path / "runs", quick=True, progress=False,
                     overrides=["model.backbone=resnet10", "model.feat_dim=null"])
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=embedded_split.num_classes)
    net.load_state_dict({**{k.removeprefix("backbone.body."): v for k, v in state.items() if k.startswith("backbone.body.")},
                         "fc.weight": state["head.fc.weight"], "fc.bias": state["head.fc.bias"]})
    results = oltr_bench.evaluate_model(net, embedded_split, device="cpu", method="plain", predictions=tmp_path / "p.npz")
    # `oltr-bench evaluate` of the predictions it wrote gives the same numbers.
    cli("evaluate", "--predictions", str(tmp_path / "p.npz"), "--splits", str(embedded_split.path), "--json", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == results["metrics"]
    assert results["counts"] == {"known": 3600, "open": 720}
    # The run predicted a --quick subset of the ids: the API's logits there are the run's ...
    ours, theirs = load_predictions(tmp_path / "p.npz"), load_predictions(run / "predictions" / "test.npz")
    rows = [list(ours.ids).index(i) for i in theirs.ids]
    np.testing.assert_allclose(ours.scores[rows], theirs.scores, rtol=0, atol=1e-4)
    # ... and score as the run's results.json says.
    subset = Predictions(ids=theirs.ids, scores=ours.scores[rows], scores_are_probs=False, split_fingerprint=ours.split_fingerprint)
    recorded = json.loads((run / "results.json").read_text())["metrics"]
    assert evaluate(subset, embedded_split, partial=True)["metrics"] == pytest.approx(recorded, abs=1e-6, nan_ok=True)
