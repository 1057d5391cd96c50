"""Run configuration: YAML files per dataset x method, typed ``--set`` overrides, the resolved config.

Resolution order (later wins):

1. ``baselines/configs/defaults.yaml``: every key that exists, with its type;
2. the dataset x method file (:func:`dataset_config`): ``<dataset>/<method>.yaml``; for a
   method without one, the dataset's stage-1 setup ``<dataset>/plain.yaml`` (backbone, input
   pipeline, schedule); datasets without a config folder (a user's image folder) use
   ``folder/`` the same way. The embedded defaults never stand in for a real dataset;
3. the method's ``defaults`` (class attribute) under ``params``, overridden by the YAML's ``params``;
4. ``--set a.b=value`` overrides from the command line.

Keys not in ``defaults.yaml`` (or, under ``params``, not in the method's defaults) are errors,
and an override must have the type of the value it replaces (an int is accepted for a float;
``null`` defaults accept anything). The resolved config is saved as ``config.yaml`` in every run
directory.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterable

import yaml

from oltr_bench.errors import OltrError

CONFIG_PACKAGE = "oltr_bench.baselines"


def configs_dir() -> Path:
    return Path(str(files(CONFIG_PACKAGE) / "configs"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise OltrError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OltrError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def config_file(dataset: str, method: str) -> Path:
    return configs_dir() / dataset / f"{method}.yaml"


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


def _check_type(key: str, old: Any, new: Any, origin: str) -> Any:
    if old is None or new is None:
        return new
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) and isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, (int, float)):
        return float(new)
    elif isinstance(old, float) and isinstance(new, str):
        try:  # PyYAML reads '5e-4' (no dot) as a string
            return float(new)
        except ValueError:
            pass
    elif isinstance(old, int) and isinstance(new, int):
        return new
    elif isinstance(old, (str, list, dict)) and type(new) is type(old):
        return new
    raise OltrError(f"{origin}: {key} must be {_type_name(old)} (like the default {old!r}), found {new!r}")


def merge(base: dict[str, Any], update: dict[str, Any], origin: str, prefix: str = "", open_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys and wrong types are errors.

    Keys listed in ``open_keys`` (dotted) accept new sub-keys (used for ``params``).
    """
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            if prefix.rstrip(".") in open_keys:
                out[key] = value
                continue
            known = ", ".join(sorted(out)) or "(none)"
            raise OltrError(f"{origin}: unknown key {dotted!r}; known keys here: {known}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, origin, f"{dotted}.", open_keys)
        else:
            out[key] = _check_type(dotted, out[key], value, origin)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr.features=0.1"`` -> (["train", "lr", "features"], 0.1); values parse as YAML scalars."""
    if "=" not in text:
        raise OltrError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise OltrError(f"--set {text!r}: {key!r} is not a dotted key like train.epochs")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        update: dict[str, Any] = value
        for part in reversed(path):
            update = {part: update}
        cfg = merge(cfg, update, f"--set {text}")
    return cfg


def dataset_config(dataset: str, method: str) -> tuple[Path | None, str | None]:
    """The dataset x method file to apply and, when it is a stand-in, a note saying so."""
    folder = dataset if (configs_dir() / dataset).is_dir() else "folder"
    exact = config_file(folder, method)
    if exact.is_file():
        note = None if folder == dataset else f"no configs for dataset {dataset!r}; using the generic {exact}"
        return exact, note
    base = config_file(folder, "plain")
    if base.is_file():
        return base, (f"no config for method {method!r} on {dataset!r} ({exact}); using the dataset's stage-1 "
                      f"setup {base} with the method's own defaults")
    return None, f"no config for method {method!r} on {dataset!r}; using defaults.yaml"


def resolve_config(
    method: str, dataset: str, method_defaults: dict[str, Any], overrides: Iterable[str] = (), extra_file: Path | None = None
) -> dict[str, Any]:
    """The resolved config for ``method`` on ``dataset`` (see the module docstring for the order)."""
    defaults_path = configs_dir() / "defaults.yaml"
    cfg = read_yaml(defaults_path)
    cfg["params"] = copy.deepcopy(method_defaults)
    path, _ = dataset_config(dataset, method)
    if path is not None:
        cfg = merge(cfg, read_yaml(path), str(path))
    if extra_file is not None:
        cfg = merge(cfg, read_yaml(extra_file), str(extra_file))
    cfg = apply_overrides(cfg, overrides)
    cfg["method"] = method
    cfg["dataset"] = dataset
    return cfg


def config_hash(cfg: dict[str, Any]) -> str:
    """Short stable hash of a resolved config (key order does not matter)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def dump_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
