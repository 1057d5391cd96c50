"""Profiles (issue 14): one config key that sets the numerics; faithful on the named benchmarks,
standard (the keys as set, today's behaviour) elsewhere; recorded in results and shown in reports."""

import json

import pytest

from oltr_bench.config import render, resolve, resolve_config
from oltr_bench.config.schema import PROFILE_SETTINGS, UNRECORDED, comparable, profile_layer, run_profile, shared_with_stage1
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS
from oltr_bench.report.collect import collect
from oltr_bench.report.rows import build_rows
from oltr_bench.report.tables import csv_table, markdown_tables
from tests.report_fixtures import make_run


@pytest.mark.parametrize("dataset", ["imagenet_lt", "places_lt", "ms1m_lt"])
def test_named_benchmarks_are_faithful_by_default(dataset):
    for method in ("plain", "crt", "lws", "dme"):
        cfg = resolve_config(method, dataset, METHODS.get(method).defaults)
        assert cfg.profile == "faithful"
        assert cfg.train.precision == "fp32" and cfg.train.tf32 is False
        assert cfg.train.feature_cache is False and cfg.train.compile is False and cfg.train.channels_last is False


def test_embedded_and_folders_keep_todays_values():
    for dataset in ("embedded", "my_folder_dataset"):
        cfg = resolve_config("plain", dataset, {})
        assert cfg.profile == "standard"
        # exactly the schema's defaults: standard sets nothing
        assert (cfg.train.precision, cfg.train.tf32, cfg.train.channels_last, cfg.train.compile, cfg.train.feature_cache) == \
            ("auto", None, True, False, True)
    # the embedded config is the one written before profiles existed, plus the profile key
    dme = resolve_config("dme", "embedded", METHODS.get("dme").defaults).to_dict()
    assert dme["profile"] == "standard" and dme["train"]["feature_cache"] is True and dme["train"]["tf32"] is None


def test_fast_profile_sets_the_speed_keys_and_set_still_wins():
    cfg = resolve_config("plain", "imagenet_lt", {}, ["profile=fast"])
    assert (cfg.train.precision, cfg.train.tf32, cfg.train.channels_last, cfg.train.compile, cfg.train.feature_cache) == \
        ("bf16", True, True, True, True)
    # a --set after the profile wins, whatever its place on the command line
    cfg = resolve_config("plain", "imagenet_lt", {}, ["train.compile=false", "profile=fast"])
    assert cfg.train.compile is False and cfg.train.precision == "bf16"
    resolved = resolve("plain", "imagenet_lt", {}, ["profile=fast"])
    assert resolved.origins["train.precision"] == "profile fast"
    assert "[profile fast]" in render(resolved)


def test_unknown_profile_fails_naming_the_choices():
    with pytest.raises(OltrError, match="profile 'turbo' is not known; expected one of: standard, faithful, fast"):
        resolve_config("plain", "embedded", {}, ["profile=turbo"])
    with pytest.raises(OltrError, match="not known"):
        profile_layer("turbo")


def test_profile_is_shared_with_stage1_and_changes_the_config():
    assert shared_with_stage1(["profile"]) and shared_with_stage1(["train", "tf32"])
    a = resolve_config("plain", "imagenet_lt", {}).to_dict()
    b = resolve_config("plain", "imagenet_lt", {}, ["profile=fast"]).to_dict()
    assert comparable(a) != comparable(b)


def test_every_profile_key_exists_in_the_schema():
    for profile, settings in PROFILE_SETTINGS.items():
        cfg = resolve_config("plain", "embedded", {}, [f"profile={profile}"]).to_dict()
        for dotted, value in settings.items():
            node = cfg
            for part in dotted.split("."):
                node = node[part]
            assert node == value


def test_run_profile_of_old_and_bare_runs():
    assert run_profile({"method": "plain"}) == "standard"  # written before profiles: its keys as set
    assert run_profile({"profile": "fast"}) == "fast"
    assert run_profile(None) == UNRECORDED


def test_reports_show_the_profile_and_mark_fast(tmp_path):
    make_run(tmp_path, method="plain", seed=0, profile="faithful", metrics={"top1": 0.3, "open_f1": 0.2})
    make_run(tmp_path, method="plain", seed=0, lr=0.2, profile="fast", metrics={"top1": 0.31, "open_f1": 0.21})
    old = make_run(tmp_path, method="dme", seed=0, metrics={"top1": 0.4, "open_f1": 0.3})  # before profiles
    rows = {r.method + "/" + str(r.profile): r for r in build_rows(collect([tmp_path]))}
    assert set(rows) == {"plain/faithful", "plain/fast", "dme/standard"}
    assert rows["plain/fast"].fast and rows["plain/fast"].display_name.endswith("(fast)")
    assert not rows["plain/faithful"].fast
    text = markdown_tables(list(rows.values()))
    assert "| Seeds | Profile | Many |" in text.splitlines()[2]
    lines = {l.split("|")[1].strip(): [c.strip() for c in l.strip("|").split("|")] for l in text.splitlines() if l.startswith("| ")}
    assert lines["dme"][8] == "standard"
    fast = next(v for k, v in lines.items() if k.startswith("plain") and "(fast)" in k)
    assert fast[8] == "fast"
    assert ",fast," in csv_table(list(rows.values()))
    # a results file alone (no config, no recorded profile) is unrecorded
    results = json.loads((old / "results.json").read_text())
    (tmp_path / "lone.json").write_text(json.dumps(results))
    lone = [r for r in build_rows(collect([tmp_path / "lone.json"]))]
    assert lone[0].profile == UNRECORDED
