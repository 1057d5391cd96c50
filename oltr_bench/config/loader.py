"""Config files and ``--set`` overrides, resolved into a :class:`~oltr_bench.config.schema.RunConfig`.

Resolution order (later wins), each layer checked against the schema as it is applied (an
unknown key or a wrong type names the file or ``--set`` it came from):

1. the schema's defaults (:mod:`oltr_bench.config.schema`), and the method's ``defaults`` under ``params``;
2. ``baselines/configs/<dataset>/_base.yaml``: the dataset's setup, which is its stage-1 (plain)
   protocol: backbone, input pipeline, schedule. Datasets without a config folder (a user's image
   folder) use ``folder/``;
3. ``baselines/configs/<dataset>/<method>.yaml`` if there is one: only what the method changes;
4. the profile's keys (:data:`~oltr_bench.config.schema.PROFILE_SETTINGS`): ``profile`` as set by
   the files or a ``--set profile=NAME`` (``--profile NAME``); ``standard`` sets nothing, so the
   files' values stand; ``faithful`` (the named benchmarks' default) and ``fast`` set the numerics;
5. ``--set a.b=value`` overrides from the command line (they win over the profile, and the
   profile recorded in ``config.yaml`` says which profile the rest started from).

Keys under ``params`` must be among the method's ``defaults`` and keep their type (an int is
accepted for a float; a null default accepts anything).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterable

import yaml

from oltr_bench.config.schema import RunConfig, convert, defaults, field_info, help_texts, profile_layer
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import loads_yaml

CONFIG_PACKAGE = "oltr_bench.baselines"
BASE = "_base"
GENERIC = "folder"  # the configs of any dataset without its own folder
DEFAULTS = "defaults"


def configs_dir() -> Path:
    return Path(str(files(CONFIG_PACKAGE) / "configs"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise OltrError(f"{path}: cannot read the config file ({exc}); expected UTF-8 YAML") from None
    data = loads_yaml(text, str(path), "a config file (YAML mapping)")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OltrError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def config_file(dataset: str, method: str) -> Path:
    """``baselines/configs/<dataset>/<method>.yaml`` (``method`` ``_base``: the dataset's base)."""
    return configs_dir() / dataset / f"{method}.yaml"


def config_files(dataset: str, method: str) -> tuple[list[Path], str | None]:
    """The files applied for ``method`` on ``dataset`` (base, then the method's own if any) and,
    when the dataset has no configs of its own, a note saying which stand in."""
    folder = dataset if (configs_dir() / dataset).is_dir() else GENERIC
    paths = [config_file(folder, BASE)]
    own = config_file(folder, method)
    if own.is_file():
        paths.append(own)
    note = None if folder == dataset else f"no configs for dataset {dataset!r}; using the generic {configs_dir() / GENERIC}"
    return paths, note


def _check_param_type(key: str, old: Any, new: Any, origin: str) -> Any:
    """A method parameter keeps the type of its default (int accepted for float; null accepts anything)."""
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
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}
    raise OltrError(f"{origin}: {key} must be {kind.get(type(old), type(old).__name__)} (like the default {old!r}), found {new!r}")


def _merge(cfg: dict[str, Any], update: dict[str, Any], origin: str, origins: dict[str, str], prefix: tuple[str, ...] = ()) -> None:
    """Apply ``update`` to ``cfg`` in place, checking every key and type against the schema."""
    for key, value in update.items():
        path = (*prefix, str(key))
        dotted = ".".join(path)
        if path[0] == "params" and len(path) > 1:
            if key not in cfg:
                known = ", ".join(sorted(cfg)) or "(none)"
                raise OltrError(f"{origin}: unknown key {dotted!r}; known keys here: {known}")
            cfg[key] = _check_param_type(dotted, cfg[key], value, origin)
            origins[dotted] = origin
            continue
        info = field_info(path)
        if info is None:
            known = ", ".join(sorted(cfg)) or "(none)"
            raise OltrError(f"{origin}: unknown key {dotted!r}; known keys here: {known}")
        tp, _ = info
        if isinstance(cfg.get(key), dict):
            if not isinstance(value, dict):
                raise OltrError(f"{origin}: {dotted} must be a mapping, found {value!r}")
            _merge(cfg[key], value, origin, origins, path)
        else:
            cfg[key] = convert(dotted, tp, value, origin, cfg[key])
            origins[dotted] = origin


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


def override_layer(text: str) -> dict[str, Any]:
    path, value = parse_override(text)
    update: Any = value
    for part in reversed(path):
        update = {part: update}
    return update


@dataclass
class Resolved:
    """A resolved config and, for each dotted key set by a file or ``--set``, where it came from."""

    config: RunConfig
    origins: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    note: str | None = None


def resolve(method: str, dataset: str, method_defaults: dict[str, Any], overrides: Iterable[str] = (),
            extra_file: Path | None = None) -> Resolved:
    """The config of ``method`` on ``dataset``, with the origin of every value (module docstring)."""
    cfg = defaults()
    cfg["params"] = copy.deepcopy(method_defaults)
    origins: dict[str, str] = {}
    paths, note = config_files(dataset, method)
    if extra_file is not None:
        paths.append(Path(extra_file))
    for path in paths:
        _merge(cfg, read_yaml(path), str(path), origins)
    for text in overrides:  # the profile first: its keys come before every --set
        if parse_override(text)[0] == ["profile"]:
            _merge(cfg, override_layer(text), f"--set {text}", origins)
    _merge(cfg, profile_layer(cfg["profile"]), f"profile {cfg['profile']}", origins)
    for text in overrides:
        _merge(cfg, override_layer(text), f"--set {text}", origins)
    cfg["method"], cfg["dataset"] = method, dataset
    origins["method"] = origins["dataset"] = "the command"
    return Resolved(RunConfig.from_dict(cfg), origins, paths, note)


def resolve_config(method: str, dataset: str, method_defaults: dict[str, Any], overrides: Iterable[str] = (),
                   extra_file: Path | None = None) -> RunConfig:
    """The resolved config of ``method`` on ``dataset`` (see the module docstring for the order)."""
    return resolve(method, dataset, method_defaults, overrides, extra_file).config


def config_hash(cfg: RunConfig | dict[str, Any]) -> str:
    """Short stable hash of a resolved config (key order does not matter)."""
    data = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def dump_yaml(cfg: RunConfig | dict[str, Any]) -> str:
    data = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def render(resolved: Resolved) -> str:
    """The resolved config as YAML, each value commented with its meaning and where it was set
    (``defaults``: the schema or the method's own defaults)."""
    helps = help_texts()
    base = configs_dir()
    layers = " < ".join([DEFAULTS, *(_short(p, base) for p in resolved.files), "profile", "--set"])
    cfg = resolved.config
    lines = [f"# {cfg.method} on {cfg.dataset}: the resolved config (later layers win: {layers})"]
    if resolved.note:
        lines.append(f"# note: {resolved.note}")

    def scalar(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("\n...").strip()

    def walk(node: dict[str, Any], prefix: str, depth: int) -> None:
        for key, value in node.items():
            dotted = prefix + key
            pad = "  " * depth
            if isinstance(value, dict) and value:
                head = f"{pad}{key}:"
                lines.append(head + (f"  # {helps[dotted]}" if helps.get(dotted) else ""))
                walk(value, dotted + ".", depth + 1)
                continue
            origin = resolved.origins.get(dotted)
            where = _short(Path(origin), base) if origin and not origin.startswith(("--set", "profile ")) else (origin or DEFAULTS)
            text = f"{pad}{key}: {scalar(value)}"
            comment = "; ".join(x for x in (helps.get(dotted, ""), f"[{where}]") if x)
            lines.append(f"{text:<44}  # {comment}")

    walk(cfg.to_dict(), "", 0)
    return "\n".join(lines) + "\n"


def _short(path: Path, base: Path) -> str:
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)
