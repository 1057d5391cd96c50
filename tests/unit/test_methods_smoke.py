"""Every method through the ``Method`` interface on a tiny backbone and a fake engine context.

The fake context does what the engine promises: ``outputs(split)`` runs the model in eval mode
over train or val; stage-2 models start from a stage-1 model through ``adapt_init_state``,
copying the keys that exist.
"""

import copy

import pytest
import torch
from torch import nn

from oltr_bench.config.schema import ModelConfig
from oltr_bench.errors import OltrError
from oltr_bench.method import DatasetInfo, LinearHead, MethodModel
from oltr_bench.registry import METHODS

COUNTS = (120, 110, 30, 12, 5, 3)
C, D = len(COUNTS), 8
METHODS_BUILT_HERE = {
    "balanced_softmax",
    "crt",
    "dme",
    "focal",
    "fslwf",
    "fslwf_stage1",
    "ldam_drw",
    "logit_adjust",
    "logit_adjust_posthoc",
    "lws",
    "openmax",
    "range",
    "tau_norm",
}


class TinyMapBackbone(nn.Module):
    """[B, 3, 4, 4] -> map [B, 8, 2, 2] -> mean pool [B, 8]; exposes the map for DME's attention."""

    feature_map_shape = (D, 2, 2)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, D, kernel_size=3, stride=2, padding=1)

    def feature_map(self, x):
        return torch.relu(self.conv(x))

    def pool(self, fmap):
        return fmap.mean((2, 3))

    def forward(self, x):
        return self.pool(self.feature_map(x))


def flat_backbone():
    return nn.Sequential(nn.Flatten(), nn.Linear(48, D))


def make_split(n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(C, 3, 4, 4, generator=torch.Generator().manual_seed(99))
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    x = torch.randn(len(labels), 3, 4, 4, generator=g) + 1.5 * patterns[labels]
    return x, labels


TRAIN = make_split(COUNTS, 0)
VAL = make_split((4,) * C, 1)
INFO = DatasetInfo(num_classes=C, train_counts=COUNTS, feat_dim=D)


class FakeContext:
    def __init__(self, model, train=TRAIN, quick=False):
        self.model = model
        self.device = torch.device("cpu")
        self.info = INFO
        self.quick = quick
        self.train = train
        self.messages = []

    def outputs(self, split):
        x, y = {"train": self.train, "val": VAL}[split]
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(x)
        self.model.train(was_training)
        return {**{k: v.detach() for k, v in out.items()}, "labels": y}

    def log(self, message):
        self.messages.append(message)


def make(name, **overrides):
    cls = METHODS.get(name)
    return cls({**cls.defaults, **overrides}, INFO)


def train(method, model, steps=25, lr=0.05):
    """Full-batch SGD through the interface; returns the losses."""
    ctx = FakeContext(model)
    method.on_train_start(ctx)
    opt = torch.optim.SGD(method.param_groups(model, {"features": lr, "classifier": lr}), lr=lr, momentum=0.9)
    optimizers = [opt, *method.extra_optimizers(model)]
    x, y = TRAIN
    losses = []
    for step in range(steps):
        method.on_epoch_start(step // 10)
        loss, parts = method.loss(model(x, y), y, model)
        # Detached device tensors: the engine reads them only when it logs, so a step needs no host sync.
        assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in parts.values())
        for o in optimizers:
            o.zero_grad()
        loss.backward()
        for o in optimizers:
            o.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    return losses


def check_predictions(method, model):
    out = FakeContext(model).outputs("val")
    pred = method.predict(out)
    n = len(VAL[1])
    assert {"logits", "probs"} & set(pred)
    scores = pred.get("logits", pred.get("probs"))
    assert scores.shape == (n, C) and torch.isfinite(scores).all()
    if "probs" in pred:
        torch.testing.assert_close(pred["probs"].sum(1), torch.ones(n, dtype=pred["probs"].dtype))
    if "pred" in pred:
        assert pred["pred"].shape == (n,) and ((pred["pred"] >= -1) & (pred["pred"] < C)).all()
    if "known_score" in pred:
        assert pred["known_score"].shape == (n,) and torch.isfinite(pred["known_score"]).all()
    return pred


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to other processes on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_plain(backbone):
    """A briefly trained stage-1 plain model (linear head)."""
    torch.manual_seed(0)
    model = MethodModel(backbone, LinearHead(D, C))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = TRAIN
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x)["logits"], y).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def plain():
    return train_plain(TinyMapBackbone())


def stage2(method, stage1):
    """Build a stage-2 model and copy the stage-1 keys as the engine does."""
    model = method.build_model(copy.deepcopy(stage1.backbone))
    method.load_stage1(model, stage1.state_dict())
    if not method.trains:
        model.requires_grad_(False)  # as the engine does before fit() of a method that trains nothing
    return model


def test_every_method_is_registered_with_a_description():
    assert METHODS_BUILT_HERE <= set(METHODS.names())
    for name in METHODS_BUILT_HERE:
        cls = METHODS.get(name)
        assert cls.describe() and len(cls.describe()) < 120
        assert (cls.stage == 2) == (cls.init_from is not None)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("focal", {}),
        ("focal", {"class_alpha": [0.25, 0.5, 0.75, 1.0, 1.0, 1.0], "gamma": 1.0}),
        ("balanced_softmax", {}),
        ("logit_adjust", {}),
        ("ldam_drw", {"drw_epoch": 1000}),
        ("range", {}),
        ("range", {"squared": True}),
        ("range", {"oltr_compat": True}),
        ("fslwf_stage1", {}),
    ],
)
@pytest.mark.parametrize("backbone", [flat_backbone, TinyMapBackbone])
def test_stage1_methods_train(name, overrides, backbone):
    torch.manual_seed(0)
    method = make(name, **overrides)
    model = method.build_model(backbone())
    losses = train(method, model)
    assert sum(losses[-5:]) / 5 < losses[0]
    check_predictions(method, model)


def test_ldam_drw_switches_weights_at_its_epoch():
    method = make("ldam_drw", drw_epoch=2)
    method.on_epoch_start(1)
    assert method.class_weights() is None
    method.on_epoch_start(2)
    weights = method.class_weights()
    assert weights is not None and weights.sum().item() == pytest.approx(C) and weights[-1] > weights[0]


def test_range_oltr_compat_initialises_centres_from_class_means():
    method = make("range", oltr_compat=True)
    model = method.build_model(flat_backbone())
    ctx = FakeContext(model)
    method.on_train_start(ctx)
    feats = ctx.outputs("train")
    expected = torch.stack([feats["features"][feats["labels"] == c].mean(0) for c in range(C)])
    torch.testing.assert_close(model.head.centres, expected)


@pytest.mark.parametrize("name", ["crt", "lws"])
def test_stage2_classifier_methods_train_the_head_only(name, plain):
    torch.manual_seed(0)
    method = make(name)
    model = stage2(method, plain)
    backbone_before = copy.deepcopy(model.backbone.state_dict())
    if name == "crt":
        assert not torch.equal(model.head.fc.weight, plain.head.fc.weight)
    else:
        torch.testing.assert_close(model.head.fc.weight, plain.head.fc.weight)
    fc_before = copy.deepcopy(model.head.fc.state_dict())
    losses = train(method, model)
    assert sum(losses[-5:]) / 5 < losses[0]
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, backbone_before[k])
    if name == "lws":
        for k, v in model.head.fc.state_dict().items():
            torch.testing.assert_close(v, fc_before[k])
    check_predictions(method, model)


@pytest.mark.parametrize(
    "overrides, backbone",
    [
        ({}, TinyMapBackbone),
        ({"squash": "paper", "reachability_scale": 1.0, "attention_init": "as_written"}, TinyMapBackbone),
        ({"modulated_attention": False}, flat_backbone),
        ({"freeze_backbone": True}, TinyMapBackbone),
    ],
)
def test_dme_trains(overrides, backbone, plain):
    torch.manual_seed(0)
    method = make("dme", **overrides)
    stage1 = plain if backbone is TinyMapBackbone else train_plain(flat_backbone())
    model = stage2(method, stage1)
    torch.testing.assert_close(model.head.hallucinator.weight, stage1.head.fc.weight)
    ctx = FakeContext(model)
    method.on_train_start(ctx)
    feats = ctx.outputs("train")
    expected = torch.stack([feats["features"][feats["labels"] == c].mean(0) for c in range(C)])
    torch.testing.assert_close(model.head.centroids.detach(), expected)
    centroids_before = model.head.centroids.detach().clone()
    groups = method.param_groups(model, {"features": 0.01, "classifier": 0.1})
    assert all(p is not model.head.centroids for g in groups for p in g["params"])
    losses = train(method, model)
    assert sum(losses[-5:]) / 5 < losses[0]
    assert not torch.equal(model.head.centroids.detach(), centroids_before)  # moved by their own optimiser
    if overrides.get("freeze_backbone"):
        assert all(not p.requires_grad for p in model.backbone.parameters())
    check_predictions(method, model)


def test_dme_freeze_backbone_trains_attention_and_fc_add_only():
    """OLTR's Places-LT stage 2: ``fix`` with the name filter modulatedatt/fc."""
    from oltr_bench.models.backbones import build_backbone

    backbone = build_backbone(ModelConfig(backbone="glyphnet", widths=[8, 16], input_size=16, feat_dim=D))
    method = make("dme", freeze_backbone=True)
    model = method.build_model(backbone)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trained if n.startswith("backbone.")} == {"backbone.fc_add.weight", "backbone.fc_add.bias"}
    assert {n for n, _ in model.attention.named_parameters()} <= {n.removeprefix("attention.") for n in trained}
    (features, classifier) = method.param_groups(model, {"features": 1e-4, "classifier": 0.01})
    assert {id(p) for p in features["params"]} == {id(p) for n, p in model.named_parameters()
                                                   if n in trained and not n.startswith("head.")}
    assert all(p is not model.head.centroids for p in classifier["params"]) and features["lr"] == 1e-4


def test_dme_attention_needs_the_feature_map():
    with pytest.raises(OltrError, match="feature_map"):
        make("dme").build_model(flat_backbone())


def test_tau_norm_chooses_tau_on_validation(plain):
    method = make("tau_norm")
    model = stage2(method, plain)
    ctx = FakeContext(model)
    method.fit(ctx)
    assert method.tau in [i / 10 for i in range(21)] and len(method.val_accuracy) == 21
    assert method.val_accuracy[method.tau] == max(method.val_accuracy.values())
    assert float(model.head.tau) == method.tau
    pred = check_predictions(method, model)
    expected = VAL[0]
    feats = ctx.outputs("val")["features"]
    w = plain.head.fc.weight / plain.head.fc.weight.norm(dim=1, keepdim=True) ** method.tau
    torch.testing.assert_close(pred["logits"], feats @ w.t())
    assert expected.shape[0] == pred["logits"].shape[0]


def test_logit_adjust_posthoc_subtracts_the_log_prior(plain):
    method = make("logit_adjust_posthoc")
    model = stage2(method, plain)
    out = FakeContext(model).outputs("val")
    pred = check_predictions(method, model)
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    torch.testing.assert_close(pred["logits"], out["logits"] - torch.log(prior + 1e-12).float())


@pytest.mark.parametrize(
    "overrides",
    [{}, {"tune": True, "tune_tail_sizes": [3, 10], "tune_alpha_ranks": [1, 2], "tune_max_accuracy_drop": 1.0}],
)
def test_openmax_fits_and_predicts(overrides, plain):
    method = make("openmax", **overrides)
    model = stage2(method, plain)
    method.fit(FakeContext(model))
    pred = check_predictions(method, model)
    assert set(pred) == {"probs", "pred", "known_score"}
    assert pred["known_score"].dtype == torch.float64
    if overrides:
        assert len(method.tuning) == 4
        chosen = next(
            t for t in method.tuning if (t["tail_size"], t["alpha_rank"]) == (method.tail_size, method.alpha_rank)
        )
        assert chosen["reject_rate"] == max(t["reject_rate"] for t in method.tuning)
    restored = make("openmax")
    restored.load_state_dict(method.state_dict())
    out = FakeContext(model).outputs("val")
    torch.testing.assert_close(restored.predict(out)["known_score"], method.predict(out)["known_score"])


def test_openmax_tuning_without_a_feasible_setting_takes_the_most_accurate(plain):
    grid = {"tune": True, "tune_tail_sizes": [3, 10], "tune_alpha_ranks": [1, 6], "tune_max_accuracy_drop": -1.0}
    method = make("openmax", **grid)
    ctx = FakeContext(stage2(method, plain))
    method.fit(ctx)
    best = max(t["accuracy"] for t in method.tuning)
    chosen = next(t for t in method.tuning if (t["tail_size"], t["alpha_rank"]) == (method.tail_size, method.alpha_rank))
    assert chosen["accuracy"] == best and any("taking the most accurate one" in m for m in ctx.messages)


def test_fslwf_two_stages():
    torch.manual_seed(0)
    stage1_method = make("fslwf_stage1")
    stage1 = stage1_method.build_model(TinyMapBackbone())
    train(stage1_method, stage1, steps=30)
    method = make("fslwf", shots=3, test_per_novel=2, episodes_per_epoch=5, lr_schedule=[[1, 0.01], [2, 0.001]])
    model = stage2(method, stage1)
    torch.testing.assert_close(model.head.fc.weight, stage1.head.fc.weight)
    before = model.head.fc.weight.detach().clone()
    ctx = FakeContext(model)
    method.fit(ctx)
    assert [h["lr"] for h in method.history] == [0.01, 0.001]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in method.history)
    after = model.head.fc.weight.detach()
    assert not torch.equal(after[2:], before[2:])  # medium/few weights generated
    novel_support = ctx.outputs("train")
    with torch.no_grad():
        expected = model.head.generator(
            novel_support["features"][novel_support["labels"] >= 2],
            novel_support["labels"][novel_support["labels"] >= 2] - 2,
            C - 2,
            model.head.fc.weight[:2],
            torch.tensor([0, 1]),
        )
    torch.testing.assert_close(after[2:], expected)
    check_predictions(method, model)


def test_fslwf_rejects_datasets_without_enough_many_shot_images():
    with pytest.raises(OltrError, match="many-shot"):
        METHODS.get("fslwf")({**METHODS.get("fslwf").defaults, "many_threshold": 115}, INFO)
    with pytest.raises(OltrError, match="shots must be >= 1"):
        make("fslwf", shots=0)


@pytest.mark.parametrize(
    "seen, quick, expected",
    [
        # the full training set: nothing to clamp
        ((120, 110, 30, 12, 5, 3), False, {"pool": [0, 1], "smallest": 110, "shots": 20, "test_per_novel": 6,
                                           "clamped": False, "episodes_per_epoch": 4000}),
        # a --quick subset (8 per class): 6 test images, the 2 left are the support set
        ((8, 8, 8, 8, 5, 3), True, {"pool": [0, 1], "smallest": 8, "shots": 2, "test_per_novel": 6,
                                    "clamped": True, "episodes_per_epoch": 4}),
        # 3 images: test_per_novel drops to m - 1 = 2 so that one support image is left
        ((3, 40, 0, 0, 0, 0), False, {"pool": [0, 1], "smallest": 3, "shots": 1, "test_per_novel": 2,
                                      "clamped": True, "episodes_per_epoch": 4000}),
    ],
)
def test_fslwf_episodes_fit_the_features_seen(seen, quick, expected):
    assert make("fslwf").episode_plan(torch.tensor(seen), quick) == expected


def test_fslwf_episodes_need_two_many_shot_classes_with_two_images():
    with pytest.raises(OltrError, match="at least 2 many-shot classes with 2 or more training images"):
        make("fslwf").episode_plan(torch.tensor([1, 50, 3, 3, 3, 3]), False)


def test_fslwf_fits_on_a_subset_without_some_classes():
    """As in a --quick run: 8 features per class at most, and a few-shot class with none at all."""
    torch.manual_seed(0)
    stage1_method = make("fslwf_stage1")
    stage1 = stage1_method.build_model(TinyMapBackbone())
    train(stage1_method, stage1, steps=10)
    x, y = TRAIN
    keep = torch.cat([torch.nonzero(y == c).flatten()[:8] for c in range(C - 1)])
    method = make("fslwf")
    model = stage2(method, stage1)
    before = model.head.fc.weight.detach().clone()
    ctx = FakeContext(model, train=(x[keep], y[keep]), quick=True)
    method.fit(ctx)
    assert method.episode["shots"] == 2 and method.episode["episodes_per_epoch"] == 4
    assert any("episodes use 2 shots and 6 test images" in m for m in ctx.messages)
    after = model.head.fc.weight.detach()
    assert torch.equal(after[C - 1], before[C - 1])  # no feature seen: keeps its stage-1 weight
    assert not torch.equal(after[2:C - 1], before[2:C - 1])
    check_predictions(method, model)


def test_crt_drops_the_stage1_classifier_and_dme_renames_it():
    state = {"backbone.w": torch.zeros(1), "head.fc.weight": torch.zeros(C, D), "head.fc.bias": torch.zeros(C)}
    assert list(make("crt").adapt_init_state(state)) == ["backbone.w"]
    renamed = make("dme").adapt_init_state(state)
    assert sorted(renamed) == ["backbone.w", "head.hallucinator.bias", "head.hallucinator.weight"]
    # The hallucinator needs the stage-1 classifier's input size: a clear error, not half a layer.
    with pytest.raises(OltrError, match=rf"takes {D + 1}-d features, but this model's direct feature is {D}-d; set model.feat_dim to {D + 1}"):
        make("dme").adapt_init_state({**state, "head.fc.weight": torch.zeros(C, D + 1)})


def test_stage1_saved_from_a_ddp_wrapper_initialises_crt_and_dme_like_an_unwrapped_one(plain):
    """``module.``-prefixed keys are unwrapped before the method renames or drops its keys."""
    wrapped = {f"module.{k}": v for k, v in plain.state_dict().items()}
    crt = make("crt")
    model = crt.build_model(copy.deepcopy(plain.backbone))
    fresh = model.head.fc.weight.clone()
    report = crt.load_stage1(model, wrapped)
    assert torch.equal(model.head.fc.weight, fresh) and "head.fc.weight" in report["fresh"]  # re-initialised, not copied
    dme = make("dme")
    model = dme.build_model(copy.deepcopy(plain.backbone))
    dme.load_stage1(model, wrapped)
    assert torch.equal(model.head.hallucinator.weight, plain.head.fc.weight)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name, overrides",
    [
        ("focal", {}),
        ("balanced_softmax", {}),
        ("logit_adjust", {}),
        ("ldam_drw", {"drw_epoch": 0}),
        ("range", {}),
        ("range", {"oltr_compat": True}),
        ("fslwf_stage1", {}),
        ("dme", {}),
    ],
)
def test_losses_under_autocast_are_float32_and_finite(name, overrides, device, plain):
    """Mixed precision (bfloat16 autocast, as an engine may use) must not reach the losses' arithmetic."""
    torch.manual_seed(0)
    method = make(name, **overrides)
    model = stage2(method, plain) if method.stage == 2 else method.build_model(TinyMapBackbone())
    model.to(device)
    ctx = FakeContext(model)
    ctx.device = torch.device(device)
    x, y = (t.to(device) for t in TRAIN)
    ctx.outputs = lambda split: {
        **{k: v.detach().cpu() for k, v in model.eval()(x).items()},
        "labels": TRAIN[1],
    }
    method.on_train_start(ctx)
    model.train()
    with torch.autocast(device, dtype=torch.bfloat16):
        loss, _ = method.loss(model(x, y), y, model)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_focal_per_class_alpha_comes_from_the_command_line_or_fails_clearly():
    from oltr_bench.config import resolve_config

    focal = METHODS.get("focal")
    weights = "params.class_alpha=[0.25, 0.5, 0.75, 1, 1, 1]"
    cfg = resolve_config("focal", "embedded", focal.defaults, [weights])
    assert torch.equal(focal(cfg.params, INFO).alpha, torch.tensor([0.25, 0.5, 0.75, 1, 1, 1], dtype=torch.float64))
    short = resolve_config("focal", "embedded", focal.defaults, ["params.class_alpha=[0.25, 0.5]"])
    with pytest.raises(OltrError, match=r"params.class_alpha must be a list of 6 numbers \(one per class\), found 2 values"):
        focal(short.params, INFO)
    both = resolve_config("focal", "embedded", focal.defaults, [weights, "params.alpha=0.5"])
    with pytest.raises(OltrError, match="either params.alpha .* or params.class_alpha, not both"):
        focal(both.params, INFO)



def test_dme_reachability_is_exact_near_a_far_centroid():
    """γ = ‖v − c_nearest‖ keeps float32 precision when ‖c‖ ≫ γ (the official code takes the difference)."""
    from oltr_bench.baselines.dme import nearest_centroid_distance

    gen = torch.Generator().manual_seed(0)
    memory = torch.randn(5, 512, generator=gen) * 80 / 512**0.5  # ‖c‖ ≈ 80, the ImageNet-LT scale
    offset = 0.01 * torch.randn(3, 512, generator=gen)
    v = memory[:3] + offset
    gamma = nearest_centroid_distance(v, memory)
    exact = (v.double() - memory[:3].double()).norm(dim=1)  # ≈ 0.22: each row's own centroid is the nearest
    assert torch.allclose(gamma.double(), exact, rtol=1e-5)
    assert nearest_centroid_distance(memory[:1], memory).item() == pytest.approx(1e-6, rel=1e-6)  # on a centroid: eps, not 0


def test_openmax_tuning_rejects_most_within_the_accuracy_budget():
    from oltr_bench.baselines.openmax import choose_setting

    grid = [{"tail_size": tail, "alpha_rank": 1, "accuracy": acc, "reject_rate": rej}
            for tail, acc, rej in ((3, 0.90, 0.05), (5, 0.80, 0.30), (10, 0.86, 0.20), (20, 0.88, 0.20), (40, 0.88, 0.20))]
    # 0.80 is over the budget: the most rejecting of the rest, ties to higher accuracy, then grid order.
    assert choose_setting(grid, floor=0.85) == (grid[3], True)
    assert choose_setting(grid, floor=0.80) == (grid[1], True)
    assert choose_setting(grid, floor=0.95) == (grid[0], False)  # none feasible: the most accurate
