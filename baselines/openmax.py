r"""OpenMax (Bendale & Boult, CVPR 2016) on the plain model's logits.

Fitting, on the training split (``fit``):

1. Activation vectors v = logits. For each class c, the mean activation vector (MAV) μ_c is the
   mean of v over the training samples of c that the model classifies correctly
   (argmax v = c).
2. Their distances to the MAV, ``eucos(μ, v) = ‖μ - v‖₂/200 + (1 - cos(μ, v))``.
3. A Weibull model per class from the ``tail_size`` largest distances, libMR ``fit_high``
   semantics (:mod:`oltr_bench.models.weibull`; translate amount 1 by default).

Recalibration of a query v (``predict``):

.. math::

    a_{r(c)} = \frac{\alpha + 1 - r(c)}{\alpha} \text{ for the top } \alpha \text{ classes (rank } r = 1..\alpha\text{), else } 0,
    \qquad \hat v_c = v_c\,(1 - a_c\,w_c), \qquad \hat v_0 = \sum_c (v_c - \hat v_c),

    P(c) = \frac{e^{\hat v_c}}{e^{\hat v_0} + \sum_j e^{\hat v_j}}, \quad
    P(\text{unknown}) = \frac{e^{\hat v_0}}{e^{\hat v_0} + \sum_j e^{\hat v_j}},

with w_c = ``w_score``\ :sub:`c`\ (eucos(μ_c, v)) (the Weibull CDF). The prediction is the
argmax over the C + 1 classes, -1 for the unknown class.

Paper: A. Bendale, T. E. Boult, "Towards Open Set Deep Networks", CVPR 2016,
https://arxiv.org/abs/1511.06233. Official implementation: abhijitbendale/OSDN @ c13b769,
``compute_openmax.py`` (``ALPHA_RANK = 10``, ``WEIBULL_TAIL_SIZE = 20``), ``evt_fitting.py``,
``openmax_utils.py``, ``preprocessing/compute_distances.py``, with libMR (Vastlab/libMR). OLTR's baseline run: zhmiao/OpenLongTailRecognition-OLTR @ 8b0e1a9,
``run_openmax.py`` (deleted in 9c683f6).

Where the code is followed rather than the paper (every public implementation does):

- weights (α + 1 - i)/α and the Weibull CDF; the paper's Algorithm 2 prints (α - i)/α and
  the survival function;
- activation vectors are logits, one "channel" (OSDN averages 10 crops);
- eucos divides the Euclidean part by 200. ``distance`` may also be ``"cosine"`` or
  ``"euclidean"`` (plain Euclidean on both sides; OSDN divides the query's Euclidean distance
  by 200 but not the training ones).

Where OLTR's ``run_openmax.py`` is followed (OSDN would crash or explode):

- an invalid Weibull fit (one correct sample, a tail of one value or of equal values) makes
  libMR return -9999; the w-score is clamped at 0, so that class is not recalibrated;
- a class with no correctly classified training sample has no model: its logit is kept *and*
  added in full to the unknown activation (OLTR's quirk, kept as the reference behaviour);
- ``tail_size`` takes the ``tail_size`` largest distances like ``sorted(d)[-tail_size:]``:
  0 or more than the class's correct samples means all of them.

Our definitions: classes are ranked by their logits (OLTR ranks by softmax, same order), ties to
the lower class index (``np.argsort()[::-1]`` would put the higher index first for small
arrays; an unstable sort makes it arbitrary); an α larger than C weights the C classes with the
first C weights; an unknown/known tie in the final argmax goes to the known class; the cosine
distance to a zero vector is 1 (scipy gives NaN). Probabilities use logsumexp (the OLTR code
exponentiates unstabilised sums). Train activation vectors come from the evaluation transform
(OLTR saved logits from its training loader). All of OpenMax runs in float64; its outputs are
float64.

Outputs of ``predict``: ``pred`` (argmax over C + 1, -1 = unknown), ``probs`` = the C
known-class probabilities renormalised to sum to 1 (softmax of the revised activations,
P(c | known)), and ``known_score`` = 1 - P(unknown).

Hyper-parameters: tail size η = 20 and α = 10 by default (OSDN's defaults and the paper's η;
OLTR's code defaulted to tail 5, α 10 and grid-searched both on the *test* F-measure).
``tune: true`` picks them on the validation split, which has no open samples, by this rule:
among the grid configurations whose validation accuracy (rejections counted as errors) is at
most ``tune_max_accuracy_drop`` below the closed-set accuracy of the logits, take the one that
rejects the most validation samples (ties: higher accuracy, then grid order). It is the most
aggressive recalibration that costs at most that much known-class accuracy. If every grid
configuration costs more, the one with the highest validation accuracy is taken (ties: grid
order).

Differences from the OLTR code (``run_openmax.py``) and the named option that follows it:

- tail size 20 (OSDN's and the paper's) by default; OLTR's code defaulted to tail 5, α 10.
  ``params.setting: oltr`` uses tail 5 and α 10 (:data:`SETTINGS`; it overrides ``tail_size`` and
  ``alpha_rank``); ``setting: osdn`` (the default) takes them from ``params``;
- OLTR grid-searched tail size and α on the *test* F-measure; we never look at the test split.
  ``tune: true`` searches a grid on the validation split instead (with either setting; it then
  replaces the setting's tail size and α);
- OLTR took training activation vectors from its training loader (augmented); ours come from the
  evaluation transform; classes are ranked by logits, not softmax (the same order).

Memory: OpenMax works on the C-dimensional logits, so fitting holds N x C training logits and a
C x C table of mean activation vectors; a run whose estimate exceeds the machine's memory
(MS1M-LT: ~74.5K classes) is refused when the method is built, before any work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oltr_bench.method import DatasetInfo, EngineContext, Method
from oltr_bench.errors import OltrError
from oltr_bench.models.weibull import INVALID_SCORE, fit_high, weibull_cdf
from oltr_bench.registry import METHODS

DISTANCES = ("eucos", "euclidean", "cosine")
SETTINGS: dict[str, dict[str, int] | None] = {
    "osdn": None,  # tail_size and alpha_rank from params (defaults: the OpenMax paper's 20 and OSDN's 10)
    "oltr": {"tail_size": 5, "alpha_rank": 10},  # OLTR's run_openmax.py defaults (tailsize = 5, alpharank = 10)
}
_CHUNK = 1024  # query rows per distance computation


def fit_memory_bytes(info: DatasetInfo) -> int:
    """Memory fitting needs at least: the training logits as float32 outputs and their float64 copy
    (12 bytes per sample and class) and the [C, C] float64 table of mean activation vectors."""
    n, c = sum(info.train_counts), info.num_classes
    return 12 * n * c + 8 * c * c


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no guard
        return None


def distances_to_means(v: np.ndarray, means: np.ndarray, kind: str = "eucos") -> np.ndarray:
    """Distance of every row of ``v`` [..., C] to the matching row of ``means`` [..., C] (float64)."""
    euclid = np.sqrt(((v - means) ** 2).sum(-1))
    if kind == "euclidean":
        return euclid
    tiny = np.finfo(np.float64).tiny
    norms = np.maximum(np.linalg.norm(v, axis=-1), tiny) * np.maximum(np.linalg.norm(means, axis=-1), tiny)
    cosine = 1.0 - (v * means).sum(-1) / norms
    if kind == "cosine":
        return cosine
    if kind == "eucos":
        return euclid / 200.0 + cosine
    raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")


@dataclass
class OpenMaxModel:
    """Per-class MAVs and Weibull parameters (float64); ``has_model`` False = no correct sample."""

    mav: np.ndarray  # [C, C]
    has_model: np.ndarray  # [C] bool
    scale: np.ndarray  # [C]
    shape: np.ndarray  # [C]
    small_score: np.ndarray  # [C]
    valid: np.ndarray  # [C] bool (libMR fit succeeded)
    translate_amount: float
    distance: str

    def to_state(self) -> dict[str, Any]:
        return {
            "mav": torch.from_numpy(self.mav),
            "has_model": torch.from_numpy(self.has_model),
            "scale": torch.from_numpy(self.scale),
            "shape": torch.from_numpy(self.shape),
            "small_score": torch.from_numpy(self.small_score),
            "valid": torch.from_numpy(self.valid),
            "translate_amount": self.translate_amount,
            "distance": self.distance,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "OpenMaxModel":
        arrays = {k: state[k].numpy() for k in ("mav", "has_model", "scale", "shape", "small_score", "valid")}
        return cls(**arrays, translate_amount=float(state["translate_amount"]), distance=str(state["distance"]))


def fit_openmax(
    logits: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    tail_size: int,
    translate_amount: float = 1,
    distance: str = "eucos",
) -> OpenMaxModel:
    """MAVs of the correctly classified training logits and a libMR ``fit_high`` per class."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    correct = logits.argmax(1) == labels
    c = logits.shape[1]
    mav = np.zeros((num_classes, c))
    has_model = np.zeros(num_classes, dtype=bool)
    params = np.zeros((num_classes, 3))
    valid = np.zeros(num_classes, dtype=bool)
    for k in range(num_classes):
        members = logits[correct & (labels == k)]
        if len(members) == 0:
            continue
        has_model[k] = True
        mav[k] = members.mean(0)
        d = distances_to_means(members, mav[k][None, :], distance)
        tail = len(d) if tail_size == 0 else min(tail_size, len(d))
        weibull = fit_high(d, tail, translate_amount)
        params[k] = (weibull.scale, weibull.shape, weibull.small_score)
        valid[k] = weibull.valid
    return OpenMaxModel(
        mav, has_model, params[:, 0], params[:, 1], params[:, 2], valid, float(translate_amount), distance
    )


def openmax_recalibrate(logits: np.ndarray, model: OpenMaxModel, alpha_rank: int) -> dict[str, np.ndarray]:
    """``alpha_weights`` a, ``w_scores`` w, revised activations v̂ [N, C] and ``unknown`` v̂₀ [N] (float64)."""
    v = np.asarray(logits, dtype=np.float64)
    weights = np.zeros_like(v)
    w_scores = np.zeros_like(v)
    k = min(max(alpha_rank, 0), v.shape[1])
    if k > 0:
        top = np.argsort(-v, axis=1, kind="stable")[:, :k]
        ranks = np.arange(1, k + 1)
        np.put_along_axis(weights, top, np.broadcast_to((alpha_rank + 1 - ranks) / alpha_rank, top.shape), axis=1)
        z = np.empty(top.shape)
        for i in range(0, len(v), _CHUNK):  # bounds the [rows, α, C] temporary
            rows = slice(i, i + _CHUNK)
            z[rows] = distances_to_means(v[rows, None, :], model.mav[top[rows]], model.distance)
        z = z + model.translate_amount - model.small_score[top]
        valid = model.valid[top]
        cdf = weibull_cdf(z, np.where(valid, model.scale[top], 1.0), np.where(valid, model.shape[top], 1.0))
        w = np.where(valid, cdf, INVALID_SCORE)
        np.put_along_axis(w_scores, top, np.maximum(w, 0.0), axis=1)
    revised = np.where(model.has_model, v * (1.0 - weights * w_scores), v)
    unknown = np.where(model.has_model, v - revised, v).sum(1)
    return {"alpha_weights": weights, "w_scores": w_scores, "revised": revised, "unknown": unknown}


def openmax_outputs(logits: np.ndarray, model: OpenMaxModel, alpha_rank: int) -> dict[str, np.ndarray]:
    """``pred`` (-1 = unknown), ``probs`` (C+1, unknown last), ``known_probs`` (renormalised) and ``known_score``."""
    r = openmax_recalibrate(logits, model, alpha_rank)
    revised, unknown = r["revised"], r["unknown"]
    everything = np.concatenate([revised, unknown[:, None]], axis=1)
    log_norm = np.logaddexp.reduce(everything, axis=1, keepdims=True)
    log_known = np.logaddexp.reduce(revised, axis=1)
    pred = everything.argmax(1)
    pred[pred == revised.shape[1]] = -1
    return {
        "pred": pred,
        "probs": np.exp(everything - log_norm),
        "known_probs": np.exp(revised - log_known[:, None]),
        "known_score": np.exp(-np.logaddexp(0.0, unknown - log_known)),
    }


def choose_setting(tuning: list[dict[str, float]], floor: float) -> tuple[dict[str, float], bool]:
    """The tuning rule of the module docstring over the grid's validation records, and whether any was feasible.

    Among the records with ``accuracy >= floor`` the highest ``reject_rate`` (ties: higher accuracy,
    then grid order); with none, the highest accuracy (ties: grid order).
    """
    order = {id(t): i for i, t in enumerate(tuning)}
    feasible = [t for t in tuning if t["accuracy"] >= floor]
    if feasible:
        return max(feasible, key=lambda t: (t["reject_rate"], t["accuracy"], -order[id(t)])), True
    return max(tuning, key=lambda t: (t["accuracy"], -order[id(t)])), False


@METHODS.register("openmax")
class OpenMax(Method):
    """OpenMax on the plain model: per-class Weibull fits of logit distances, an extra unknown class."""

    stage = 2
    init_from = "plain"
    trains = False
    frozen_backbone = True
    defaults: dict[str, Any] = {
        "setting": "osdn",
        "tail_size": 20,
        "alpha_rank": 10,
        "distance": "eucos",
        "translate_amount": 1,
        "tune": False,
        "tune_tail_sizes": [5, 10, 20, 40],
        "tune_alpha_ranks": [1, 2, 5, 10],
        "tune_max_accuracy_drop": 0.01,
    }

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        if params["distance"] not in DISTANCES:
            raise OltrError(
                f"openmax: params.distance must be one of {', '.join(DISTANCES)}, got {params['distance']!r}"
            )
        if params["setting"] not in SETTINGS:
            raise OltrError(f"openmax: params.setting must be one of {', '.join(SETTINGS)}, got {params['setting']!r}")
        for key in ("tail_size", "alpha_rank"):
            if int(params[key]) < 0:
                raise OltrError(f"openmax: params.{key} must be >= 0, got {params[key]}")
        needed, available = fit_memory_bytes(info), physical_memory_bytes()
        if available is not None and needed > available:
            raise OltrError(
                f"openmax: fitting needs about {needed / 2**30:.0f} GiB ({sum(info.train_counts)} training logits over "
                f"{info.num_classes} classes and a {info.num_classes} x {info.num_classes} table of mean activation "
                f"vectors), more than this machine's {available / 2**30:.0f} GiB. OpenMax works on logits and does not "
                "scale to this many classes (the OLTR paper does not run it on MS1M-LT)"
            )
        chosen = SETTINGS[params["setting"]] or params
        self.tail_size = int(chosen["tail_size"])
        self.alpha_rank = int(chosen["alpha_rank"])
        self.model: OpenMaxModel | None = None
        self.tuning: list[dict[str, float]] = []

    def _fit(self, logits: np.ndarray, labels: np.ndarray, tail_size: int) -> OpenMaxModel:
        return fit_openmax(
            logits,
            labels,
            self.info.num_classes,
            tail_size,
            float(self.params["translate_amount"]),
            self.params["distance"],
        )

    def fit(self, ctx: EngineContext) -> None:
        train = ctx.outputs("train")
        logits, labels = train["logits"].double().numpy(), train["labels"].numpy()
        if self.params["tune"]:
            self._tune(ctx, logits, labels)
        self.model = self._fit(logits, labels, self.tail_size)
        ctx.log(
            f"openmax: tail_size={self.tail_size} alpha_rank={self.alpha_rank}; "
            f"{int(self.model.has_model.sum())} classes modelled, {int((self.model.has_model & ~self.model.valid).sum())} invalid fits"
        )

    def _tune(self, ctx: EngineContext, logits: np.ndarray, labels: np.ndarray) -> None:
        val = ctx.outputs("val")
        val_logits, val_labels = val["logits"].double().numpy(), val["labels"].numpy()
        closed = float((val_logits.argmax(1) == val_labels).mean())
        floor = closed - float(self.params["tune_max_accuracy_drop"])
        self.tuning = []
        for tail in self.params["tune_tail_sizes"]:
            model = self._fit(logits, labels, int(tail))
            for alpha in self.params["tune_alpha_ranks"]:
                pred = openmax_outputs(val_logits, model, int(alpha))["pred"]
                self.tuning.append(
                    {
                        "tail_size": int(tail),
                        "alpha_rank": int(alpha),
                        "accuracy": float((pred == val_labels).mean()),
                        "reject_rate": float((pred == -1).mean()),
                    }
                )
        best, feasible = choose_setting(self.tuning, floor)
        if not feasible:
            ctx.log(f"openmax: no grid setting keeps validation accuracy >= {floor:.4f}; taking the most accurate one "
                    f"({best['accuracy']:.4f})")
        self.tail_size, self.alpha_rank = best["tail_size"], best["alpha_rank"]

    def predict(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.model is None:
            raise RuntimeError("openmax: predict() before fit()")
        logits = outputs["logits"]
        out = openmax_outputs(logits.detach().double().cpu().numpy(), self.model, self.alpha_rank)
        return {
            "probs": torch.from_numpy(out["known_probs"]).to(logits.device),
            "pred": torch.from_numpy(out["pred"]).to(logits.device),
            "known_score": torch.from_numpy(out["known_score"]).to(logits.device),
        }

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "tail_size": self.tail_size,
            "alpha_rank": self.alpha_rank,
            "tuning": list(self.tuning),
        }
        if self.model is not None:
            state["model"] = self.model.to_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tail_size, self.alpha_rank = int(state["tail_size"]), int(state["alpha_rank"])
        self.tuning = list(state.get("tuning", []))
        self.model = OpenMaxModel.from_state(state["model"]) if "model" in state else None
