"""The engine on CPU: run directory, protocol mechanics, lr scaling, exact resume, stage-1 lookup, feature cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from oltr_bench.engine import checkpoint, optim
from oltr_bench.engine.data import RunData
from oltr_bench.engine.engine import Engine
from oltr_bench.method import Method
from oltr_bench.models.backbones import PRETRAINED_BY_PROTOCOL
from oltr_bench.engine.runner import run_method, stage1_overrides
from oltr_bench.config import RunConfig
from oltr_bench.errors import OltrError
from oltr_bench.metrics.predictions import load_predictions
from oltr_bench.registry import METHODS
from tests.tiny_data import TINY, TRAIN_COUNTS, make_tiny_split


@METHODS.register("_probe")
class Probe(Method):
    """Test-only stage 2: a new linear head on the frozen plain backbone, class-aware (like cRT)."""

    stage = 2
    init_from = "plain"
    frozen_backbone = True
    sampler = "class_aware"

    def adapt_init_state(self, state):
        return {k: v for k, v in state.items() if not k.startswith("head.")}


@METHODS.register("_posthoc")
class Posthoc(Method):
    """Test-only post-hoc stage 2: the plain model as is, with fit() recording what it saw."""

    stage = 2
    init_from = "plain"
    frozen_backbone = True
    trains = False

    def __init__(self, params, info):
        super().__init__(params, info)
        self.seen: dict[str, list] = {}

    def fit(self, ctx):
        val = ctx.outputs("val")
        self.seen = {"val_index": val["index"].tolist(), "val_labels": val["labels"].tolist()}

    def state_dict(self):
        return dict(self.seen)

    def load_state_dict(self, state):
        self.seen = dict(state)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def run(tiny, root: Path, method="plain", *extra, **kwargs) -> Path:
    return run_method(method, tiny, runs_root=root, overrides=[*TINY, *extra], progress=False, **kwargs)


def cached_rows(cache_path: str, which: str) -> np.ndarray:
    """The rows of one split in a feature cache, through the ``<split>.json`` that names their file."""
    meta = json.loads((Path(cache_path) / f"{which}.json").read_text())
    return np.load(Path(cache_path) / meta["data"])


def records(run_dir: Path, event: str) -> list[dict]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def test_run_directory_manifest_and_logs(tiny, tmp_path):
    run_dir = run(tiny, tmp_path, "plain", "data.sampler=class_aware")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["world_size"] == 1 and manifest["device"]["type"] == "cpu"
    assert manifest["device"]["cpu_threads"] == torch.get_num_threads()  # CPU numbers depend on it (suite --jobs)
    assert manifest["precision"] == "fp32" and manifest["sampler"] == "class_aware"
    assert manifest["seeds"] == {"train": 0, "split": 0}
    assert set(manifest["phase_seconds"]) >= {"init", "train", "validate", "fit", "predict", "evaluate"}
    # glyphnet [8, 16] + linear head on the 16-d pooled map: parameters and MACs counted by hand.
    params = (3 * 9 * 8 + 2 * 8) + (8 * 9 * 16 + 2 * 16) + (16 * 6 + 6)
    macs = 16 * 16 * 8 * 27 + 8 * 8 * 16 * 72 + 16 * 6
    assert manifest["model"]["parameters"] == params and manifest["model"]["macs_per_image"] == macs
    # An epoch is floor(N_train / batch) steps even with the class-aware sampler.
    steps = sum(TRAIN_COUNTS) // 8
    epochs = records(run_dir, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and all(e["steps"] == steps for e in epochs)
    assert len(records(run_dir, "step")) == 3 * steps
    # StepLR(2, 0.1) stepped once per epoch, after the epoch.
    assert [e["lr"][0] for e in epochs] == pytest.approx([0.05, 0.05, 0.005])
    # Model selection on val only: best.pt is the epoch with the best val top-1.
    best = max(epochs, key=lambda e: e["val_top1"])
    assert checkpoint.load(run_dir / "checkpoints" / "best.pt")["epoch"] == best["epoch"]
    assert manifest["training"]["best_epoch"] == best["epoch"]
    preds = load_predictions(run_dir / "predictions" / "test.npz")
    assert len(preds.ids) == 6 * 3 + 6 and preds.scores.shape == (24, 6)
    assert json.loads((run_dir / "results.json").read_text())["partial"] is False


def test_lr_scales_linearly_with_the_global_batch(tiny, tmp_path):
    run_dir = run(tiny, tmp_path, "plain", "train.batch_size=16", "train.epochs=1")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["batch_size"] == 16 and manifest["reference_batch_size"] == 8
    assert manifest["lr_scale_factor"] == 2.0 and manifest["effective_lr"] == {"features": 0.1, "classifier": 0.1}
    assert manifest["configured_lr"] == {"features": 0.05, "classifier": 0.05} and manifest["warnings"] == []
    assert records(run_dir, "epoch")[0]["lr"] == [0.1, 0.1]

    fixed = run(tiny, tmp_path, "plain", "train.batch_size=16", "train.epochs=1", "train.lr_scaling=false")
    manifest = json.loads((fixed / "manifest.json").read_text())
    assert manifest["lr_scale_factor"] == 1.0 and manifest["effective_lr"] == {"features": 0.05, "classifier": 0.05}
    assert "lr scaling is off" in manifest["warnings"][0]


def _crash_on_step(step_to_fail: int):
    """A ``Method.loss`` that raises on its ``step_to_fail``-th call (1-based), as an interrupted run would."""
    calls = []

    def loss(self, outputs, targets, model):
        calls.append(1)
        if len(calls) == step_to_fail:
            raise KeyboardInterrupt("simulated crash")
        return Method.loss(self, outputs, targets, model)

    return loss


def _crash_at(epoch_to_fail: int):
    def on_epoch_start(self, epoch):
        if epoch == epoch_to_fail:
            raise KeyboardInterrupt("simulated crash")

    return on_epoch_start


COSINE_AT_START = ("train.scheduler.name=cosine", "train.scheduler.step_at=epoch_start")


def test_cosine_schedule_stepped_at_epoch_start_as_classifier_balancing(tiny, tmp_path):
    run_dir = run(tiny, tmp_path, "plain", "train.epochs=4", *COSINE_AT_START)
    # run_networks.py steps CosineAnnealingLR(T_max=4) before each epoch: epoch e trains at lr(e).
    expected = [0.05 * (1 + np.cos(np.pi * e / 4)) / 2 for e in (1, 2, 3, 4)]
    assert [e["lr"][0] for e in records(run_dir, "epoch")] == pytest.approx(expected, abs=1e-15)
    with pytest.raises(OltrError, match=r"train.scheduler.name 'linear' is not known; expected one of: step, cosine"):
        run(tiny, tmp_path, "plain", "train.scheduler.name=linear")


@pytest.mark.parametrize("schedule", [(), COSINE_AT_START], ids=["step", "cosine-at-start"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tiny, tmp_path, monkeypatch, schedule):
    extra = ("data.sampler=class_aware", "train.epochs=4", *schedule)
    straight = run(tiny, tmp_path / "a", "plain", *extra)

    plain_cls = METHODS.get("plain")
    monkeypatch.setattr(plain_cls, "on_epoch_start", _crash_at(2), raising=False)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "b", "plain", *extra)
    (crashed,) = (tmp_path / "b" / "tiny" / "plain").iterdir()
    manifest = json.loads((crashed / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "simulated crash" in manifest["error"]
    assert not (crashed / "results.json").exists()  # a crashed run never looks complete
    assert checkpoint.load(crashed / "checkpoints" / "last.pt")["epoch"] == 2
    monkeypatch.undo()

    resumed = run(tiny, tmp_path / "b", "plain", *extra, resume=True)
    assert resumed == crashed
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed"][0]["previous_status"] == "failed"
    for name in ("best.pt", "last.pt"):
        a, b = (checkpoint.load(d / "checkpoints" / name)["model"] for d in (straight, resumed))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for which in ("val", "test"):
        a, b = (np.load(d / "predictions" / f"{which}.npz") for d in (straight, resumed))
        assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["ids"], b["ids"])
    assert [r["loss"] for r in records(straight, "step")] == [r["loss"] for r in records(resumed, "step")]
    # --resume on a complete run does not train again.
    assert run(tiny, tmp_path / "b", "plain", *extra, resume=True) == resumed


def test_resume_of_a_run_that_crashed_in_its_first_epoch_starts_over(tiny, tmp_path, monkeypatch):
    straight = run(tiny, tmp_path / "a", "plain", "train.epochs=2")
    plain_cls = METHODS.get("plain")
    monkeypatch.setattr(plain_cls, "loss", _crash_on_step(3), raising=False)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "b", "plain", "train.epochs=2")
    monkeypatch.undo()
    (crashed,) = (tmp_path / "b" / "tiny" / "plain").iterdir()
    assert len(records(crashed, "step")) == 2 and not (crashed / "checkpoints" / "last.pt").exists()
    resumed = run(tiny, tmp_path / "b", "plain", "train.epochs=2", resume=True)
    assert resumed == crashed
    assert [r["loss"] for r in records(resumed, "step")] == [r["loss"] for r in records(straight, "step")]
    a, b = (checkpoint.load(d / "checkpoints" / "last.pt")["model"] for d in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_fails_the_run_cleanly(tiny, tmp_path):
    with pytest.raises(OltrError, match="loss became non-finite"):
        run(tiny, tmp_path, "plain", "train.lr.features=1e30", "train.lr.classifier=1e30")
    (run_dir,) = (tmp_path / "tiny" / "plain").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"
    assert not (run_dir / "results.json").exists()


def test_stage2_finds_or_trains_its_stage1_and_caches_features(tiny, tmp_path):
    # The stage-2 config adds an fc_add (as DME's does); the stage-1 run is still found and reused.
    probe = run(tiny, tmp_path, "_probe", "model.feat_dim=12", quick=True)
    (stage1,) = (tmp_path / "tiny" / "plain").iterdir()
    manifest = json.loads((probe / "manifest.json").read_text())
    assert manifest["stage1_run"] == str(stage1.resolve())
    stage1_cfg = yaml.safe_load((stage1 / "config.yaml").read_text())
    assert stage1_cfg["model"]["feat_dim"] is None and stage1_cfg["model"]["widths"] == [8, 16]
    assert stage1_cfg["train"]["epochs"] == 30  # the stage-1 schedule is plain's own, not the overrides'
    stage1_state = checkpoint.load(stage1 / "checkpoints" / "best.pt")["model"]
    probe_state = checkpoint.load(probe / "checkpoints" / "best.pt")["model"]
    body = [k for k in stage1_state if k.startswith("backbone.body.")]
    assert body and all(torch.equal(stage1_state[k], probe_state[k]) for k in body)  # frozen and copied
    cache = manifest["feature_cache"]
    assert cache["used"] and cache["level"] == "features" and "eval mode" in cache["batchnorm"]
    assert cache["reused"] == {"train": False, "val": False, "test": False, "open": False}
    assert Path(cache["path"]).parent.parent == stage1.resolve()

    again = run(tiny, tmp_path, "_probe", "model.feat_dim=12", quick=True)
    assert len(list((tmp_path / "tiny" / "plain").iterdir())) == 1  # no second stage-1 run
    assert json.loads((again / "manifest.json").read_text())["feature_cache"]["reused"]["train"] is True
    for which in ("val", "test"):  # same stage 1, same seed: the same head
        a, b = (np.load(d / "predictions" / f"{which}.npz") for d in (probe, again))
        assert np.array_equal(a["logits"], b["logits"])

    # Another seed, or a stage-1 run with another schedule, is not the matching stage 1.
    run(tiny, tmp_path, "plain", "train.epochs=2", quick=True)
    run(tiny, tmp_path, "_probe", "seed=1", quick=True)
    assert len(list((tmp_path / "tiny" / "plain").iterdir())) == 3


def test_post_hoc_outputs_from_the_cache_equal_the_model_outputs(tiny, tmp_path):
    cached = run(tiny, tmp_path, "_posthoc", quick=True)
    direct = run(tiny, tmp_path, "_posthoc", "train.feature_cache=false", quick=True)
    assert json.loads((direct / "manifest.json").read_text())["feature_cache"]["used"] is False
    (stage1,) = (tmp_path / "tiny" / "plain").iterdir()
    for which in ("val", "test"):
        a, b, c = (np.load(d / "predictions" / f"{which}.npz") for d in (cached, direct, stage1))
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a["logits"], c["logits"], rtol=1e-5, atol=1e-5)
    seen = checkpoint.load(cached / "checkpoints" / "best.pt")["method"]
    assert seen["val_index"] == list(range(12)) and seen["val_labels"] == [c for c in range(6) for _ in range(2)]


def test_stage1_overrides_keep_stage2_only_keys_out():
    shared = stage1_overrides(["seed=3", "model.feat_dim=512", "model.backbone=resnet10", "data.sampler=class_aware",
                               "data.workers=4", "train.lr.features=0.01", "train.precision=bf16", "params.weight=1"])
    assert shared == ["seed=3", "model.backbone=resnet10", "data.workers=4", "train.precision=bf16"]
    assert stage1_overrides(["train.batch_size=256", "train.epochs=2"]) == ["train.batch_size=256"]


def test_stage1_dir_given_by_hand_is_validated(tiny, tmp_path):
    with pytest.raises(OltrError, match="is not a run directory"):
        run(tiny, tmp_path, "_probe", stage1=tmp_path)


def test_bad_batch_and_tiny_lists_fail_with_a_clear_message(tiny, tmp_path):
    with pytest.raises(OltrError, match="fewer than one batch of 128"):
        run(tiny, tmp_path, "plain", "train.batch_size=128")


def test_feature_cache_map_level_when_only_fc_add_trains(tiny, tmp_path):
    @METHODS.register("_fcadd")
    class FcAdd(Method):
        """Test-only: trains fc_add and the head on a frozen body (OLTR Places-LT stage-2 style)."""

        stage, init_from, frozen_backbone, sampler = 2, "plain", True, "class_aware"

        def param_groups(self, model, lr):
            return [{"params": list(model.backbone.fc_add.parameters()) + list(model.head.parameters()), "lr": lr["classifier"]}]

        def adapt_init_state(self, state):
            return {k: v for k, v in state.items() if not k.startswith("head.")}  # a new head on the new fc_add

    try:
        run_dir = run(tiny, tmp_path, "_fcadd", "model.feat_dim=12", quick=True)
        cache = json.loads((run_dir / "manifest.json").read_text())["feature_cache"]
        assert cache["level"] == "map"
        quick_train = sum(min(n, 8) for n in TRAIN_COUNTS)
        assert cached_rows(cache["path"], "train").shape == (quick_train, 16, 8, 8)
    finally:
        METHODS._items.pop("_fcadd")


def test_cli_flags_reach_the_engine(tiny, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from oltr_bench.cli import main

    monkeypatch.setenv("OLTR_BENCH_HOME", str(tmp_path))
    sets = [arg for item in (*TINY, "train.reference_batch_size=4") for arg in ("--set", item)]
    result = CliRunner().invoke(main, ["run", "--method", "plain", "--splits", str(tiny.path), "--quick", "--no-progress",
                                       "--no-lr-scaling", *sets], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["lr_scaling"] is False and manifest["lr_scale_factor"] == 1.0
    assert "warning: learning rates kept" in result.output

    bad = CliRunner().invoke(main, ["run", "--method", "plain", "--splits", str(tiny.path), "--quick", "--device", "cuda", *sets])
    if not torch.cuda.is_available():
        assert bad.exit_code == 2 and "torch sees no CUDA GPU" in bad.output


def test_tensorboard_logging_or_a_clear_error(tiny, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(OltrError, match="needs the tensorboard package: pip install tensorboard"):
            run(tiny, tmp_path, "plain", "log.tensorboard=true", quick=True)
    else:
        run_dir = run(tiny, tmp_path, "plain", "log.tensorboard=true", quick=True)
        assert any((run_dir / "tensorboard").iterdir())


@pytest.mark.parametrize("dataset, n_train, steps", [("imagenet_lt", 115_846, 905), ("places_lt", 62_500, 488)])
def test_official_stage1_mechanics(tmp_path, dataset, n_train, steps):
    """What `run --method plain --dataset imagenet_lt` trains (research/oltr.md §3.2-3.3), without images."""
    from oltr_bench.config import resolve_config
    from oltr_bench.splits.format import SplitDir

    classes = 1000 if dataset == "imagenet_lt" else 365
    train = [(f"x/{i}.jpg", i % classes) for i in range(n_train)]
    split = SplitDir(tmp_path, {"dataset": dataset, "num_classes": classes, "train_counts": [n_train // classes] * classes,
                                "fingerprint": "f", "files": {}, "roots": {}}, {"train": train})
    cfg = resolve_config("plain", dataset, {})
    engine = Engine(cfg, split, tmp_path, progress=False)
    assert optim.plan(cfg, engine.data.num_samples("train"), 1, quick=False) == \
        {"epochs": 30, "steps_per_epoch": steps, "batch_size": 128, "per_process_batch": 128}
    assert engine.sampler_kind == "instance" and cfg.data.pipeline == "parity"
    assert engine.amp_dtype is None  # fp32 on the CPU; bf16 autocast on CUDA
    lr, factor = optim.effective_lr(cfg.train, 128)
    assert factor == 1.0 and lr == ({"features": 0.1, "classifier": 0.1} if dataset == "imagenet_lt" else {"features": 0.001, "classifier": 0.1})
    (sgd,), (sched,) = optim.optimizers(engine.method, engine.model, cfg.train, lr, factor)
    assert [g["lr"] for g in sgd.param_groups] == [lr["features"], lr["classifier"]]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 5e-4 for g in sgd.param_groups)
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and (sched.step_size, sched.gamma, sched.last_epoch) == (10, 0.1, 0)
    backbone = engine.model.backbone
    assert backbone.feat_dim == 512 and (backbone.fc_add is None) == (dataset == "imagenet_lt")  # Places: 2048 -> 512 fc_add


@METHODS.register("_extra_opt")
class ExtraOpt(Method):
    """Test-only: a parameter with its own optimiser (like DME's centroids)."""

    def build_head(self):
        head = super().build_head()
        head.memory = torch.nn.Parameter(torch.zeros(3))
        return head

    def param_groups(self, model, lr):
        return [{"params": [p for n, p in model.named_parameters() if n != "head.memory"], "lr": lr["classifier"]}]

    def extra_optimizers(self, model):
        return [torch.optim.SGD([model.head.memory], lr=0.01)]

    def loss(self, outputs, targets, model):
        loss, parts = super().loss(outputs, targets, model)
        return loss + model.head.memory.sum() * 0.0, parts


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_model_selection_reads_the_validation_split_and_test_only_at_the_end(tiny, tmp_path, monkeypatch, quick):
    from oltr_bench.splits.format import SplitDir

    events = []
    original_dataset, original_predict, original_entries = RunData.dataset, Engine.predict, SplitDir.entries

    def dataset(self, which, train):
        events.append(which)
        return original_dataset(self, which, train)

    def predict(self, which):
        events.append(f"predict:{which}")
        return original_predict(self, which)

    def entries(self, which):
        events.append(f"list:{which}")
        return original_entries(self, which)

    monkeypatch.setattr(RunData, "dataset", dataset)
    monkeypatch.setattr(Engine, "predict", predict)
    monkeypatch.setattr(SplitDir, "entries", entries)
    run_dir = run(tiny, tmp_path, "plain", "train.epochs=3", quick=quick)
    first_predict = events.index("predict:val")
    # Training and model selection (and --quick's choice of subsets) read the train and val lists only.
    assert set(events[:first_predict]) == {"train", "val", "list:train", "list:val"}
    assert {"test", "open", "list:test", "list:open"} <= set(events[first_predict:])
    best = json.loads((run_dir / "manifest.json").read_text())["training"]["best_val_top1"]
    preds = load_predictions(run_dir / "predictions" / "val.npz")
    labels = dict(tiny.entries("val"))
    accuracy = np.mean([int(p.argmax()) == labels[i] for i, p in zip(preds.ids, preds.scores)])
    assert best == accuracy  # the kept epoch's val top-1 is the final model's val accuracy, exactly


def test_extra_optimisers_get_the_linear_lr_scale(tiny, tmp_path):
    run_dir = run(tiny, tmp_path, "_extra_opt", "train.batch_size=16", "train.reference_batch_size=8", "train.epochs=1")
    optimizers = checkpoint.load(run_dir / "checkpoints" / "last.pt")["optimizers"]
    assert [g["lr"] for g in optimizers[1]["param_groups"]] == [pytest.approx(0.02)]
    assert optimizers[0]["param_groups"][0]["lr"] == pytest.approx(0.1)


def test_augmentation_seeds_change_from_epoch_to_epoch():
    from oltr_bench.data.samplers import epoch_batches, make_stream

    stream = make_stream("instance", [0, 1] * 8, 4, seed=0)
    first, second = (epoch_batches(stream, 2, 8, seed=0) for _ in range(2))
    seeds = lambda batches: [s for batch in batches for _, s in batch]  # noqa: E731
    assert not set(seeds(first)) & set(seeds(second))


def test_resume_reaches_an_interrupted_stage1_and_ignores_speed_only_keys(tiny, tmp_path, monkeypatch):
    plain_cls = METHODS.get("plain")
    monkeypatch.setattr(plain_cls, "loss", _crash_on_step(2), raising=False)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path, "_probe", quick=True)  # trains its stage-1 plain run first, which crashes
    monkeypatch.undo()
    (crashed,) = (tmp_path / "tiny" / "plain").iterdir()
    run(tiny, tmp_path, "_probe", "data.workers=1", "log.every_steps=0", quick=True, resume=True)
    assert list((tmp_path / "tiny" / "plain").iterdir()) == [crashed]  # resumed in place, not retrained elsewhere
    assert json.loads((crashed / "manifest.json").read_text())["status"] == "complete"


def test_protocol_pretrained_backbone_without_weights_is_warned(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(PRETRAINED_BY_PROTOCOL, "glyphnet", "the protocol starts from pretrained weights")
    run_dir = run(tiny, tmp_path, "plain", quick=True)
    warnings = json.loads((run_dir / "manifest.json").read_text())["warnings"]
    assert any("glyphnet starts from random weights" in w and "model.weights=PATH" in w for w in warnings)


def test_frozen_body_dme_trains_attention_on_cached_maps(tiny, tmp_path):
    """Places-LT's stage 2 (frozen body; attention, fc_add and head train) uses map-level caching."""
    run_dir = run(tiny, tmp_path, "dme", "model.feat_dim=16", "params.freeze_backbone=true", quick=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cache = manifest["feature_cache"]
    assert cache["used"] and cache["level"] == "map" and "eval mode" in cache["batchnorm"]
    assert cached_rows(cache["path"], "train").shape[1:] == (16, 8, 8)  # the body's last map
    cfg = RunConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    model = Engine(cfg, tiny, tmp_path / "x").model.eval()
    model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / "best.pt")["model"])
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():  # what the cache feeds the model equals the model on images
        direct = model(images)["logits"]
        cached = model(model.backbone.feature_map(images), start="map")["logits"]
    torch.testing.assert_close(direct, cached)
    # Without fc_add nothing in the backbone trains, but the attention after the map does: still maps.
    no_fc = run(tiny, tmp_path, "dme", "model.feat_dim=null", "params.freeze_backbone=true", quick=True)
    assert json.loads((no_fc / "manifest.json").read_text())["feature_cache"]["level"] == "map"


def test_a_quick_run_trains_the_first_epoch_of_the_configured_schedule(tiny, tmp_path):
    run_dir = run(tiny, tmp_path, "plain", "train.epochs=4", *COSINE_AT_START, quick=True)
    (epoch,) = records(run_dir, "epoch")  # quick.epochs = 1
    assert epoch["lr"][0] == pytest.approx(0.05 * (1 + np.cos(np.pi / 4)) / 2, abs=1e-15)  # not cosine over 1 epoch (0)
