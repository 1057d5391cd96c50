"""Every metric of SPEC.md §3 against values computed by hand (in the comments) or by an
independent formula written in the test, never by the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from oltr_bench.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    closed_predictions,
    compute_metrics,
    ece,
    fpr_at_tpr,
    macro_f1,
    open_absorption,
    open_decision,
    open_f1_sweep,
    open_f_measure,
    oscr,
    oscr_points,
    reliability,
    roc_points,
)
from oltr_bench.metrics.openset import downsample

METRIC_KEYS = [
    "top1", "many", "medium", "few", "open_top1", "open_many", "open_medium", "open_few", "open_f1",
    "auroc", "aupr_in", "aupr_out", "fpr95", "oscr", "ece", "macro_f1",
    "open_accept_rate", "open_absorbed_many", "open_absorbed_medium", "open_absorbed_few",
]


def one_hot_logits(pred, num_classes, margin=10.0):
    """Logits whose argmax is ``pred`` (uniform rows where pred is -1)."""
    logits = np.zeros((len(pred), num_classes))
    for i, c in enumerate(pred):
        if c >= 0:
            logits[i, c] = margin
    return logits


# -- protocols and shot groups ------------------------------------------------------------------

# Six classes with 19, 20, 21, 99, 100, 101 training images; each has two test samples and the
# classifier gets 0, 1, 2, 0, 1, 2 of them right: per-class accuracy 0, .5, 1, 0, .5, 1.
EDGE_COUNTS = [19, 20, 21, 99, 100, 101]
EDGE_LABELS = np.repeat(np.arange(6), 2)
EDGE_PRED = np.array([1, 2, 1, 0, 2, 2, 0, 1, 4, 5, 5, 5])  # right for: -, (1), (2,2), -, (4), (5,5)
EDGE_ACC = [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    "protocol, many, medium, few",
    [
        # oltr / oltr-2019: many n > 100, medium 20 <= n <= 100, few n < 20
        ("oltr", [5], [1, 2, 3, 4], [0]),
        ("oltr-2019", [5], [1, 2, 3, 4], [0]),
        # oltr-code: many n >= 100, medium 20 < n < 100, few n <= 20
        ("oltr-code", [4, 5], [2, 3], [0, 1]),
    ],
)
def test_classes_with_exactly_20_and_100_images(protocol, many, medium, few):
    r = compute_metrics(EDGE_LABELS, EDGE_COUNTS, logits=one_hot_logits(EDGE_PRED, 6), protocol=protocol)
    assert r["groups"] == {"many": len(many), "medium": len(medium), "few": len(few)}
    m = r["metrics"]
    for key, classes in (("many", many), ("medium", medium), ("few", few)):
        assert m[key] == pytest.approx(sum(EDGE_ACC[c] for c in classes) / len(classes))
    assert r["per_class_acc"] == EDGE_ACC
    assert m["top1"] == pytest.approx(6 / 12)
    assert r["train_counts"] == EDGE_COUNTS


def test_group_means_are_over_classes_not_samples():
    # Class 0 (many): 1 of 1 right; class 1 (many): 1 of 3 right -> many = (1 + 1/3)/2, not 2/4.
    labels = [0, 1, 1, 1]
    r = compute_metrics(labels, [500, 500], logits=one_hot_logits([0, 1, 0, 0], 2))
    assert r["metrics"]["many"] == pytest.approx(2 / 3)
    assert r["metrics"]["top1"] == pytest.approx(2 / 4)


def test_empty_shot_group_is_none():
    r = compute_metrics([0, 1], [500, 300], logits=one_hot_logits([0, 0], 2))
    m = r["metrics"]
    assert r["groups"] == {"many": 2, "medium": 0, "few": 0}
    assert m["many"] == 0.5 and m["medium"] is None and m["few"] is None
    assert m["open_medium"] is None and m["open_few"] is None


def test_class_without_test_samples_is_skipped_in_its_group():
    # Class 1 (many) has no test sample: per_class_acc None, many = class 0's accuracy.
    r = compute_metrics([0, 0], [500, 300], logits=one_hot_logits([0, 1], 2))
    assert r["per_class_acc"] == [0.5, None] and r["metrics"]["many"] == 0.5


# -- open decision and OLTR's F-measure ---------------------------------------------------------

# ../shared/reference/test_vectors.json "oltr_f_measure": OLTR's own code gives
# 0.6666666666661727 (rejected knowns are FP, since 2020-01-29) and 0.7499999999995 (paper era);
# both include OLTR's +1e-12 in the denominator, which oltr-bench does not add.
OLTR_PREDS = np.array([0, 1, -1, 2, -1, 3, 1, -1])
OLTR_LABELS = np.array([0, 1, 1, 2, -1, -1, 2, -1])


@pytest.mark.parametrize(
    "protocol, expected, oltr_value",
    [("oltr", 2 / 3, 0.6666666666661727), ("oltr-code", 2 / 3, 0.6666666666661727), ("oltr-2019", 3 / 4, 0.7499999999995)],
)
def test_open_f_measure_matches_the_oltr_reference(protocol, expected, oltr_value):
    # TP = 3 (samples 0, 1, 3); FN = 1 (open sample 5 accepted as class 3).
    # oltr: FP = 2 (sample 2 rejected, sample 6 wrong): P = 3/5, R = 3/4, F = 2/3.
    # oltr-2019: FP = 1 (the rejection does not count): P = R = 3/4, F = 3/4.
    f = open_f_measure(OLTR_PREDS, OLTR_LABELS, protocol)
    assert f == pytest.approx(expected, abs=1e-15)
    assert f == pytest.approx(oltr_value, abs=1e-11)


def test_open_f_measure_edge_cases():
    assert open_f_measure([-1, 0], [-1, -1]) is None  # no known samples: P undefined
    assert open_f_measure([-1, -1], [0, 1]) == 0.0  # every known rejected: TP = 0
    assert open_f_measure([-1, -1], [0, 1], "oltr-2019") == 0.0  # TP + FP = 0 -> P = 0
    assert open_f_measure([0, 1], [0, 1]) == 1.0  # no open samples: R = 1, P = 1
    assert open_f_measure([0, 1, 0], [0, 1, -1]) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_open_decision_threshold_is_inclusive_and_pred_takes_precedence():
    closed = np.array([0, 1, 2])
    s = np.array([0.05, 0.1, 0.2])
    assert open_decision(closed, s, 0.1).tolist() == [-1, 1, 2]  # s == τ is accepted
    assert open_decision(closed, s, 0.1, pred=np.array([-1, -1, 0])).tolist() == [-1, -1, 0]


def test_rejected_known_samples_lower_open_accuracy_and_f_only_in_oltr():
    # Known: class 0 right with confidence 0.9, class 1 right with confidence 0.05 (rejected at τ = 0.1).
    labels = [0, 1, -1]
    probs = np.array([[0.9, 0.1], [0.05, 0.95], [0.5, 0.5]])
    known_score = np.array([0.9, 0.05, 0.5])
    new = compute_metrics(labels, [500, 50], probs=probs, known_score=known_score)["metrics"]
    old = compute_metrics(labels, [500, 50], probs=probs, known_score=known_score, protocol="oltr-2019")["metrics"]
    assert new["top1"] == 1.0 and new["open_top1"] == 0.5
    assert new["open_many"] == 1.0 and new["open_medium"] == 0.0
    # TP = 1, FN = 1 (the open sample is accepted); FP = 1 under oltr, 0 under oltr-2019.
    assert new["open_f1"] == pytest.approx(0.5)  # P = R = 1/2
    assert old["open_f1"] == pytest.approx(2 / 3)  # P = 1, R = 1/2


def test_open_f1_sweep_is_exact_at_each_threshold():
    closed = np.array([0, 1, 1, 0, 0, 1])
    labels = np.array([0, 1, 0, -1, -1, 1])
    s = np.array([0.9, 0.6, 0.6, 0.6, 0.2, 0.3])
    t, f = open_f1_sweep(closed, s, labels, "oltr", thresholds=[0.0, 0.3, 0.6, 0.61, 0.95])
    # t = 0: all accepted; TP 3, FP 1 (sample 2 wrong), FN 2 -> P 3/4, R 3/5
    # t = .3: open sample 4 (.2) rejected -> TP 3, FP 1, FN 1 -> P 3/4, R 3/4; t = .6: accepted 0,1,2,3 -> TP 2, FP 2 (sample 2 wrong, sample 5 rejected), FN 1 -> P 1/2, R 2/3
    # t = .61: accepted 0 -> TP 1, FP 3, FN 0 -> P 1/4, R 1; t = .95: nothing -> 0
    def F(p, r):
        return 2 * p * r / (p + r)
    assert t.tolist() == [0.0, 0.3, 0.6, 0.61, 0.95]
    assert f == pytest.approx([F(3 / 4, 3 / 5), F(3 / 4, 3 / 4), F(1 / 2, 2 / 3), F(1 / 4, 1), 0.0])
    _, f_old = open_f1_sweep(closed, s, labels, "oltr-2019", thresholds=[0.6, 0.61])
    # oltr-2019 at .6: FP 1 (only the wrong accepted one) -> P 2/3, R 2/3; at .61: FP 0 -> P 1, R 1
    assert f_old == pytest.approx([2 / 3, 1.0])


def test_open_f1_sweep_default_grid():
    t, f = open_f1_sweep(np.array([0, 0]), np.array([0.5, 0.7]), np.array([0, -1]))
    assert len(t) == 201 and t[0] == 0.0 and t[-1] == 1.0 and t[20] == 0.1 and t[1] == 0.005
    t, _ = open_f1_sweep(np.array([0, 0]), np.array([-3.0, 7.0]), np.array([0, -1]))  # e.g. energy scores
    assert t[0] == -3.0 and t[-1] == 7.0 and len(t) == 201
    assert open_f1_sweep(np.array([0]), np.array([0.5]), np.array([-1])) is None


# -- detection ----------------------------------------------------------------------------------

# Known scores .9, .5, .5; open scores .5, .1 (ties between known and open at .5).
TIE_S = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
TIE_Y = np.array([0, 1, 0, -1, -1])


def test_auroc_counts_ties_half():
    # pairs (known, open): .9>.5, .9>.1, .5=.5 (1/2), .5>.1, .5=.5 (1/2), .5>.1 -> 5/6
    assert auroc(TIE_S, TIE_Y) == pytest.approx(5 / 6)
    pairs = [(a > b) + 0.5 * (a == b) for a in TIE_S[TIE_Y >= 0] for b in TIE_S[TIE_Y < 0]]
    assert auroc(TIE_S, TIE_Y) == pytest.approx(np.mean(pairs))


def test_aupr_in_and_out_by_hand():
    # in (known positive), thresholds .9 / .5 / .1: (P, R) = (1, 1/3), (3/4, 1), (3/5, 1)
    # AP = 1/3 * 1 + 2/3 * 3/4 + 0 = 5/6
    assert aupr_in(TIE_S, TIE_Y) == pytest.approx(5 / 6)
    # out (open positive, score -s), thresholds -.1 / -.5 / -.9: (P, R) = (1, 1/2), (1/2, 1), (2/5, 1)
    # AP = 1/2 * 1 + 1/2 * 1/2 = 3/4
    assert aupr_out(TIE_S, TIE_Y) == pytest.approx(3 / 4)


def test_fpr95_exact_and_not_fooled_by_collinear_points():
    # Known scores 1..20, open scores .5, 2.5, 10.5, 30. TPR >= .95 needs t <= 2 (19/20 known);
    # at t = 2 the open samples 2.5, 10.5, 30 are accepted: FPR = 3/4.
    known = np.arange(1.0, 21.0)
    s = np.r_[known, [0.5, 2.5, 10.5, 30.0]]
    y = np.r_[np.zeros(20, int), -np.ones(4, int)]
    assert fpr_at_tpr(s, y) == 0.75
    # One known and one open sample at each of 1..20: every ROC point lies on the diagonal. The
    # first threshold with TPR >= .95 (t = 2, TPR = 19/20 exactly) has FPR 19/20; a curve with
    # the collinear points dropped would give 1.
    s = np.r_[known, known]
    y = np.r_[np.zeros(20, int), -np.ones(20, int)]
    assert fpr_at_tpr(s, y) == 0.95
    assert fpr_at_tpr(s, y, 0.5) == 0.5


def test_detection_metrics_need_known_and_open_samples():
    for fn in (auroc, aupr_in, aupr_out, fpr_at_tpr):
        assert fn(np.array([0.1, 0.2]), np.array([0, 1])) is None
        assert fn(np.array([0.1, 0.2]), np.array([-1, -1])) is None


# -- OSCR --------------------------------------------------------------------------------------

# Known: correct .9, correct .6, WRONG .8, correct .4; open: .6, .3.
OSCR_CLOSED = np.array([0, 1, 0, 1, 0, 0])
OSCR_Y = np.array([0, 1, 1, 1, -1, -1])
OSCR_S = np.array([0.9, 0.6, 0.8, 0.4, 0.6, 0.3])


def test_oscr_by_hand_with_a_tie_and_a_misclassified_sample():
    # Thresholds high to low: .9 -> (FPR 0, CCR 1/4); .8 -> unchanged (the sample is wrong);
    # .6 -> (1/2, 2/4) [tie: correct and open move together]; .4 -> (1/2, 3/4); .3 -> (1, 3/4).
    # Area from (0,0): 0 + (1/2)(1/4 + 2/4)/2 + 0 + (1/2)(3/4) = 3/16 + 6/16 = 9/16.
    assert oscr(OSCR_CLOSED, OSCR_S, OSCR_Y) == pytest.approx(9 / 16)
    fpr, ccr = oscr_points(OSCR_CLOSED, OSCR_S, OSCR_Y)
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1] and ccr.tolist() == [0, 0.25, 0.5, 0.75, 0.75]


def test_oscr_equals_the_pairwise_form():
    # Independent form: (1 / (#known #open)) Σ_{correct known i} Σ_{open j} ([s_i > s_j] + ½[s_i = s_j]).
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = 40
        y = rng.integers(-1, 3, n)
        closed = rng.integers(0, 3, n)
        s = rng.integers(0, 6, n) / 5.0  # many ties
        if not ((y >= 0).any() and (y < 0).any()):
            continue
        correct = (y >= 0) & (closed == y)
        total = sum((a > b) + 0.5 * (a == b) for a in s[correct] for b in s[y < 0])
        assert oscr(closed, s, y) == pytest.approx(total / ((y >= 0).sum() * (y < 0).sum()))


def test_oscr_of_a_perfect_and_a_useless_classifier():
    y = np.array([0, 1, -1, -1])
    s = np.array([0.9, 0.8, 0.1, 0.2])
    assert oscr(np.array([0, 1, 0, 0]), s, y) == 1.0
    assert oscr(np.array([1, 0, 0, 0]), s, y) == 0.0  # nothing classified right: CCR = 0 everywhere


# -- calibration -------------------------------------------------------------------------------

def test_ece_by_hand():
    # Bins of width 1/15: .95 -> (14/15, 1], .5 -> (7/15, 8/15], .3 -> (4/15, 5/15].
    # ECE = 2/4 |1/2 - .95| + 1/4 |1 - .5| + 1/4 |1 - .3| = .225 + .125 + .175 = .525
    conf = np.array([0.95, 0.95, 0.5, 0.3])
    correct = np.array([True, False, True, True])
    assert ece(conf, correct) == pytest.approx(0.525)
    r = reliability(conf, correct)
    assert r["count"].tolist() == [0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    assert r["accuracy"][14] == 0.5 and r["confidence"][14] == pytest.approx(0.95)
    assert np.isnan(r["accuracy"][0]) and np.isnan(r["confidence"][0])
    assert ece(np.array([]), np.array([], dtype=bool)) is None


def test_ece_bins_are_closed_on_the_right():
    # A confidence of exactly 7/15 belongs to bin (6/15, 7/15], the 7th bin; 1.0 to the last.
    r = reliability(np.array([7 / 15, 1.0, 1 / 15 + 1e-12]), np.array([True, True, False]))
    assert r["count"][6] == 1 and r["count"][14] == 1 and r["count"][1] == 1
    assert r["bin_lower"][6] == 6 / 15 and r["bin_upper"][6] == 7 / 15


# -- macro F1, absorption ------------------------------------------------------------------------

def test_macro_f1_by_hand():
    # y = 0 0 1 1 2, ŷ = 0 1 1 1 0. F1 per class: 0: TP 1 FP 1 FN 1 -> 1/2; 1: TP 2 FP 1 FN 0 -> 4/5;
    # 2: TP 0 -> 0. Open samples (y = -1) are ignored.
    closed = np.array([0, 1, 1, 1, 0, 2])
    labels = np.array([0, 0, 1, 1, 2, -1])
    assert macro_f1(closed, labels) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # A class that is predicted but absent from y counts (F1 0); one in neither does not.
    assert macro_f1(np.array([0, 1]), np.array([0, 0])) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(np.array([0]), np.array([-1])) is None


def test_open_absorption_by_hand():
    groups = np.array([0, 1, 2, 0])  # classes 0, 3 many; 1 medium; 2 few
    labels = np.array([-1, -1, -1, -1, -1, 2])
    decision = np.array([-1, 0, 3, 1, -1, 2])
    a = open_absorption(decision, labels, groups)
    # 5 open samples, 3 accepted: to classes 0 (many), 3 (many), 1 (medium).
    assert a == {"accept_rate": 3 / 5, "many": 2 / 3, "medium": 1 / 3, "few": 0.0}
    none_accepted = open_absorption(np.array([-1, -1]), np.array([-1, -1]), groups)
    assert none_accepted == {"accept_rate": 0.0, "many": None, "medium": None, "few": None}
    assert open_absorption(np.array([0]), np.array([0]), groups)["accept_rate"] is None


# -- closed predictions --------------------------------------------------------------------------

def test_closed_predictions_from_logits_and_probs():
    logits = np.array([[0.0, math.log(3.0)], [2.0, 2.0], [1000.0, 0.0]], dtype=np.float32)
    closed, conf = closed_predictions(logits)
    # softmax([0, ln 3]) = [1/4, 3/4]; a tie takes the first class; huge logits do not overflow.
    assert closed.tolist() == [1, 0, 0]
    assert conf == pytest.approx([0.75, 0.5, 1.0], rel=1e-7)
    assert conf.dtype == np.float64
    closed, conf = closed_predictions(np.array([[0.2, 0.8], [0.5, 0.5]]), are_probs=True)
    assert closed.tolist() == [1, 0] and conf.tolist() == [0.8, 0.5]


def test_closed_predictions_blocks_match_one_pass(monkeypatch):
    import oltr_bench.metrics.core as core

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)).astype(np.float32)
    expected = np.exp(logits.astype(np.float64)).max(axis=1) / np.exp(logits.astype(np.float64)).sum(axis=1)
    monkeypatch.setattr(core, "BLOCK_ROWS", 8)  # blocks of 8 rows, the last one short
    _, conf = closed_predictions(logits)
    assert conf == pytest.approx(expected, rel=1e-12)


# -- the whole set -------------------------------------------------------------------------------

def small_problem():
    """4 classes (train counts 150 many, 100 medium, 20 medium, 5 few), 8 known + 4 open samples."""
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, -1, -1, -1, -1])
    closed = np.array([0, 0, 1, 0, 2, 1, 3, 0, 0, 2, 1, 3])
    conf = np.array([0.9, 0.8, 0.7, 0.05, 0.6, 0.5, 0.08, 0.4, 0.3, 0.09, 0.2, 0.07])
    return labels, [150, 100, 20, 5], closed, conf


def probs_for(closed, conf, num_classes):
    """Probability rows with argmax ``closed`` and max ``conf`` (rest spread evenly; conf > 1/C)."""
    conf = np.maximum(conf, 1.0 / num_classes + 0.01)
    p = np.tile(((1 - conf) / (num_classes - 1))[:, None], (1, num_classes))
    p[np.arange(len(closed)), closed] = conf
    return p


def test_full_metric_set_on_a_small_problem():
    labels, counts, closed, conf = small_problem()
    known_score = conf  # s given explicitly, so the probabilities only set ŷ and the ECE
    probs = probs_for(closed, conf, 4)
    r = compute_metrics(labels, counts, probs=probs, known_score=known_score, threshold=0.1)
    m = r["metrics"]
    assert list(m) == METRIC_KEYS
    # Closed: right = samples 0, 1, 2, 4, 6 -> per class 1, 1/2, 1/2, 1/2.
    assert m["top1"] == 5 / 8 and m["many"] == 1.0 and m["medium"] == 0.5 and m["few"] == 0.5
    # Open decision at τ = .1 rejects samples 3 (.05), 6 (.08), 9 (.09), 11 (.07).
    # Known right and accepted: 0, 1, 2, 4 -> per class 1, 1/2, 1/2, 0.
    assert m["open_top1"] == 4 / 8 and m["open_many"] == 1.0 and m["open_medium"] == 0.5 and m["open_few"] == 0.0
    # TP 4, FP 4 (oltr: every other known), FN 2 (open 8, 10 accepted): P 1/2, R 2/3.
    assert m["open_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Open samples accepted: 8 -> class 0 (many), 10 -> class 1 (medium).
    assert m["open_accept_rate"] == 0.5
    assert (m["open_absorbed_many"], m["open_absorbed_medium"], m["open_absorbed_few"]) == (0.5, 0.5, 0.0)
    # AUROC: known .9 .8 .7 .05 .6 .5 .08 .4 vs open .3 .09 .2 .07; pairs won:
    # .9 .8 .7 .6 .5 .4 beat all 4 (24); .05 beats none; .08 beats .07 (1) -> 25/32.
    assert m["auroc"] == pytest.approx(25 / 32)
    # FPR@95: TPR >= .95 needs all 8 known (t <= .05): every open accepted -> 1.
    assert m["fpr95"] == 1.0
    # OSCR (pairwise form): correct known .9 .8 .7 .6 beat all 4 (16), .08 beats .07 (1) -> 17/32.
    assert m["oscr"] == pytest.approx(17 / 32)
    # ECE on max p over known samples; probs_for raised .05 and .08 to 1/4 + .01 = .26.
    # bins: .9 (13/15, 14/15] right; .8 (11/15, 12/15] right; .7 (10/15, 11/15] right;
    # .6 (8/15, 9/15] right; .5 (7/15, 8/15] wrong; .4 (5/15, 6/15] wrong; .26 twice in (3/15, 4/15]: one wrong, one right.
    expected_ece = (0.1 + 0.2 + 0.3 + 0.4 + 0.5 + 0.4 + abs(1 - 0.52)) / 8
    assert m["ece"] == pytest.approx(expected_ece)
    # Macro F1 over classes 0..3: 0: TP 2 FP 2 -> 2/3; 1: TP 1 FP 1 FN 1 -> 1/2; 2: TP 1 FN 1 -> 2/3; 3: TP 1 FN 1 -> 2/3.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3 + 2 / 3) / 4)
    assert r["groups"] == {"many": 1, "medium": 2, "few": 1}
    assert r["per_class_acc"] == [1.0, 0.5, 0.5, 0.5]


def test_pred_replaces_the_threshold_rule_and_known_score_the_confidence():
    labels = np.array([0, 1, -1, -1])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    base = compute_metrics(labels, [200, 10], probs=probs)["metrics"]
    # s = max p = .9 .7 .6 .8: known vs open pairs won: .9>.6, .9>.8, .7>.6 -> 3/4
    assert base["auroc"] == pytest.approx(3 / 4) and base["open_accept_rate"] == 1.0
    own = compute_metrics(labels, [200, 10], probs=probs, pred=np.array([0, -1, -1, 1]))["metrics"]
    assert own["open_top1"] == 0.5 and own["open_accept_rate"] == 0.5 and own["open_absorbed_few"] == 1.0
    assert own["top1"] == base["top1"] == 1.0 and own["auroc"] == base["auroc"]
    ks = np.array([0.5, 0.6, 0.1, 0.2])
    scored = compute_metrics(labels, [200, 10], probs=probs, known_score=ks, threshold=0.3)["metrics"]
    assert scored["auroc"] == 1.0 and scored["open_accept_rate"] == 0.0 and scored["open_top1"] == 1.0
    assert scored["ece"] == base["ece"]  # ECE is about the probabilities, not s


def test_all_open_input():
    r = compute_metrics([-1, -1, -1], [200, 50], logits=np.array([[3.0, 0.0], [0.0, 0.0], [0.0, 3.0]]))
    m = r["metrics"]
    for key in ("top1", "many", "medium", "few", "open_top1", "open_many", "open_medium", "open_few",
                "open_f1", "auroc", "aupr_in", "aupr_out", "fpr95", "oscr", "ece", "macro_f1"):
        assert m[key] is None, key
    # max p: .953, .5, .953 -> all accepted at τ = .1; classes 0 (many), 0 (tie), 1 (medium).
    assert m["open_accept_rate"] == 1.0 and m["open_absorbed_many"] == pytest.approx(2 / 3)
    assert r["curves"] == {"open_f1_sweep": None, "roc": None, "oscr": None, "reliability": None}


def test_no_open_input():
    r = compute_metrics([0, 1], [200, 50], logits=np.array([[3.0, 0.0], [3.0, 0.0]]))
    m = r["metrics"]
    for key in ("auroc", "aupr_in", "aupr_out", "fpr95", "oscr", "open_accept_rate",
                "open_absorbed_many", "open_absorbed_medium", "open_absorbed_few"):
        assert m[key] is None, key
    assert m["top1"] == 0.5 and m["open_f1"] == pytest.approx(2 / 3)  # TP 1, FP 1, FN 0
    assert r["curves"]["roc"] is None and r["curves"]["oscr"] is None
    assert r["curves"]["open_f1_sweep"] is not None and r["curves"]["reliability"]["count"][14] == 2


def test_curves_are_points_of_the_curve_and_small():
    rng = np.random.default_rng(1)
    n = 5000
    labels = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 10, n))
    logits = rng.normal(size=(n, 10)) + 3 * np.eye(10)[np.maximum(labels, 0)] * (labels >= 0)[:, None]
    r = compute_metrics(labels, [300] * 5 + [10] * 5, logits=logits)
    c = r["curves"]
    assert set(c) == {"open_f1_sweep", "roc", "oscr", "reliability"}
    assert len(c["open_f1_sweep"]["threshold"]) == len(c["open_f1_sweep"]["open_f1"]) == 201
    assert 50 < len(c["roc"]["fpr"]) <= 201 and len(c["roc"]["fpr"]) == len(c["roc"]["tpr"])
    assert (c["roc"]["fpr"][0], c["roc"]["tpr"][0], c["roc"]["fpr"][-1], c["roc"]["tpr"][-1]) == (0, 0, 1, 1)
    assert 50 < len(c["oscr"]["fpr"]) <= 201
    assert c["oscr"]["fpr"][-1] == 1.0 and c["oscr"]["ccr"][-1] == pytest.approx(r["metrics"]["top1"])
    assert np.all(np.diff(c["oscr"]["fpr"]) >= 0) and np.all(np.diff(c["oscr"]["ccr"]) >= 0)
    # The ROC points are points of the full curve (every threshold kept), not interpolations.
    _, s = closed_predictions(logits)
    fpr_all, tpr_all, _ = roc_curve(labels >= 0, s, drop_intermediate=False)
    everything = set(zip(fpr_all.tolist(), tpr_all.tolist()))
    fpr, tpr = roc_points(s, labels)
    assert set(zip(fpr.tolist(), tpr.tolist())) <= everything and fpr.tolist() == c["roc"]["fpr"]
    rel = c["reliability"]
    assert len(rel["bin_lower"]) == 15 and sum(rel["count"]) == int((labels >= 0).sum())


def test_downsample_keeps_ends_and_original_points():
    x = np.linspace(0, 1, 10_000) ** 2
    y = np.sqrt(np.linspace(0, 1, 10_000))
    dx, dy = downsample(x, y, 201)
    assert len(dx) <= 201 and dx[0] == x[0] and dx[-1] == x[-1] and dy[-1] == y[-1]
    idx = np.searchsorted(x, dx)
    assert np.array_equal(x[idx], dx) and np.array_equal(y[idx], dy)
    short = downsample(x[:5], y[:5])
    assert np.array_equal(short[0], x[:5])


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match="exactly one of logits or probs"):
        compute_metrics([0], [10], logits=[[1.0]], probs=[[1.0]])
    with pytest.raises(ValueError, match=r"logits: expected shape \(2, 3\)"):
        compute_metrics([0, 1], [10, 10, 10], logits=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"labels: expected values in \{-1, 0..1\}, found -1..2"):
        compute_metrics([2, -1], [10, 10], logits=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"pred: expected values in \{-1, 0..1\}"):
        compute_metrics([0, -1], [10, 10], logits=np.zeros((2, 2)), pred=np.array([0, 5]))
    with pytest.raises(ValueError, match=r"known_score: expected shape \(2,\)"):
        compute_metrics([0, -1], [10, 10], logits=np.zeros((2, 2)), known_score=np.zeros(3))


# -- invariance to row order -----------------------------------------------------------------------

@st.composite
def problems(draw):
    n = draw(st.integers(1, 30))
    c = draw(st.integers(1, 5))
    labels = np.array(draw(st.lists(st.integers(-1, c - 1), min_size=n, max_size=n)))
    # Small integer logits make ties in scores, in argmax and in the confidence bins.
    logits = np.array(draw(st.lists(st.lists(st.integers(-2, 2), min_size=c, max_size=c), min_size=n, max_size=n)), dtype=np.float32)
    counts = draw(st.lists(st.sampled_from([5, 19, 20, 21, 99, 100, 101, 500]), min_size=c, max_size=c))
    use_pred = draw(st.booleans())
    pred = np.array(draw(st.lists(st.integers(-1, c - 1), min_size=n, max_size=n))) if use_pred else None
    protocol = draw(st.sampled_from(["oltr", "oltr-2019", "oltr-code"]))
    threshold = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5]))
    seed = draw(st.integers(0, 2**32 - 1))
    return labels, logits, counts, pred, protocol, threshold, seed


@settings(max_examples=150, deadline=None)
@given(problems())
@pytest.mark.slow
def test_scores_are_invariant_to_row_order(problem):
    labels, logits, counts, pred, protocol, threshold, seed = problem
    order = np.random.default_rng(seed).permutation(len(labels))
    kwargs = {"protocol": protocol, "threshold": threshold}
    a = compute_metrics(labels, counts, logits=logits, pred=pred, **kwargs)
    b = compute_metrics(labels[order], counts, logits=logits[order], pred=None if pred is None else pred[order], **kwargs)
    assert a == b


def test_docstring_examples_run():
    import doctest

    import oltr_bench.metrics.core as core

    assert doctest.testmod(core).failed == 0
