"""OpenMax end to end against the reference vector (made with libMR, translate 1, tail 5, α 2) and its edge cases."""

import numpy as np
import pytest

from oltr_bench.baselines.openmax import distances_to_means, fit_openmax, openmax_outputs, openmax_recalibrate
from oltr_bench.errors import OltrError
from oltr_bench.models.weibull import fit_high

ATOL = 1e-6  # the contract for OpenMax end to end (the Weibull port is much closer)

# Training logits of the vector: numpy RandomState(0), 6·onehot(label) + N(0, 1), 12 per class.
LABELS = np.repeat(np.arange(4), 12)
TRAIN = np.random.RandomState(0).randn(48, 4) + 6.0 * np.eye(4)[LABELS]

MAV = [
    [6.484779340951628, -0.18482521536096533, 0.016719877636446483, 0.4212094753917932],
    [-0.31094084897575974, 6.101153472727692, -0.1319836983253956, -0.09148493882264315],
    [0.12455405112925033, 0.41988768992878694, 5.973037145914483, 0.5989950854472127],
    [0.041564648195963096, -0.09226727061431068, -0.4906295601312423, 5.948787912490141],
]
WEIBULL = [  # scale, shape, small_score (sign 1, translate 1)
    (1.0574784610185188, 31.644669333264734, 0.03739115260155846),
    (1.014098686945165, 170.5053795286624, 0.043122767947997985),
    (1.0452565254263397, 31.314413097723843, 0.04640139842806985),
    (1.0244115801300326, 89.47334872447762, 0.05557454446770574),
]
QUERIES = [
    dict(
        v=[5.5, 0.8, 0.3, 0.1],
        eucos=[0.024559367678622337, 0.9476300900923409, 0.9534650039769443, 1.0223137316641284],
        alpha=[1.0, 0.5, 0.0, 0.0],
        w=[0.10716751496944854, 1.0, 1.0, 1.0],
        revised=[4.910578667668033, 0.4, 0.3, 0.1],
        unknown=0.989421332331967,
        probs=[
            0.9533802309443913,
            0.0104796485137497,
            0.00948237810310566,
            0.0077635145653258625,
            0.018894227873427413,
        ],
        pred=0,
    ),
    dict(
        v=[3.0, 2.5, 0.5, -0.2],
        eucos=[0.28422569608105586, 0.43222751927573044, 0.8520491921210877, 1.1023138841869926],
        alpha=[1.0, 0.5, 0.0, 0.0],
        w=[1.0, 1.0, 1.0, 1.0],
        revised=[0.0, 1.25, 0.5, -0.2],
        unknown=4.25,
        probs=[
            0.012976361024589728,
            0.04529195031565908,
            0.021394402437525193,
            0.01062414583387412,
            0.9097131403883518,
        ],
        pred=-1,
    ),
    dict(
        v=[2.0, 1.8, 1.9, 1.7],
        eucos=[0.4716053630209544, 0.588504116249897, 0.42474480124106195, 0.6167906267152338],
        alpha=[1.0, 0.0, 0.5, 0.0],
        w=[1.0, 1.0, 1.0, 1.0],
        revised=[0.0, 1.8, 0.95, 1.7],
        unknown=2.95,
        probs=[0.029226726651536805, 0.1768113927805599, 0.07557182941306259, 0.15998556412290374, 0.558404487031937],
        pred=-1,
    ),
]


@pytest.fixture(scope="module")
def model():
    return fit_openmax(TRAIN, LABELS, 4, tail_size=5)


def test_training_logits_regenerate_the_vector():
    np.testing.assert_array_equal(
        TRAIN[0], [7.764052345967664, 0.4001572083672233, 0.9787379841057392, 2.240893199201458]
    )


def test_mavs_and_weibull_fits(model):
    np.testing.assert_allclose(model.mav, MAV, rtol=0, atol=1e-12)
    assert model.has_model.all() and model.valid.all()
    np.testing.assert_allclose(np.stack([model.scale, model.shape, model.small_score], 1), WEIBULL, rtol=1e-9, atol=0)


@pytest.mark.parametrize("q", QUERIES)
def test_openmax_end_to_end(model, q):
    v = np.array([q["v"]])
    np.testing.assert_allclose(distances_to_means(v, model.mav), q["eucos"], rtol=0, atol=1e-12)
    w_all = [fit_high_w(model, k, q["eucos"][k]) for k in range(4)]
    np.testing.assert_allclose(w_all, q["w"], rtol=0, atol=ATOL)
    r = openmax_recalibrate(v, model, alpha_rank=2)
    np.testing.assert_allclose(r["alpha_weights"][0], q["alpha"], rtol=0, atol=0)
    np.testing.assert_allclose(r["revised"][0], q["revised"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(r["unknown"][0], q["unknown"], rtol=0, atol=ATOL)
    out = openmax_outputs(v, model, alpha_rank=2)
    np.testing.assert_allclose(out["probs"][0], q["probs"], rtol=0, atol=ATOL)
    assert out["pred"][0] == q["pred"]
    np.testing.assert_allclose(out["known_score"][0], 1.0 - q["probs"][-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(out["known_probs"][0], np.array(q["probs"][:4]) / sum(q["probs"][:4]), rtol=0, atol=ATOL)


def fit_high_w(model, k, distance):
    """The class-k Weibull w-score, from the fitted parameters (all classes, not only the top α)."""
    z = distance + model.translate_amount - model.small_score[k]
    return 1.0 - np.exp(-((z / model.scale[k]) ** model.shape[k])) if z > 0 else 0.0


def test_fit_uses_libmr_on_the_largest_distances(model):
    members = TRAIN[LABELS == 2]
    d = distances_to_means(members, model.mav[2][None, :])
    reference = fit_high(np.sort(d)[-5:], 5)
    assert (model.scale[2], model.shape[2]) == (reference.scale, reference.shape)


def test_ties_rank_the_lower_class_first(model):
    r = openmax_recalibrate(np.array([[1.0, 1.0, 1.0, 0.5]]), model, alpha_rank=2)
    np.testing.assert_array_equal(r["alpha_weights"][0], [1.0, 0.5, 0.0, 0.0])


def test_alpha_rank_zero_leaves_logits_unchanged(model):
    v = np.array([q["v"] for q in QUERIES])
    r = openmax_recalibrate(v, model, alpha_rank=0)
    np.testing.assert_array_equal(r["revised"], v)
    np.testing.assert_array_equal(r["unknown"], np.zeros(3))


def test_alpha_rank_above_class_count_uses_the_first_weights(model):
    r = openmax_recalibrate(np.array([[3.0, 2.0, 1.0, 0.0]]), model, alpha_rank=10)
    np.testing.assert_allclose(r["alpha_weights"][0], [1.0, 0.9, 0.8, 0.7])


def test_tail_zero_or_larger_than_the_data_means_all():
    all_of_it = fit_openmax(TRAIN, LABELS, 4, tail_size=12)
    for tail in (0, 50):
        other = fit_openmax(TRAIN, LABELS, 4, tail_size=tail)
        np.testing.assert_array_equal(other.shape, all_of_it.shape)


def test_invalid_fit_is_clamped_to_no_recalibration():
    # class 1 has a single correctly classified sample: libMR cannot fit it (w = -9999 -> 0)
    train = np.array([[5.0, 0.0], [4.0, 1.0], [4.5, 0.2], [0.0, 3.0]])
    model = fit_openmax(train, np.array([0, 0, 0, 1]), 2, tail_size=20)
    assert model.has_model.tolist() == [True, True] and model.valid.tolist() == [True, False]
    r = openmax_recalibrate(np.array([[0.5, 2.0]]), model, alpha_rank=1)
    assert r["w_scores"][0, 1] == 0.0 and r["revised"][0, 1] == 2.0


def test_class_never_correct_adds_its_full_logit_to_unknown():
    train = np.array(
        [[5.0, 0.0, 0.0], [4.0, 0.5, 0.0], [4.5, 0.2, 0.1], [3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.1, 0.0, 3.0]]
    )
    model = fit_openmax(train, np.array([0, 0, 0, 1, 2, 2]), 3, tail_size=20)
    assert model.has_model.tolist() == [True, False, True]
    v = np.array([[0.2, 1.5, 0.1]])
    r = openmax_recalibrate(v, model, alpha_rank=1)
    assert r["revised"][0, 1] == 1.5
    assert r["unknown"][0] == pytest.approx(1.5)


def test_outputs_are_valid_probabilities(model):
    v = np.random.RandomState(1).randn(64, 4) * 4.0
    out = openmax_outputs(v, model, alpha_rank=2)
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(out["known_probs"].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(out["known_score"], 1.0 - out["probs"][:, -1], atol=1e-12)
    assert set(np.unique(out["pred"])) <= {-1, 0, 1, 2, 3}


def test_zero_activation_vector_has_finite_distance(model):
    d = distances_to_means(np.zeros((1, 4)), model.mav)
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d, np.linalg.norm(model.mav, axis=1) / 200.0 + 1.0)


def test_openmax_refuses_a_dataset_whose_fit_cannot_fit_in_memory(monkeypatch):
    from oltr_bench.baselines import openmax
    from oltr_bench.method import DatasetInfo

    small = DatasetInfo(num_classes=4, train_counts=(10, 5, 2, 1), feat_dim=8)
    assert openmax.fit_memory_bytes(small) == 12 * 18 * 4 + 8 * 16
    monkeypatch.setattr(openmax, "physical_memory_bytes", lambda: 24 * 2**30)
    openmax.OpenMax(dict(openmax.OpenMax.defaults), small)  # fits
    # MS1M-LT scale: ~74.5K identities with ~30 images each.
    ms1m = DatasetInfo(num_classes=74_500, train_counts=(30,) * 74_500, feat_dim=512)
    with pytest.raises(OltrError, match=r"openmax: fitting needs about 1902 GiB .* more than this machine's 24 GiB"):
        openmax.OpenMax(dict(openmax.OpenMax.defaults), ms1m)
