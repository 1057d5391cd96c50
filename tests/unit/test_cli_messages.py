"""Messages through stdlib logging (-q / -v), and the resolved config printed by run --print-config."""

from __future__ import annotations

import logging

import pytest
import yaml


def test_print_config_needs_no_split_and_names_each_values_origin(cli):
    out = cli("run", "--method", "dme", "--dataset", "imagenet_lt", "--print-config", "--set", "seed=3").stdout
    cfg = yaml.safe_load(out)
    assert cfg["method"] == "dme" and cfg["dataset"] == "imagenet_lt" and cfg["seed"] == 3
    assert cfg["train"]["epochs"] == 60 and cfg["model"]["backbone"] == "resnet10"
    lines: dict[str, str] = {}
    for line in out.splitlines():
        if not line.startswith("#"):
            lines.setdefault(line.split(":")[0].strip(), line)  # the first: train.epochs comes before quick.epochs
    assert "[imagenet_lt/dme.yaml]" in lines["epochs"] and "[imagenet_lt/_base.yaml]" in lines["backbone"]
    assert "[--set seed=3]" in lines["seed"] and "[defaults]" in lines["momentum"]
    assert "SGD momentum" in lines["momentum"]  # the key's meaning, from the schema


def test_print_config_of_an_unknown_dataset_says_which_configs_stand_in(cli):
    out = cli("run", "--method", "plain", "--dataset", "my_flowers", "--print-config").stdout
    assert "# note: no configs for dataset 'my_flowers'; using the generic" in out
    assert yaml.safe_load(out)["model"]["backbone"] == "resnet10"


def test_bad_print_config_override_is_a_one_line_error(cli):
    result = cli("run", "--method", "plain", "--print-config", "--set", "train.epochs=x", ok=False)
    assert result.exit_code == 2 and "train.epochs must be an integer" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("flags, info, debug", [((), True, False), (("-q",), False, False), (("-v",), True, True)])
def test_quiet_and_verbose_choose_what_reaches_stderr(cli, flags, info, debug):
    from oltr_bench.cli import main

    @main.command("_say", hidden=True)
    def say():
        log = logging.getLogger("oltr_bench.test")
        log.debug("a debug line")
        log.info("an info line")
        log.warning("a warning line")

    try:
        result = cli(*flags, "_say")
    finally:
        main.commands.pop("_say")
    assert ("an info line" in result.stderr) is info
    assert ("debug: a debug line" in result.stderr) is debug
    assert "warning: a warning line" in result.stderr and result.stdout == ""


def test_quiet_and_verbose_together_are_refused(cli):
    result = cli("-q", "-v", "methods", ok=False)
    assert result.exit_code == 2 and "give --quiet or --verbose, not both" in result.output
