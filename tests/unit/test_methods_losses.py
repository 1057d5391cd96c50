"""Loss functions and classifiers against the reference vectors (float64, 1e-10), true gradients, edge cases.

The expected numbers come from independent numpy formulas (the project's reference vector
file); they are copied here.
"""

import pytest
import torch
import torch.nn.functional as F

from oltr_bench.baselines.balanced_softmax import balanced_softmax_loss
from oltr_bench.baselines.focal import focal_loss
from oltr_bench.baselines.ldam_drw import drw_weights, ldam_loss, ldam_margins
from oltr_bench.baselines.logit_adjust import log_adjusted_prior, logit_adjusted_loss
from oltr_bench.baselines.lws import LWSHead
from oltr_bench.baselines.range_loss import range_loss_oltr, range_loss_paper
from oltr_bench.baselines.tau_norm import mean_class_accuracy, tau_normalized
from oltr_bench.models.heads import CosineLinear, CosNormLinear, NormedLinear, squash

ATOL = 1e-10
f64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=f64)


LOGITS = t([[2.0, 1.0, 0.1, -1.0], [0.5, 2.5, -0.3, 0.0], [-1.2, 0.3, 0.8, 3.0]])
LABELS = torch.tensor([0, 2, 3])
COUNTS = t([100.0, 20.0, 5.0, 1.0])
CE = 1.2237547613873911


def close(a, b, atol=ATOL):
    torch.testing.assert_close(torch.as_tensor(a, dtype=f64), torch.as_tensor(b, dtype=f64), rtol=0, atol=atol)


# -- focal -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "gamma, alpha, expected",
    [
        (0.0, 1.0, CE),
        (1.0, 1.0, 1.0305879216154472),
        (2.0, 1.0, 0.9420258339483784),
        (2.0, [0.25, 0.5, 0.75, 1.0], 0.6970945796964113),
        (2.0, 0.25, 0.2355064584870946),
    ],
)
def test_focal_reference(gamma, alpha, expected):
    a = t(alpha) if isinstance(alpha, list) else alpha
    close(focal_loss(LOGITS, LABELS, gamma, a), expected)


def test_focal_gamma0_is_cross_entropy():
    close(focal_loss(LOGITS, LABELS, 0.0), F.cross_entropy(LOGITS, LABELS), atol=1e-15)


@pytest.mark.parametrize("gamma, alpha", [(2.0, 1.0), (0.5, 1.0), (1.0, [0.25, 0.5, 0.75, 1.0])])
def test_focal_true_gradient(gamma, alpha):
    a = t(alpha) if isinstance(alpha, list) else alpha
    z = LOGITS.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: focal_loss(x, LABELS, gamma, a), (z,))


def test_focal_gradient_is_not_the_detached_variant():
    z = LOGITS.clone().requires_grad_(True)
    focal_loss(z, LABELS, 2.0).backward()
    zd = LOGITS.clone().requires_grad_(True)
    log_p = F.log_softmax(zd, 1).gather(1, LABELS.view(-1, 1)).squeeze(1)
    (-((1 - log_p.detach().exp()) ** 2) * log_p).mean().backward()
    assert (z.grad - zd.grad).abs().max() > 1e-3


def test_focal_saturated_probability_is_finite():
    z = torch.tensor([[1000.0, 0.0, 0.0]], requires_grad=True)
    loss = focal_loss(z, torch.tensor([0]), 0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_focal_half_precision_is_computed_in_float32():
    assert focal_loss(LOGITS.half(), LABELS).dtype == torch.float32


# -- balanced softmax / logit adjustment ------------------------------------------------------
def test_balanced_softmax_reference():
    close(balanced_softmax_loss(LOGITS, LABELS, COUNTS), 2.091344060408258)


def test_balanced_softmax_empty_class_is_finite():
    assert torch.isfinite(balanced_softmax_loss(LOGITS, LABELS, t([100.0, 0.0, 5.0, 1.0])))


@pytest.mark.parametrize(
    "tau, eps, expected",
    [(1.0, 1e-12, 2.0913440603710236), (1.0, 0.0, 2.091344060408258), (2.0, 1e-12, 4.087544423824642), (0.0, 0.0, CE)],
)
def test_logit_adjusted_loss_reference(tau, eps, expected):
    close(logit_adjusted_loss(LOGITS, LABELS, COUNTS, tau, eps), expected)


def test_posthoc_logit_adjustment_reference():
    adjusted = LOGITS - log_adjusted_prior(COUNTS, 1.0)
    close(
        adjusted,
        [
            [2.2311117209621267, 2.840549633391187, 3.3268439944921777, 3.8362819068254783],
            [0.7311117209621267, 4.340549633391187, 2.926843994492178, 4.836281906825478],
            [-0.9688882790378732, 2.140549633391187, 4.026843994492178, 7.836281906825478],
        ],
    )
    assert adjusted.argmax(1).tolist() == [3, 3, 3] and LOGITS.argmax(1).tolist() == [0, 1, 3]


# -- LDAM-DRW ----------------------------------------------------------------------------------
COSINE = t([[0.8, 0.1, -0.2, 0.05], [0.1, 0.6, 0.3, -0.4], [-0.3, 0.2, 0.1, 0.7]])
DRW = [0.03189996801930857, 0.15886371877710823, 0.6349785380411593, 3.174257775162424]


def test_ldam_margins_and_drw_weights():
    close(ldam_margins(COUNTS, 0.5), [0.15811388300841897, 0.23643540225079396, 0.334370152488211, 0.5])
    close(drw_weights(COUNTS, 0.9999), DRW)
    close(drw_weights(COUNTS, 0.0), [1.0, 1.0, 1.0, 1.0])


def test_ldam_loss_reference():
    m = ldam_margins(COUNTS, 0.5)
    close(ldam_loss(COSINE, LABELS, m, 30.0), 6.582947020129407)
    close(ldam_loss(COSINE, LABELS, m, 30.0, t(DRW)), 3.7391598224386624)


def test_ldam_without_margins_is_the_weighted_cross_entropy_divided_by_the_weight_sum():
    close(ldam_loss(LOGITS, LABELS, torch.zeros(LOGITS.shape[1], dtype=LOGITS.dtype), 1.0, t(DRW)), 0.6530155018165618)


def test_normed_linear_rows_start_at_unit_norm():
    layer = NormedLinear(5, 3)
    close(layer.weight.detach().double().norm(dim=1), [1.0, 1.0, 1.0], atol=1e-6)


# -- range loss --------------------------------------------------------------------------------
RANGE_FEATURES = t([[0, 0], [1, 0], [0, 2], [3, 3], [3.5, 3], [0.5, 4]])
RANGE_LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


def test_range_loss_paper_euclidean_reference():
    intra, inter = range_loss_paper(RANGE_FEATURES, RANGE_LABELS, k=2, margin=20.0)
    close(intra, 2.6114561800016824)
    close(inter, 17.073825022320094)
    close(intra + inter, 19.685281202321775)


def test_range_loss_paper_squared_reference():
    intra, inter = range_loss_paper(RANGE_FEATURES, RANGE_LABELS, k=2, margin=20.0, squared=True)
    close(intra, 4.694444444444445)
    close(inter, 11.4375)
    close(intra + inter, 16.131944444444443)


def test_range_loss_oltr_code_reference():
    intra, inter = range_loss_oltr(RANGE_FEATURES, RANGE_LABELS, t([[0.3, 0.7], [3.25, 3], [0.5, 4]]), margin=5.0)
    close(intra, 2.23606797749979)
    close(inter, 4.999999999999)
    close(intra + inter, 7.23606797749879)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize(
    "features, labels",
    [
        ([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]], [0, 1, 2]),  # every class a single sample: no range
        ([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], [0, 0, 0]),  # one class, all distances zero
        ([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]], [0, 0, 1, 1]),  # zero ranges, two classes
        ([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], [0, 0, 1, 1]),  # equal centres
    ],
)
def test_range_loss_degenerate_batches_are_finite(features, labels, squared):
    x = t(features).requires_grad_(True)
    y = torch.tensor(labels)
    intra, inter = range_loss_paper(x, y, margin=5.0, squared=squared)
    (intra + inter).backward()
    assert torch.isfinite(intra) and torch.isfinite(inter) and torch.isfinite(x.grad).all()
    if len(set(labels)) == 1:
        assert inter == 0
    if len(set(labels)) == len(labels):
        assert intra == 0


def test_range_loss_oltr_zero_distances_are_finite():
    x = t([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]]).requires_grad_(True)
    intra, inter = range_loss_oltr(x, torch.tensor([0, 0, 1]), t([[1.0, 2.0], [0.0, 1.0]]))
    (intra + inter).backward()
    assert torch.isfinite(x.grad).all()


def test_range_loss_oltr_on_a_one_sample_batch_is_finite():
    """A per-process batch of one (or one left after skipping unreadable images): one pair, no crash."""
    x = t([[1.0, 2.0]]).requires_grad_(True)
    intra, inter = range_loss_oltr(x, torch.tensor([0]), t([[1.0, 2.0], [0.0, 1.0]]))
    (intra + inter).backward()
    assert torch.isfinite(intra) and torch.isfinite(x.grad).all()
    pair, _ = range_loss_oltr(t([[1.0, 2.0], [4.0, 6.0]]), torch.tensor([0, 0]), t([[0.0, 0.0], [0.0, 1.0]]))
    close(pair, 5.0)  # two samples: pairs (0,1) and (1,0) at distance 5, harmonic mean 5


def test_range_loss_paper_gradient():
    x = RANGE_FEATURES.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: sum(range_loss_paper(f, RANGE_LABELS, margin=20.0)), (x,))


# -- decoupling: tau-norm, LWS -----------------------------------------------------------------
W = t([[3.0, 0.0, 1.0], [0.5, 1.5, 0.0], [0.2, 0.2, 0.6], [0.1, -0.3, 0.2]])
B = t([0.3, 0.1, -0.1, -0.2])
X = t([[1.0, 0.5, 0.2], [0.1, 0.2, 1.0]])


@pytest.mark.parametrize(
    "tau, logits, pred",
    [
        (
            0.0,
            [
                [3.2, 1.25, 0.42000000000000004, -0.009999999999999985],
                [1.3, 0.35000000000000003, 0.66, 0.15000000000000002],
            ],
            [0, 0],
        ),
        (
            0.5,
            [
                [1.799492240609117, 0.9940884109588133, 0.5156869262620369, -0.01634812655665544],
                [0.7310437227474538, 0.27834475506846773, 0.8103651698403438, 0.24522189834983232],
            ],
            [0, 2],
        ),
        (
            0.7,
            [
                [1.429387494883082, 0.9070495453440779, 0.5598102597840141, -0.019900096734017478],
                [0.5806886697962521, 0.2539738726963418, 0.8797018368034507, 0.2985014510102626],
            ],
            [0, 2],
        ),
        (
            1.0,
            [
                [1.0119288512538813, 0.7905694150420948, 0.6331738236133037, -0.026726124191242377],
                [0.41109609582188933, 0.22135943621178655, 0.99498743710662, 0.40089186286863665],
            ],
            [0, 2],
        ),
    ],
)
def test_tau_norm_reference(tau, logits, pred):
    z = X @ tau_normalized(W, tau).t()
    close(z, logits)
    assert z.argmax(1).tolist() == pred


def test_tau_norm_normalised_weights_reference():
    close(tau_normalized(W, 0.5)[0], [1.6870239755710472, 0.0, 0.5623413251903491])
    close(tau_normalized(W, 1.0)[3], [0.2672612419124244, -0.8017837257372731, 0.5345224838248488])


def test_tau_norm_zero_weight_row_stays_zero():
    w = tau_normalized(t([[0.0, 0.0], [3.0, 4.0]]), 1.0)
    close(w, [[0.0, 0.0], [0.6, 0.8]])


def test_mean_class_accuracy_averages_classes():
    assert mean_class_accuracy(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)


def test_lws_reference():
    head = LWSHead(3, 4).double()
    with torch.no_grad():
        head.fc.weight.copy_(W)
        head.fc.bias.copy_(B)
        head.scales.copy_(t([0.5, 1.0, 2.0, 4.0]))
    close(
        head(X)["logits"],
        [[1.75, 1.35, 0.6400000000000001, -0.84], [0.8, 0.45000000000000007, 1.12, -0.19999999999999996]],
    )
    assert [n for n, p in head.named_parameters() if p.requires_grad] == ["scales"]


# -- cosine classifiers ------------------------------------------------------------------------
def test_fslwf_cosine_classifier_reference():
    layer = CosineLinear(3, 4, scale=10.0).double()
    with torch.no_grad():
        layer.weight.copy_(W)
    close(
        layer(X),
        [
            [8.909536742235273, 6.960575579871307, 5.574784668619939, -0.23531040266750528],
            [4.011887099014389, 2.1602468994692865, 9.710083124552245, 3.9123039821797576],
        ],
    )
    with torch.no_grad():
        layer.bias.fill_(0.1)
    close(
        layer(X),
        [
            [9.909536742235273, 7.960575579871306, 6.574784668619938, 0.7646895973324948],
            [5.011887099014389, 3.1602468994692865, 10.710083124552245, 4.912303982179758],
        ],
    )


@pytest.mark.parametrize(
    "kind, expected",
    [
        (
            "code",
            [
                [7.5807662617637925, 5.922473642002963, 4.743359924892052, -0.2002161518822512],
                [3.248655863878912, 1.7492762343963373, 7.862813110837039, 3.168017683276162],
            ],
        ),
        (
            "paper",
            [
                [8.030254950206812, 6.273636679849071, 5.024609413114214, -0.21208762930381236],
                [3.287790403094719, 1.7703486785894642, 7.957531536218425, 3.2061808244204846],
            ],
        ),
    ],
)
def test_oltr_cosnorm_reference(kind, expected):
    layer = CosNormLinear(3, 4, scale=16.0, squash=kind).double()
    with torch.no_grad():
        layer.weight.copy_(W)
    close(layer(X), expected)


@pytest.mark.parametrize("kind", ["code", "paper"])
def test_squash_of_a_zero_vector_is_zero_with_finite_gradient(kind):
    x = torch.zeros(2, 3, dtype=f64, requires_grad=True)
    y = squash(x, kind)
    y.sum().backward()
    assert (y == 0).all() and torch.isfinite(x.grad).all()


def test_cosine_layers_of_zero_vectors_are_finite():
    x = torch.zeros(2, 3, dtype=f64, requires_grad=True)
    for layer in (CosineLinear(3, 4).double(), NormedLinear(3, 4).double(), CosNormLinear(3, 4).double()):
        out = layer(x)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
