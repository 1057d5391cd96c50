"""FSLwF's attention-based weight generator against the reference vector, and its episode sampler."""

import torch

from oltr_bench.baselines.fslwf import AttentionWeightGenerator, _ClassIndex
from oltr_bench.models.heads import CosineLinear

f64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=f64)


SUPPORT = t([[1.0, 0.2, 0.0], [0.8, 0.4, 0.1], [0.0, 0.3, 1.0], [0.2, 0.1, 0.9]])
SUPPORT_LABELS = torch.tensor([0, 0, 1, 1])
BASE_W = t([[3.0, 0.0, 1.0], [0.5, 1.5, 0.0], [0.2, 0.2, 0.6], [0.1, -0.3, 0.2]])
KEYS = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])


def reference_generator():
    gen = AttentionWeightGenerator(3, 4, scale_att=10.0).double()
    with torch.no_grad():
        gen.query.weight.copy_(torch.eye(3, dtype=f64))  # φ_q = identity, bias 0
        gen.keys.copy_(KEYS)
    return gen


def test_attention_reference():
    att = reference_generator().attention(SUPPORT, torch.arange(4))
    torch.testing.assert_close(
        att,
        t(
            [
                [0.9527138954678482, 0.0003733157280186844, 5.252363012927399e-05, 0.046860265174003865],
                [0.6291415943355544, 0.007388405130734805, 0.00026357391548063874, 0.3632064266182302],
                [6.332802018034244e-05, 0.001120809805613406, 0.9149189309661424, 0.08389693120806399],
                [0.00047572634495212025, 0.0001618249266740541, 0.9026921973671052, 0.09667025136126872],
            ]
        ),
        rtol=0,
        atol=1e-10,
    )


def test_generated_weights_and_scores_reference():
    w_novel = reference_generator()(SUPPORT, SUPPORT_LABELS, 2, BASE_W, torch.arange(4))
    torch.testing.assert_close(
        w_novel,
        t(
            [
                [1.741147079822364, 0.15961725078775862, 0.4154067632158598],
                [0.40643576384059854, 0.399826009877373, 1.834550026301875],
            ]
        ),
        rtol=0,
        atol=1e-10,
    )
    classifier = CosineLinear(3, 6, scale=10.0).double()
    scores = classifier(t([[1.0, 0.5, 0.2], [0.1, 0.2, 1.0]]), torch.cat([BASE_W, w_novel]))
    torch.testing.assert_close(
        scores,
        t(
            [
                [
                    8.909536742235273,
                    6.960575579871307,
                    5.574784668619939,
                    -0.23531040266750528,
                    9.328330277892304,
                    4.460499883894876,
                ],
                [
                    4.011887099014389,
                    2.1602468994692865,
                    9.710083124552245,
                    3.9123039821797576,
                    3.374670432134451,
                    9.93201686731611,
                ],
            ]
        ),
        rtol=0,
        atol=1e-10,
    )


def test_attention_is_over_the_episode_base_classes_only():
    gen = reference_generator()
    att = gen.attention(SUPPORT, torch.tensor([1, 3]))
    assert att.shape == (4, 2)
    torch.testing.assert_close(att.sum(1), torch.ones(4, dtype=f64))


def test_generator_initialisation():
    gen = AttentionWeightGenerator(16, 5)
    assert (gen.query.bias == 0).all()
    assert (gen.query.weight - torch.eye(16)).abs().max() < 0.01
    assert gen.scale_att.item() == 30.0 and (gen.phi_avg == 1).all() and (gen.phi_att == 1).all()


def test_class_index_draws_distinct_samples_of_the_right_class():
    torch.manual_seed(0)
    labels = torch.tensor([2, 0, 1, 0, 2, 0, 0, 1, 0, 2, 2, 2])
    index = _ClassIndex(labels, 4)
    classes = torch.tensor([0, 2])
    for _ in range(20):
        drawn = index.distinct(classes, 4)
        assert drawn.shape == (2, 4)
        for row, c in zip(drawn, classes):
            assert (labels[row] == c).all() and len(set(row.tolist())) == 4
    picks = index.any_of(torch.tensor([1, 1, 1, 2]))
    assert labels[picks].tolist() == [1, 1, 1, 2]
