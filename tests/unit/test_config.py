"""Config resolution: the typed schema, YAML layering with inheritance, typed --set overrides, clear errors."""

import pytest

from oltr_bench.config import RunConfig, config_hash, parse_override, render, resolve, resolve_config
from oltr_bench.config.schema import NEUTRAL_KEYS, comparable, defaults, shared_with_stage1
from oltr_bench.errors import OltrError


def test_embedded_plain_resolves_with_defaults_and_dataset_file():
    cfg = resolve_config("plain", "embedded", {})
    assert isinstance(cfg, RunConfig) and cfg.method == "plain" and cfg.dataset == "embedded"
    assert cfg.model.backbone == "glyphnet"
    assert cfg.to_dict()["train"]["lr"] == {"features": 0.05, "classifier": 0.05}
    assert cfg.train.momentum == 0.9 and cfg.train.weight_decay == 0.0005


def test_imagenet_plain_is_the_official_stage1():
    cfg = resolve_config("plain", "imagenet_lt", {})
    assert cfg.model.backbone == "resnet10"
    assert cfg.train.epochs == 30 and cfg.train.batch_size == 128
    assert cfg.to_dict()["train"]["lr"] == {"features": 0.1, "classifier": 0.1}
    assert cfg.to_dict()["train"]["scheduler"] == {"name": "step", "step_size": 10, "gamma": 0.1, "eta_min": 0.0, "step_at": "epoch_end"}
    assert cfg.data.pipeline == "parity"


def test_overrides_are_typed():
    cfg = resolve_config("plain", "embedded", {"gamma": 2.0}, ["train.epochs=3", "train.lr.features=1", "params.gamma=0.5", "train.weight_decay=5e-4"])
    assert cfg.train.epochs == 3
    assert cfg.train.lr.features == 1.0 and isinstance(cfg.train.lr.features, float)
    assert cfg.params["gamma"] == 0.5
    assert cfg.train.weight_decay == 0.0005


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key 'train.epoch'"),
        ("train.epochs=three", "train.epochs must be an integer"),
        ("train.lr_scaling=1", "must be a boolean"),
        ("params.nope=1", "unknown key 'params.nope'"),
        ("train.epochs", "expected KEY=VALUE"),
        ("=3", "is not a dotted key"),
        ("model.feat_dim=wide", "model.feat_dim must be an integer or null"),
        ("model.widths=[8, x]", "model.widths must be a list of integers or null"),
        ("train=3", "train must be a mapping, found 3"),
    ],
)
def test_bad_overrides_fail_clearly(override, message):
    with pytest.raises(OltrError, match=message) as err:
        resolve_config("plain", "embedded", {}, [override])
    assert str(err.value).startswith("--set") and override in str(err.value)  # it names where the value came from


def test_parse_override_values():
    assert parse_override("a.b=0.1") == (["a", "b"], 0.1)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=text") == (["a"], "text")


def test_optional_keys_accept_null_and_their_type():
    cfg = resolve_config("plain", "embedded", {}, ["model.weights=/tmp/w.pth", "model.feat_dim=null", "data.sampler=class_aware"])
    assert cfg.model.weights == "/tmp/w.pth" and cfg.model.feat_dim is None and cfg.data.sampler == "class_aware"


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "train.batch_size must be a positive integer, found 0"),
    ("data.workers=-1", r"data.workers must be at least 0 \(0 loads in the main process\), found -1"),
    ("data.pipeline=foo", "data.pipeline 'foo' is not known; expected one of: embedded, parity, fast"),
    ("train.precision=fp16", "train.precision 'fp16' is not known; expected one of: auto, fp32, bf16"),
    ("eval.protocol=oltr2019", "eval.protocol 'oltr2019' is not known; expected one of: oltr, oltr-2019, oltr-code"),
    ("eval.open_threshold=7", r"eval.open_threshold must be in \[0, 1\] \(τ on the known score\), found 7.0"),
    ("train.scheduler.step_size=0", "train.scheduler.step_size must be at least 1, found 0"),
])
def test_value_rules_live_in_the_schema(override, message):
    cfg = resolve_config("plain", "embedded", {}, [override])
    with pytest.raises(OltrError, match=message):
        cfg.validate()


def test_quick_settings_are_checked_only_for_quick_runs():
    cfg = resolve_config("plain", "embedded", {}, ["quick.open_images=0"])
    cfg.validate(quick=False)
    with pytest.raises(OltrError, match="quick.open_images must be a positive integer, found 0"):
        cfg.validate(quick=True)


def test_config_hash_ignores_key_order_and_type_of_container():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    cfg = resolve_config("plain", "embedded", {})
    assert config_hash(cfg) == config_hash(cfg.to_dict())


def test_round_trip_through_the_saved_mapping():
    cfg = resolve_config("dme", "imagenet_lt", {"x": 1.0}, ["seed=4"])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_method_files_hold_only_their_differences_from_the_base():
    resolved = resolve("dme", "imagenet_lt", {"w": 1.0})
    files = [p.relative_to(p.parents[1]).as_posix() for p in resolved.files]
    assert files == ["imagenet_lt/_base.yaml", "imagenet_lt/dme.yaml"]
    assert resolved.origins["model.backbone"].endswith("imagenet_lt/_base.yaml")
    assert resolved.origins["train.epochs"].endswith("imagenet_lt/dme.yaml")
    assert "train.momentum" not in resolved.origins  # the schema's default
    text = render(resolved)
    assert "epochs: 60" in text and "[imagenet_lt/dme.yaml]" in text and "[imagenet_lt/_base.yaml]" in text
    assert "momentum: 0.9" in text and "[defaults]" in text


def test_a_method_without_a_config_uses_the_datasets_base_not_the_embedded_defaults():
    cfg = resolve_config("no_such_method", "imagenet_lt", {"w": 1.0})
    assert cfg.model.backbone == "resnet10" and cfg.data.pipeline == "parity"
    assert cfg.params == {"w": 1.0}
    resolved = resolve("no_such_method", "imagenet_lt", {})
    assert [p.name for p in resolved.files] == ["_base.yaml"] and resolved.note is None
    # A user's folder dataset uses the generic folder configs.
    resolved = resolve("plain", "my_flowers", {})
    assert resolved.files[0].parent.name == "folder" and "no configs for dataset 'my_flowers'" in resolved.note
    assert resolved.config.model.backbone == "resnet10"


def test_neutral_keys_and_what_stage1_shares_come_from_the_schema():
    assert NEUTRAL_KEYS == (("data", "workers"), ("eval", "batch_size"), ("log",))
    shared = ["seed", "model.backbone", "model.weights", "data.workers", "data.pipeline", "train.batch_size", "train.precision",
              "train.lr_scaling", "eval.batch_size", "log.every_steps", "log"]
    own = ["model.feat_dim", "data.sampler", "data.samples_per_class", "train.epochs", "train.lr.features", "train.scheduler.name",
           "eval.protocol", "params.x", "quick.epochs", "method", "nope"]
    assert all(shared_with_stage1(p.split(".")) for p in shared)
    assert not any(shared_with_stage1(p.split(".")) for p in own)


def test_comparable_fills_keys_added_since_and_drops_neutral_ones():
    old = defaults()
    del old["train"]["scheduler"]["step_at"]
    old["data"]["workers"] = 17
    assert comparable(old) == comparable(defaults())
    changed = defaults()
    changed["train"]["epochs"] = 3
    assert comparable(changed) != comparable(defaults())
