"""DistributedDataParallel on CPU (gloo): two processes equal one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from torch import nn

from oltr_bench.engine import checkpoint
from oltr_bench.method import LinearHead, Method
from oltr_bench.engine.runner import run_method
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import load_split_dir
from tests.tiny_data import TINY, make_tiny_split

# Class-aware sampling, BatchNorm, centroids from hooks and 2 epochs of 6 steps: every piece that could make ranks diverge.
EXTRA = ("data.sampler=class_aware", "train.epochs=2")


class CentroidHead(LinearHead):
    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__(feat_dim, num_classes)
        self.centroids = nn.Parameter(torch.zeros(num_classes, feat_dim))


@METHODS.register("_centroids")
class Centroids(Method):
    """Test-only, DME-like state: class centroids initialised from ctx.outputs("train"), own optimiser, fitted state."""

    def __init__(self, params, info):
        super().__init__(params, info)
        self.fitted: dict = {}

    def build_head(self):
        return CentroidHead(self.info.feat_dim, self.info.num_classes)

    def param_groups(self, model, lr):
        return [{"params": [*model.backbone.parameters(), model.head.fc.weight, model.head.fc.bias], "lr": lr["classifier"]}]

    def extra_optimizers(self, model):
        return [torch.optim.SGD([model.head.centroids], lr=0.01, momentum=0.9)]

    def on_train_start(self, ctx):
        out = ctx.outputs("train")
        for c in range(self.info.num_classes):
            model_centroid = out["features"][out["labels"] == c].mean(0)
            ctx.model.head.centroids.data[c] = model_centroid.to(ctx.model.head.centroids.device)

    def loss(self, outputs, targets, model):
        ce = nn.functional.cross_entropy(outputs["logits"], targets)
        attract = (outputs["features"] - model.head.centroids[targets]).pow(2).sum(1).mean() / 2
        loss = ce + 0.01 * attract
        return loss, {"ce": float(ce.detach())}

    def fit(self, ctx):
        val = ctx.outputs("val")
        self.fitted = {"val_rows": len(val["labels"]), "mean_max_logit": float(val["logits"].max(1).values.mean())}

    def state_dict(self):
        return dict(self.fitted)

    def load_state_dict(self, state):
        self.fitted = dict(state)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, split_path: str, runs: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from oltr_bench.engine import distributed

    dist = distributed.setup("cpu")
    try:
        run_method("_centroids", load_split_dir(split_path), runs_root=Path(runs), overrides=[*TINY, *EXTRA], progress=False,
                   dist=dist)
    finally:
        distributed.teardown(dist)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def _steps(run_dir: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "train_log.jsonl").read_text().splitlines()) if r["event"] == "step"]


def test_two_gloo_processes_match_one_process(tiny, tmp_path):
    single = run_method("_centroids", tiny, runs_root=tmp_path / "single", overrides=[*TINY, *EXTRA], progress=False)
    mp.spawn(_worker, args=(2, _free_port(), str(tiny.path), str(tmp_path / "ddp")), nprocs=2, join=True)
    (ddp,) = (tmp_path / "ddp" / "tiny" / "_centroids").iterdir()

    manifest = json.loads((ddp / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["world_size"] == 2 and manifest["distributed_backend"] == "gloo"
    assert manifest["batch_size"] == 8 and manifest["per_process_batch_size"] == 4 and manifest["sync_bn"] is True

    a, b = _steps(single), _steps(ddp)
    assert len(a) == len(b) == 12
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    wa, wb = (checkpoint.load(d / "checkpoints" / "last.pt")["model"] for d in (single, ddp))
    assert wa["head.centroids"].abs().sum() > 0  # initialised from class means, then trained
    for key in wa:
        np.testing.assert_allclose(wb[key].double().numpy(), wa[key].double().numpy(), rtol=0, atol=1e-5, err_msg=key)
    for which in ("val", "test"):
        pa, pb = (np.load(d / "predictions" / f"{which}.npz") for d in (single, ddp))
        assert np.array_equal(pa["ids"], pb["ids"])
        np.testing.assert_allclose(pb["logits"], pa["logits"], rtol=0, atol=1e-4)
    fa, fb = (checkpoint.load(d / "checkpoints" / "best.pt")["method"] for d in (single, ddp))
    assert fa["val_rows"] == fb["val_rows"] == 12 and fb["mean_max_logit"] == pytest.approx(fa["mean_max_logit"], abs=1e-5)


def test_torchrun_cli_runs_with_gloo(tiny, tmp_path):
    sets = [arg for item in TINY for arg in ("--set", item)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "oltr_bench", "run",
           "--method", "plain", "--splits", str(tiny.path), "--out", str(tmp_path), "--quick", "--no-progress", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "tiny" / "plain").iterdir()
    assert done.stdout.strip() == str(run_dir)  # printed once, by rank 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["status"] == "complete" and (run_dir / "results.json").is_file()
