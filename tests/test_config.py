"""Config resolution: YAML layering, typed --set overrides, clear errors."""

import pytest

from oltr_bench.config import apply_overrides, config_hash, parse_override, resolve_config
from oltr_bench.errors import OltrError


def test_embedded_plain_resolves_with_defaults_and_dataset_file():
    cfg = resolve_config("plain", "embedded", {})
    assert cfg["method"] == "plain" and cfg["dataset"] == "embedded"
    assert cfg["model"]["backbone"] == "glyphnet"
    assert cfg["train"]["lr"] == {"features": 0.05, "classifier": 0.05}
    assert cfg["train"]["momentum"] == 0.9 and cfg["train"]["weight_decay"] == 0.0005


def test_imagenet_plain_is_the_official_stage1():
    cfg = resolve_config("plain", "imagenet_lt", {})
    assert cfg["model"]["backbone"] == "resnet10"
    assert cfg["train"]["epochs"] == 30 and cfg["train"]["batch_size"] == 128
    assert cfg["train"]["lr"] == {"features": 0.1, "classifier": 0.1}
    assert cfg["train"]["scheduler"] == {"name": "step", "step_size": 10, "gamma": 0.1, "eta_min": 0.0, "step_at": "epoch_end"}
    assert cfg["data"]["pipeline"] == "parity"


def test_overrides_are_typed():
    cfg = resolve_config("plain", "embedded", {"gamma": 2.0}, ["train.epochs=3", "train.lr.features=1", "params.gamma=0.5", "train.weight_decay=5e-4"])
    assert cfg["train"]["epochs"] == 3
    assert cfg["train"]["lr"]["features"] == 1.0 and isinstance(cfg["train"]["lr"]["features"], float)
    assert cfg["params"]["gamma"] == 0.5
    assert cfg["train"]["weight_decay"] == 0.0005


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key 'train.epoch'"),
        ("train.epochs=three", "train.epochs must be an integer"),
        ("train.lr_scaling=1", "must be a boolean"),
        ("params.nope=1", "unknown key 'params.nope'"),
        ("train.epochs", "expected KEY=VALUE"),
        ("=3", "is not a dotted key"),
    ],
)
def test_bad_overrides_fail_clearly(override, message):
    with pytest.raises(OltrError, match=message):
        resolve_config("plain", "embedded", {}, [override])


def test_parse_override_values():
    assert parse_override("a.b=0.1") == (["a", "b"], 0.1)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=text") == (["a"], "text")


def test_null_defaults_accept_any_value():
    cfg = apply_overrides({"model": {"weights": None}}, ["model.weights=/tmp/w.pth"])
    assert cfg["model"]["weights"] == "/tmp/w.pth"


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_a_method_without_a_config_uses_the_datasets_stage1_setup_not_the_embedded_defaults():
    from oltr_bench.config import dataset_config

    cfg = resolve_config("no_such_method", "imagenet_lt", {"w": 1.0})
    assert cfg["model"]["backbone"] == "resnet10" and cfg["data"]["pipeline"] == "parity"
    assert cfg["params"] == {"w": 1.0}
    path, note = dataset_config("imagenet_lt", "no_such_method")
    assert path.name == "plain.yaml" and path.parent.name == "imagenet_lt" and "stage-1 setup" in note
    assert dataset_config("imagenet_lt", "plain")[1] is None
    # A user's folder dataset uses the generic folder configs.
    path, note = dataset_config("my_flowers", "plain")
    assert path.parent.name == "folder" and "no configs for dataset 'my_flowers'" in note
    assert resolve_config("plain", "my_flowers", {})["model"]["backbone"] == "resnet10"
