"""Run configuration: the typed schema (:mod:`~oltr_bench.config.schema`: every key, its default,
type and rule) and its resolution from YAML files and ``--set`` overrides
(:mod:`~oltr_bench.config.loader`). ``oltr-bench run --print-config`` shows a resolved config with
the origin of every value."""

from oltr_bench.config.loader import (
    config_file,
    config_files,
    config_hash,
    configs_dir,
    dump_yaml,
    parse_override,
    read_yaml,
    render,
    resolve,
    resolve_config,
)
from oltr_bench.config.schema import NEUTRAL_KEYS, PROFILES, RunConfig, comparable, run_profile, shared_with_stage1

__all__ = [
    "NEUTRAL_KEYS", "PROFILES", "RunConfig", "comparable", "config_file", "config_files", "config_hash", "configs_dir", "dump_yaml",
    "parse_override", "read_yaml", "render", "resolve", "resolve_config", "run_profile", "shared_with_stage1",
]
