"""The run configuration: one typed schema, its defaults, and every rule about its values.

A run's config is a :class:`RunConfig`: typed sections (``model``, ``data``, ``train``, ``eval``,
``log``, ``quick``) of dataclasses whose field defaults are the defaults of every key, plus the
method's ``params`` (checked against the method's own ``defaults``). Each field's metadata says:

- ``help``: what it means (``oltr-bench run --print-config`` shows it);
- ``check``: the rule its value must follow (:func:`positive`, :func:`at_least`, :func:`one_of`,
  :func:`within`), applied by :meth:`RunConfig.validate`;
- ``neutral``: it changes speed or logging, never results, so it is ignored when ``--resume``
  and the stage-1 lookup compare configs (:func:`comparable`);
- ``stage1``: a stage-2 command's ``--set`` of it also applies to the stage-1 run it may train
  (:func:`stage1_overrides`): the data, the backbone and the numerics are shared; a stage's
  schedule, learning rates, sampler and ``params`` are its own.

Names backed by a registry (methods, backbones) are checked by that registry when the run is
built; everything else about a value is checked here.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from oltr_bench.errors import OltrError
from oltr_bench.protocols import DEFAULT_THRESHOLD, PROTOCOLS

PIPELINES = ("embedded", "parity", "fast")
DECODERS = ("cpu", "device")
SAMPLERS = ("instance", "class_aware")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("step", "cosine")
STEP_AT = ("epoch_end", "epoch_start")

PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    # The config's own values: every run before profiles existed; the default on the embedded
    # benchmark and image folders (their results stay what they were).
    "standard": {},
    # The official protocol's numerics: fp32 without autocast and without TF32, no torch.compile,
    # and no feature cache, so frozen-backbone stages train as the official code does (train-mode
    # BatchNorm, a new augmentation every epoch: cRT, LWS, Places-LT DME). The default on
    # imagenet_lt, places_lt and ms1m_lt (their _base.yaml).
    "faithful": {"train.precision": "fp32", "train.tf32": False, "train.channels_last": False, "train.compile": False,
                 "train.feature_cache": False},
    # Speed first: bf16 autocast, TF32, channels-last, torch.compile and the feature cache. Results
    # differ from the protocol's by the amounts in BENCHMARKS.md ("Issue 14"); reports mark them.
    "fast": {"train.precision": "bf16", "train.tf32": True, "train.channels_last": True, "train.compile": True,
             "train.feature_cache": True},
}
PROFILES = tuple(PROFILE_SETTINGS)
UNRECORDED = "unrecorded"
"""The profile of a results file that has neither a run directory nor a recorded profile."""

Check = Callable[[str, Any], None]


def positive(key: str, value: Any) -> None:
    if value < 1:
        raise OltrError(f"{key} must be a positive integer, found {value!r}")


def at_least(minimum: int, what: str = "") -> Check:
    def check(key: str, value: Any) -> None:
        if value < minimum:
            raise OltrError(f"{key} must be at least {minimum}{what}, found {value!r}")
    return check


def one_of(*choices: Any) -> Check:
    def check(key: str, value: Any) -> None:
        if value not in choices:
            shown = ", ".join(str(c) for c in choices if c is not None)
            raise OltrError(f"{key} {value!r} is not known; expected one of: {shown}" + (" (or null)" if None in choices else ""))
    return check


def within(low: float, high: float, what: str = "") -> Check:
    def check(key: str, value: Any) -> None:
        if not low <= value <= high:
            raise OltrError(f"{key} must be in [{low:g}, {high:g}]{what}, found {value!r}")
    return check


def opt(default: Any, help: str, *, check: Check | None = None, neutral: bool = False, stage1: bool = False) -> Any:
    """A config field: its default and metadata (see the module docstring)."""
    meta = {"help": help, "check": check, "neutral": neutral, "stage1": stage1}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, help: str, *, stage1: bool = False) -> Any:
    return field(default_factory=cls, metadata={"help": help, "check": None, "neutral": False, "stage1": stage1})


@dataclass
class ModelConfig:
    backbone: str = opt("glyphnet", "glyphnet (embedded) | resnet10 | resnet50 | resnet152 | timm:NAME (a timm model, optional extra; local weights only)", stage1=True)
    widths: list[int] | None = opt(None, "glyphnet channel widths (null = 32-64-128-256)", stage1=True)
    input_size: int = opt(32, "network input side in pixels", check=positive, stage1=True)
    feat_dim: int | None = opt(128, "size of the fc_add feature (null/0 = no fc_add, use the pooled map)")
    weights: str | None = opt(None, "local file with pretrained backbone weights (never downloaded)", stage1=True)


@dataclass
class DataConfig:
    pipeline: str = opt("embedded", "embedded | parity (the official OLTR transforms) | fast (uint8 crops, jitter on the device)",
                        check=one_of(*PIPELINES), stage1=True)
    decode: str = opt("cpu", "fast pipeline: cpu (loader workers) | device (batched torchvision.io.decode_jpeg, nvJPEG on CUDA)",
                      check=one_of(*DECODERS), stage1=True)
    image_size: int = opt(32, "crop size fed to the network", check=positive, stage1=True)
    resize: int = opt(32, "eval: resize shorter side to this, then center-crop image_size", check=positive, stage1=True)
    sampler: str | None = opt(None, "null = the method's own; instance | class_aware", check=one_of(None, *SAMPLERS))
    samples_per_class: int = opt(4, "class-aware sampler: images per drawn class", check=positive)
    workers: int = opt(2, "data-loading processes (0 = in the main process)",
                       check=at_least(0, " (0 loads in the main process)"), neutral=True, stage1=True)
    image_cache: str | None = opt(None, "directory for the pre-resized uint8 image cache (null = decode the files every epoch)",
                                  stage1=True)
    image_cache_side: int = opt(256, "image cache: shorter side in pixels (larger images are resized down)", check=positive,
                                stage1=True)
    skip_corrupt: bool = opt(False, "true: skip unreadable images and count them in the manifest (default: fail naming the file)",
                             stage1=True)


@dataclass
class LearningRates:
    features: float = opt(0.05, "backbone learning rate (for train.reference_batch_size)")
    classifier: float = opt(0.05, "head learning rate (for train.reference_batch_size)")


@dataclass
class SchedulerConfig:
    name: str = opt("step", "step (StepLR, OLTR) | cosine (CosineAnnealingLR over train.epochs, classifier-balancing/BALMS)",
                    check=one_of(*SCHEDULES))
    step_size: int = opt(10, "step: decay every step_size epochs", check=at_least(1))
    gamma: float = opt(0.1, "step: decay factor")
    eta_min: float = opt(0.0, "cosine: the final learning rate")
    step_at: str = opt("epoch_end", "epoch_end (OLTR) | epoch_start (classifier-balancing/BALMS: epoch e runs at the lr after e steps)",
                       check=one_of(*STEP_AT))


@dataclass
class TrainConfig:
    epochs: int = opt(20, "training epochs", check=positive)
    batch_size: int = opt(128, "global batch (all processes together)", check=positive, stage1=True)
    reference_batch_size: int = opt(128, "the lr values are for this global batch; other batches scale lr linearly", check=positive)
    lr_scaling: bool = opt(True, "scale the learning rates linearly with batch_size / reference_batch_size", stage1=True)
    lr: LearningRates = section(LearningRates, "SGD learning rates per part")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(0.0005, "SGD weight decay")
    scheduler: SchedulerConfig = section(SchedulerConfig, "stepped once per epoch (oltr_bench/engine/schedule.py)")
    precision: str = opt("auto", "auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16", check=one_of(*PRECISIONS), stage1=True)
    channels_last: bool = opt(True, "channels-last memory format for model and images", stage1=True)
    tf32: bool | None = opt(None, "TF32 in CUDA matmuls and cuDNN convolutions (null = PyTorch's defaults; false: exact fp32)",
                            stage1=True)
    compile: bool = opt(False, "torch.compile the model (minutes of compilation; pays off on long GPU runs)", stage1=True)
    sync_bn: bool = opt(True, "multi-process runs: BatchNorm statistics over the global batch (results independent of the "
                              "process count)", stage1=True)
    feature_cache: bool = opt(True, "frozen-backbone stages train on cached backbone outputs (eval-mode BatchNorm; see the manifest)")
    ddp_find_unused: bool = opt(False, "DistributedDataParallel find_unused_parameters (methods with parameters unused in some steps)")


@dataclass
class EvalConfig:
    batch_size: int = opt(512, "evaluation batch", check=positive, neutral=True, stage1=True)
    # The engine's methods score known-ness in [0, 1] (max p, 1 - P(unknown)).
    open_threshold: float = opt(DEFAULT_THRESHOLD, "τ on the known score", check=within(0.0, 1.0, " (τ on the known score)"))
    protocol: str = opt("oltr", "shot thresholds and F-measure rule (SPEC.md §3)", check=one_of(*PROTOCOLS))


@dataclass
class LogConfig:
    every_steps: int = opt(50, "a step record in train_log.jsonl every N steps (0 = epoch records only)", check=at_least(0),
                           neutral=True, stage1=True)
    tensorboard: bool = opt(False, "also write TensorBoard scalars to <run>/tensorboard (needs the tensorboard package)",
                            neutral=True, stage1=True)


@dataclass
class QuickConfig:
    train_per_class: int = opt(8, "--quick: training images per class", check=positive)
    eval_per_class: int = opt(2, "--quick: val and test images per class", check=positive)
    open_images: int = opt(32, "--quick: open-set images", check=positive)
    epochs: int = opt(1, "--quick: at most this many epochs", check=positive)
    max_steps: int = opt(4, "--quick: at most this many steps per epoch", check=positive)


@dataclass
class RunConfig:
    """The resolved config of one run (``config.yaml``)."""

    method: str = opt("plain", "registered method (oltr-bench methods)")
    dataset: str = opt("embedded", "the split's dataset")
    profile: str = opt("standard", "standard (the keys as set) | faithful (the official numerics: fp32, no TF32, no compile, "
                                   "no feature cache) | fast (bf16, TF32, channels-last, compile, feature cache); a profile "
                                   "sets its train.* keys before --set applies (PROFILE_SETTINGS)",
                       check=one_of(*PROFILES), stage1=True)
    seed: int = opt(0, "seed of training (sampling, initialisation, augmentation)", stage1=True)
    model: ModelConfig = section(ModelConfig, "the backbone", stage1=True)
    data: DataConfig = section(DataConfig, "input pipeline and sampling", stage1=True)
    train: TrainConfig = section(TrainConfig, "optimisation")
    eval: EvalConfig = section(EvalConfig, "evaluation")
    log: LogConfig = section(LogConfig, "training log", stage1=True)
    quick: QuickConfig = section(QuickConfig, "--quick: the same code path on a tiny subset")
    params: dict[str, Any] = opt({}, "method-specific hyper-parameters (see each method's defaults)")

    # -- conversion ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "config") -> "RunConfig":
        """The typed config of a resolved mapping; every key must exist and have its type."""
        return _build(cls, data, "", origin)

    def to_dict(self) -> dict[str, Any]:
        """The mapping saved as ``config.yaml`` and hashed (keys in schema order)."""
        return dataclasses.asdict(self)

    def validate(self, quick: bool = False) -> None:
        """Every value rule of the schema (the ``quick`` section only matters in a ``--quick`` run)."""
        for key, value, meta in _leaves(self):
            if meta.get("check") is not None and (quick or not key.startswith("quick.")):
                meta["check"](key, value)


# -- the typed tree ------------------------------------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(tp: Any) -> tuple[Any, bool]:
    """``(inner type, whether None is allowed)`` of a field type (``X | None`` -> ``(X, True)``)."""
    args = typing.get_args(tp)
    if type(None) in args and typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in args if a is not type(None)), True
    return tp, False


def _type_name(tp: Any) -> str:
    inner, nullable = _optional(tp)
    base = typing.get_origin(inner) or inner
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a mapping", list: "a list of integers"}
    return names.get(base, str(base)) + (" or null" if nullable else "")


def convert(key: str, tp: Any, value: Any, origin: str, default: Any = None) -> Any:
    """``value`` as the field type ``tp`` (an int is a float, PyYAML's '5e-4' string a float)."""
    inner, nullable = _optional(tp)
    if nullable and value is None:
        return None
    base = typing.get_origin(inner) or inner
    ok = False
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif base is str:
        ok = isinstance(value, str)
    elif base is list:
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif base is dict:
        ok = isinstance(value, dict)
    if not ok:
        like = f" (like the default {default!r})" if default is not None else ""
        raise OltrError(f"{origin}: {key} must be {_type_name(tp)}{like}, found {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str, origin: str) -> Any:
    if not isinstance(data, dict):
        raise OltrError(f"{origin}: {prefix.rstrip('.') or 'the config'} must be a mapping, found {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise OltrError(f"{origin}: unknown key {prefix + str(unknown[0])!r}; known keys here: {', '.join(sorted(names))}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            values[f.name] = _build(tp, data[f.name], f"{prefix}{f.name}.", origin)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            values[f.name] = convert(prefix + f.name, tp, data[f.name], origin, default)
    return cls(**values)


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any, dict[str, Any]]]:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value, dict(f.metadata)


def field_info(path: Sequence[str]) -> tuple[Any, dict[str, Any]] | None:
    """(type, metadata) of the field at a dotted path of :class:`RunConfig` (None: no such field;
    keys under ``params`` have no schema here)."""
    cls: Any = RunConfig
    meta: dict[str, Any] = {}
    tp: Any = RunConfig
    for part in path:
        if not dataclasses.is_dataclass(cls):
            return None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return None
        tp, meta = _hints(cls)[part], dict(fields[part].metadata)
        cls = tp
    return tp, meta


def defaults() -> dict[str, Any]:
    """Every key with its default value (what a config file or ``--set`` changes)."""
    return RunConfig().to_dict()


def help_texts() -> dict[str, str]:
    """Dotted key -> help, for every leaf and section (``--print-config``)."""
    out: dict[str, str] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            out[prefix + f.name] = f.metadata.get("help", "")
            tp = _hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")

    walk(RunConfig, "")
    return out


# -- rules between configs -----------------------------------------------------------------------

def _neutral_paths(cls: type = RunConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            sub = _neutral_paths(tp, prefix + (f.name,))
            if sub and len(sub) == len(dataclasses.fields(tp)) and all(len(p) == len(prefix) + 2 for p in sub):
                paths.append(prefix + (f.name,))  # a whole section is neutral
            else:
                paths += sub
        elif f.metadata.get("neutral"):
            paths.append(prefix + (f.name,))
    return paths


NEUTRAL_KEYS = tuple(_neutral_paths())
"""Keys that change speed or logging, never results: ignored when matching stage-1 runs and
when ``--resume`` looks for the run to continue."""


def _fill_missing(node: dict[str, Any], fill: dict[str, Any]) -> None:
    for key, value in fill.items():
        if key not in node:
            node[key] = copy.deepcopy(value)
        elif isinstance(node[key], dict) and isinstance(value, dict):
            _fill_missing(node[key], value)


def comparable(cfg: dict[str, Any], method_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cfg`` (a resolved mapping, perhaps written by an older oltr-bench) without
    :data:`NEUTRAL_KEYS`, and with keys added since it was written filled in with their defaults
    (a run written before ``train.scheduler.name`` existed trained with the default ``step``, so
    it still matches a config that says so); ``method_defaults`` fills ``params``."""
    out = copy.deepcopy(cfg)
    _fill_missing(out, defaults())
    if method_defaults is not None and isinstance(out.get("params"), dict):
        _fill_missing(out["params"], method_defaults)
    for path in NEUTRAL_KEYS:
        node = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def profile_layer(profile: str) -> dict[str, Any]:
    """The nested mapping of the keys ``profile`` sets (:data:`PROFILE_SETTINGS`)."""
    if profile not in PROFILE_SETTINGS:
        raise OltrError(f"profile {profile!r} is not known; expected one of: {', '.join(PROFILES)}")
    out: dict[str, Any] = {}
    for dotted, value in PROFILE_SETTINGS[profile].items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def run_profile(config: dict[str, Any] | None) -> str:
    """The profile of a run from its resolved config: the recorded one; a config written before
    profiles existed used its keys as set, which is ``standard``; no config: :data:`UNRECORDED`."""
    if not isinstance(config, dict):
        return UNRECORDED
    value = config.get("profile", "standard")
    return value if value in PROFILE_SETTINGS else UNRECORDED


def shared_with_stage1(path: Sequence[str]) -> bool:
    """Whether a ``--set`` of the dotted ``path`` on a stage-2 command also applies to its stage-1
    run: the ``stage1`` flag of the field it names (of the section, for a whole section)."""
    info = field_info(path)
    return info is not None and bool(info[1].get("stage1"))
