"""Every method resolves on every dataset, with the official hyper-parameters where there are some;
config files hold only what differs from what they inherit."""

import pytest

from oltr_bench.config import config_file, configs_dir, read_yaml, resolve, resolve_config
from oltr_bench.config.loader import BASE
from oltr_bench.registry import METHODS

DATASETS = ("imagenet_lt", "places_lt", "ms1m_lt", "embedded", "folder")
REAL = ("imagenet_lt", "places_lt", "ms1m_lt", "folder")
BUILT_IN = sorted(n for n in METHODS.names() if METHODS.get(n).__module__.startswith("oltr_bench.baselines."))
PAPER_COMPETITORS = ("focal", "range", "fslwf_stage1")


def cfg(method, dataset):
    return resolve_config(method, dataset, METHODS.get(method).defaults).to_dict()


def sampler(method, dataset):
    return cfg(method, dataset)["data"]["sampler"] or METHODS.get(method).sampler


def test_every_method_is_here():
    assert {"plain", "focal", "range", "openmax", "fslwf_stage1", "fslwf", "dme", "crt", "tau_norm", "lws",
            "balanced_softmax", "logit_adjust", "logit_adjust_posthoc", "ldam_drw"} == set(BUILT_IN)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_resolves_and_its_file_says_where_its_values_come_from(method, dataset):
    resolved = cfg(method, dataset)
    assert resolved["method"] == method
    path = config_file(dataset, method)
    if path.is_file():
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path} should say where its values come from"
        assert set(read_yaml(path).get("params", {})) <= set(resolved["params"])


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("dataset", DATASETS)
def test_method_files_hold_only_their_differences(dataset):
    """A value a method file sets must differ from what the base and the method's defaults give it."""
    base = resolve("plain", dataset, {}).config.to_dict()
    for path in sorted((configs_dir() / dataset).glob("*.yaml")):
        if path.stem == BASE:
            continue
        defaults = METHODS.get(path.stem).defaults
        inherited = {**dict(_leaves({k: v for k, v in base.items() if k != "params"})),
                     **{f"params.{k}": v for k, v in defaults.items()}}
        repeated = [key for key, value in _leaves(read_yaml(path)) if key in inherited and inherited[key] == value]
        assert not repeated, f"{path} repeats inherited values: {repeated}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_config_files_name_registered_methods(dataset):
    names = {p.stem for p in (configs_dir() / dataset).glob("*.yaml")} - {BASE}
    assert names <= set(BUILT_IN) and (configs_dir() / dataset / f"{BASE}.yaml").is_file()


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", [m for m in BUILT_IN if METHODS.get(m).stage == 2])
def test_stage2_models_fit_their_stage1_checkpoint(method, dataset):
    """A stage-2 method copies its stage-1 run's weights: same backbone and input; only DME adds an fc_add."""
    own, first = cfg(method, dataset), cfg(METHODS.get(method).init_from, dataset)
    keys = set(own["model"]) - ({"feat_dim"} if method == "dme" else set())
    assert {k: own["model"][k] for k in keys} == {k: first["model"][k] for k in keys}
    for key in ("pipeline", "image_size", "resize"):
        assert own["data"][key] == first["data"][key]


@pytest.mark.parametrize("dataset", DATASETS)
def test_paper_competitors_use_class_aware_sampling_and_the_stage1_schedule(dataset):
    plain = cfg("plain", dataset)["train"]
    for method in PAPER_COMPETITORS + ("dme", "crt", "lws"):
        assert sampler(method, dataset) == "class_aware" and cfg(method, dataset)["data"]["samples_per_class"] == 4
    for method in PAPER_COMPETITORS:
        train = cfg(method, dataset)["train"]
        assert {k: train[k] for k in ("epochs", "batch_size", "lr", "scheduler")} == \
            {k: plain[k] for k in ("epochs", "batch_size", "lr", "scheduler")}
    for method in ("plain", "balanced_softmax", "logit_adjust", "ldam_drw"):
        assert sampler(method, dataset) == "instance"


def OLTR_STEP(step_size: int) -> dict:
    """OLTR's schedule: StepLR(step_size, 0.1) stepped after each epoch (research/oltr.md §3.2)."""
    return {"name": "step", "step_size": step_size, "gamma": 0.1, "eta_min": 0.0, "step_at": "epoch_end"}


def test_dme_imagenet_lt_is_the_official_stage2():
    c = cfg("dme", "imagenet_lt")
    assert c["model"]["feat_dim"] == 512 and cfg("plain", "imagenet_lt")["model"]["feat_dim"] is None
    assert {k: c["train"][k] for k in ("epochs", "batch_size", "lr", "scheduler")} == {
        "epochs": 60, "batch_size": 128, "lr": {"features": 0.01, "classifier": 0.1},
        "scheduler": OLTR_STEP(20)}
    assert c["params"]["centroid_lr"] == 0.01 and c["params"]["loss_weight"] == 0.01
    assert c["params"]["freeze_backbone"] is False and c["params"]["modulated_attention"] is True


def test_dme_places_lt_is_the_official_stage2():
    c = cfg("dme", "places_lt")
    assert c["model"]["feat_dim"] == 512 == cfg("plain", "places_lt")["model"]["feat_dim"]
    assert {k: c["train"][k] for k in ("epochs", "lr", "scheduler")} == {
        "epochs": 30, "lr": {"features": 0.0001, "classifier": 0.01}, "scheduler": OLTR_STEP(10)}
    assert c["params"]["freeze_backbone"] is True


@pytest.mark.parametrize("dataset", REAL)
def test_real_datasets_keep_the_official_reachability_and_cosnorm_scales(dataset):
    params = cfg("dme", dataset)["params"]
    assert params["reachability_scale"] == 10.0 and params["cosnorm_scale"] == 16.0 and params["squash"] == "code"


@pytest.mark.parametrize("dataset", DATASETS)
def test_ldam_reweights_from_the_first_lr_decay(dataset):
    c = cfg("ldam_drw", dataset)
    assert 0 < c["params"]["drw_epoch"] == c["train"]["scheduler"]["step_size"] < c["train"]["epochs"]


@pytest.mark.parametrize("dataset", ("imagenet_lt", "places_lt"))
def test_decoupling_follows_the_official_batch_and_epochs(dataset):
    batch, lr = {"imagenet_lt": (512, 0.2), "places_lt": (256, 0.1)}[dataset]
    for method, epochs in (("crt", 10), ("lws", 5)):
        train = cfg(method, dataset)["train"]
        assert (train["epochs"], train["batch_size"], train["reference_batch_size"], train["lr"]["classifier"]) == \
            (epochs, batch, batch, lr)
        # coslr: true, endlr: 0.0, stepped before each epoch (run_networks.py).
        assert {k: train["scheduler"][k] for k in ("name", "eta_min", "step_at")} == \
            {"name": "cosine", "eta_min": 0.0, "step_at": "epoch_start"}


def test_balms_end_to_end_configs_anneal_by_cosine_except_ldam_drw():
    for method in ("balanced_softmax", "logit_adjust"):
        assert cfg(method, "imagenet_lt")["train"]["scheduler"]["name"] == "cosine"
    assert cfg("ldam_drw", "imagenet_lt")["train"]["scheduler"]["name"] == "step"  # DRW starts at the decay


@pytest.mark.parametrize("dataset", DATASETS)
def test_range_weight_is_oltr_feature_loss_weight_per_batch_class(dataset):
    """OLTR's 0.01 was for one range term per batch; the paper's loss has one per class of the batch."""
    c = cfg("range", dataset)
    classes_per_batch = c["train"]["batch_size"] // c["data"]["samples_per_class"]
    assert c["params"]["weight"] * classes_per_batch == pytest.approx(0.01, rel=0.05)
    assert c["params"]["oltr_compat"] is False


def test_embedded_dme_reachability_is_its_own_choice():
    """The official 10/γ saturates the squash at the embedded feature scale; the config says why it uses 0.3."""
    assert cfg("dme", "embedded")["params"]["reachability_scale"] == 0.3
    assert "Reachability scale 0.3, not the official 10" in config_file("embedded", "dme").read_text()
