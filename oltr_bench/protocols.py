"""Evaluation protocols: shot-group thresholds and the F-measure's false-positive rule (SPEC.md §3).

| protocol    | many       | medium           | few       | F-measure FP                          |
|-------------|------------|------------------|-----------|---------------------------------------|
| ``oltr``      | n > 100    | 20 <= n <= 100   | n < 20    | known with pred != y, rejections too  |
| ``oltr-2019`` | n > 100    | 20 <= n <= 100   | n < 20    | known with pred != y and pred != -1   |
| ``oltr-code`` | n >= 100   | 20 < n < 100     | n <= 20   | as ``oltr``                             |

``oltr-2019`` is how the paper's F values were computed (OLTR code before 2020-01-29);
``oltr-code`` follows the OLTR repository's ``utils.shot_acc`` after commit 13be118 (2019-08-05).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oltr_bench.errors import OltrError

DEFAULT_THRESHOLD = 0.1  # τ on the known score (max softmax by default), as in the OLTR configs

MANY, MEDIUM, FEW = 0, 1, 2
GROUP_NAMES = ("many", "medium", "few")
# The shot-group boundaries of every protocol (training images of a class); only which side of
# each boundary is inclusive differs between protocols (Protocol.inclusive_bounds).
MANY_THRESHOLD = 100
FEW_THRESHOLD = 20


@dataclass(frozen=True)
class Protocol:
    name: str
    inclusive_bounds: bool  # True: many >= 100, few <= 20 (oltr-code); False: many > 100, few < 20
    rejections_are_fp: bool
    description: str

    def groups(self, train_counts) -> np.ndarray:
        """Shot group (0 many, 1 medium, 2 few) of each class from its training count."""
        n = np.asarray(train_counts)
        if self.inclusive_bounds:
            many, few = n >= MANY_THRESHOLD, n <= FEW_THRESHOLD
        else:
            many, few = n > MANY_THRESHOLD, n < FEW_THRESHOLD
        return np.where(many, MANY, np.where(few, FEW, MEDIUM))

    def group_counts(self, train_counts) -> tuple[int, int, int]:
        """Number of many-, medium- and few-shot classes."""
        groups = self.groups(train_counts)
        return int((groups == MANY).sum()), int((groups == MEDIUM).sum()), int((groups == FEW).sum())

    @property
    def rule(self) -> str:
        """The groups in words, e.g. ``many > 100, few < 20``."""
        if self.inclusive_bounds:
            return f"many ≥ {MANY_THRESHOLD}, few ≤ {FEW_THRESHOLD}"
        return f"many > {MANY_THRESHOLD}, few < {FEW_THRESHOLD}"


PROTOCOLS = {
    "oltr": Protocol("oltr", False, True, "many > 100, few < 20; rejected known samples are F-measure false positives"),
    "oltr-2019": Protocol("oltr-2019", False, False, "paper era: many > 100, few < 20; rejected known samples are not false positives"),
    "oltr-code": Protocol("oltr-code", True, True, "OLTR repository since Aug 2019: many >= 100, few <= 20"),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise OltrError(f"unknown protocol {name!r}; expected one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


# -- Face identification (MS1M-LT, SPEC.md §6) ------------------------------------------------------
# The shot groups of a probe identity, by its images in the MS1M-LT training list (0 = an identity
# never trained on). Many/medium/few keep the object benchmarks' boundaries (> 100, 20..100, < 20);
# one-shot and zero-shot, which the OLTR paper's MS1M-LT table reports separately, are taken out of few.
FACE_GROUPS = ("many", "medium", "few", "one", "zero")
FACE_FARS = ("1e-06", "1e-05", "1e-04", "1e-03")  # the false accept rates of tar_at_far (its keys, exact decimals)
FACE_GROUP_RULES = {"many": "n > 100", "medium": "20 <= n <= 100", "few": "2 <= n < 20", "one": "n = 1", "zero": "n = 0"}


def face_groups(train_counts) -> np.ndarray:
    """Index into :data:`FACE_GROUPS` of each probe identity's training count (``n >= 0``)."""
    n = np.asarray(train_counts, dtype=np.int64)
    return np.select([n > MANY_THRESHOLD, n >= FEW_THRESHOLD, n >= 2, n == 1], [0, 1, 2, 3], default=4)
