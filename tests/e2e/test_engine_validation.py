"""run_method before any work: config validation, the stage-1 lookup and what stage 1 inherits, the manifest's MACs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from oltr_bench.config import resolve_config
from oltr_bench.method import Method
from oltr_bench.engine.runner import run_method
from oltr_bench.engine.stage1 import find_stage1, stage1_overrides
from oltr_bench.errors import OltrError
from oltr_bench.models.backbones import PRETRAINED_BY_PROTOCOL, build_backbone
from oltr_bench.registry import METHODS
from tests.tiny_data import TINY, make_tiny_split, tiny_config


@METHODS.register("_after_plain")
class AfterPlain(Method):
    """Test-only stage 2: fine-tunes the plain model (the default copies every stage-1 key)."""

    stage, init_from = 2, "plain"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


STAGE1 = stage1_overrides(TINY)  # what a stage-2 run on TINY passes on: its stage-1 runs keep plain's own schedule


def run(tiny, root: Path, method: str, *extra: str, base=TINY, **kwargs) -> Path:
    return run_method(method, tiny, runs_root=root, overrides=[*base, *extra], progress=False, quick=True, **kwargs)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("oltr_bench")]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.mark.parametrize("method, override, message", [
    ("dme", "params.squash=foo", "params.squash must be 'code' or 'paper', got 'foo'"),
    ("plain", "model.backbone=resnet999", "model.backbone 'resnet999' is not known"),
    ("plain", "data.pipeline=foo", "data.pipeline 'foo' is not known"),
    ("dme", "train.precision=fp16", "train.precision 'fp16' is not known"),
    ("dme", "data.sampler=weird", "data.sampler 'weird' is not known"),
    ("plain", "train.batch_size=0", "train.batch_size must be a positive integer, found 0"),
    ("plain", "train.epochs=0", "train.epochs must be a positive integer, found 0"),
    ("plain", "data.samples_per_class=0", "data.samples_per_class must be a positive integer, found 0"),
    ("plain", "train.scheduler.step_size=0", "train.scheduler.step_size must be at least 1, found 0"),
    ("plain", "quick.open_images=-1", "quick.open_images must be a positive integer, found -1"),
    # The stage-2 model must be one the stage-1 checkpoint can initialise (feat_dim is stage 2's own).
    ("dme", "model.feat_dim=8", "dme initialises its hallucinator from the stage-1 classifier, which takes 16-d features, "
                                "but this model's direct feature is 8-d; set model.feat_dim to 16"),
    # Evaluation settings are only used after training: a typo must not cost the whole run.
    ("plain", "eval.protocol=oltr2019", "eval.protocol 'oltr2019' is not known; expected one of: oltr, oltr-2019, oltr-code"),
    ("plain", "eval.open_threshold=7", r"eval.open_threshold must be in \[0, 1\] \(τ on the known score\), found 7.0"),
    # DME's attention is sized for model.input_size (16 here): 8-pixel images fail before stage 1 trains.
    ("dme", "data.image_size=8", r"the dme model cannot take data.image_size=8 inputs \(model.input_size=16\)"),
])
def test_bad_configs_fail_before_any_training_or_run_directory(tiny, tmp_path, method, override, message):
    with pytest.raises(OltrError, match=message):
        run(tiny, tmp_path, method, override)
    assert not (tmp_path / "tiny").exists()  # no stage-1 run trained, no run directory left behind


def test_an_output_folder_that_cannot_be_created_is_a_clear_error(tiny, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OltrError, match=r"--out .*file/x: cannot create the run directory .* \(Not a directory\); "
                                        "expected a writable folder"):
        run(tiny, tmp_path / "file" / "x", "plain")


def test_a_bad_config_is_a_one_line_cli_error(tiny, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from oltr_bench.cli import main

    sets = [arg for item in (*TINY, "train.batch_size=0") for arg in ("--set", item)]
    result = CliRunner().invoke(main, ["run", "--method", "dme", "--splits", str(tiny.path), "--out", str(tmp_path), "--quick",
                                       "--no-progress", *sets])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: train.batch_size must be a positive integer, found 0" in result.output
    assert not (tmp_path / "tiny").exists()


def test_stage1_lookup_and_weights_the_stage2_command_did_not_set(tiny, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="oltr_bench")
    weights = tmp_path / "glyphnet.pt"
    torch.save(build_backbone(tiny_config().model).body.state_dict(), weights)
    with_weights = run(tiny, tmp_path, "plain", f"model.weights={weights}", base=STAGE1)
    without = run(tiny, tmp_path, "plain", base=STAGE1)
    # glyphnet trains from scratch by protocol: a pretrained stage 1 must not stand in for it.
    stage2 = run(tiny, tmp_path, "_after_plain")
    assert manifest(stage2)["stage1_run"] == str(without.resolve())
    # Where the protocol starts from pretrained weights (Places-LT's ResNet-152), the stage-1 run that had
    # them matches a stage-2 command that does not repeat --set model.weights, and is preferred.
    monkeypatch.setitem(PRETRAINED_BY_PROTOCOL, "glyphnet", "test: pretrained by protocol")
    stage2 = run(tiny, tmp_path, "_after_plain")
    assert manifest(stage2)["stage1_run"] == str(with_weights.resolve()) and len(list((tmp_path / "tiny" / "plain").iterdir())) == 2
    assert f"_after_plain starts from plain run {with_weights}" in messages(caplog)
    monkeypatch.undo()

    # Weights the stage-2 command names must match; the message says how the newest candidate differs.
    expected = resolve_config("plain", "tiny", {}, [*STAGE1, f"model.weights={tmp_path / 'other.pt'}"])
    found, why = find_stage1(tmp_path, tiny, "plain", expected, quick=True)
    assert found is None and why == f"the newest plain run, {without}, differs in model.weights: None -> '{tmp_path / 'other.pt'}'"
    caplog.clear()
    run(tiny, tmp_path, "_after_plain", "seed=3", "train.lr_scaling=false")
    (note,) = [m for m in messages(caplog) if "none matches" in m]
    assert f"none matches this split and config (the newest plain run, {without}, differs in seed: 0 -> 3; " \
           "train.lr_scaling: True -> False), so training it first" in note
    # --no-lr-scaling (train.lr_scaling=false) reaches the stage-1 run trained for it.
    (stage1,) = [d for d in (tmp_path / "tiny" / "plain").iterdir() if d not in (with_weights, without)]
    assert manifest(stage1)["lr_scaling"] is False


def test_stage1_inherits_lr_scaling_and_the_speed_only_settings():
    shared = stage1_overrides(["train.lr_scaling=false", "eval.batch_size=64", "log.tensorboard=true", "log.every_steps=0",
                               "eval.protocol=oltr", "eval.open_threshold=0.2", "train.reference_batch_size=4", "train.epochs=2"])
    assert shared == ["train.lr_scaling=false", "eval.batch_size=64", "log.tensorboard=true", "log.every_steps=0"]


def test_macs_are_counted_at_the_image_size_the_network_sees(tiny, tmp_path):
    cost = manifest(run(tiny, tmp_path, "plain", "model.input_size=32"))["model"]  # the images are 16 x 16 (data.image_size)
    assert cost["input"] == [3, 16, 16] and cost["macs_per_image"] == 16 * 16 * 8 * 27 + 8 * 8 * 16 * 72 + 16 * 6


def test_runs_written_before_a_config_key_existed_still_match(tiny, tmp_path):
    """A key added to the defaults later (train.scheduler.name, ...) takes its default value in older runs."""
    import yaml

    stage1 = run(tiny, tmp_path, "plain", base=STAGE1)
    cfg = yaml.safe_load((stage1 / "config.yaml").read_text())
    for key in ("name", "eta_min", "step_at"):
        del cfg["train"]["scheduler"][key]
    (stage1 / "config.yaml").write_text(yaml.safe_dump(cfg))
    stage2 = run(tiny, tmp_path, "_after_plain")
    assert manifest(stage2)["stage1_run"] == str(stage1.resolve())
    # A real difference still counts: the same run is not taken for a cosine stage 1.
    expected = resolve_config("plain", "tiny", {}, [*STAGE1, "train.scheduler.name=cosine"])
    assert find_stage1(tmp_path, tiny, "plain", expected, quick=True)[0] is None
