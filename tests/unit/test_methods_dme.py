"""OLTR's meta-embedding head, centroid loss (custom backward) and modulated attention."""

import pytest
import torch

from oltr_bench.baselines.dme import REACHABILITY_EPS, MetaEmbeddingHead, centroid_attract, centroid_repel
from oltr_bench.models.attention import ModulatedAttention

f64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=f64)


FEATURES = t([[1.0, 0.5, 0.2], [0.1, 0.2, 1.0]])
CENTROIDS = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]])


def reference_head(reachability_scale=10.0):
    head = MetaEmbeddingHead(3, 4, reachability_scale=reachability_scale, cosnorm_scale=16.0).double()
    with torch.no_grad():
        head.hallucinator.weight.copy_(t([[0.5, 0.1, 0.0], [0.0, 0.4, 0.2], [0.1, 0.0, 0.6], [0.2, 0.2, 0.2]]))
        head.hallucinator.bias.copy_(t([0.0, 0.1, -0.1, 0.0]))
        head.selector.weight.copy_(t([[0.3, 0.0, 0.1], [0.0, -0.2, 0.4], [0.1, 0.1, 0.1]]))
        head.selector.bias.copy_(t([0.05, 0.0, -0.05]))
        head.cosnorm.weight.copy_(t([[3.0, 0.0, 1.0], [0.5, 1.5, 0.0], [0.2, 0.2, 0.6], [0.1, -0.3, 0.2]]))
        head.centroids.copy_(CENTROIDS)
    return head


def test_meta_embedding_and_logits_reference():
    head = reference_head()
    torch.testing.assert_close(
        head.meta_embedding(FEATURES),
        t(
            [
                [21.393049529812387, 9.14676280055803, 4.429582460194425],
                [6.965464610042674, 14.872341811107976, 46.22405380665926],
            ]
        ),
        rtol=0,
        atol=1e-10,
    )
    out = head(FEATURES)
    torch.testing.assert_close(
        out["logits"],
        t(
            [
                [14.06300698643358, 10.009565284111956, 8.565636931493678, 0.4871230526521775],
                [6.784684038346454, 5.214072747983026, 15.46964859174666, 4.681272862282928],
            ]
        ),
        rtol=0,
        atol=1e-10,
    )
    assert out["features"] is FEATURES or torch.equal(out["features"], FEATURES)


def test_classifier_does_not_train_the_centroids():
    head = reference_head()
    head(FEATURES)["logits"].sum().backward()
    assert head.centroids.grad is None


def test_disc_centroid_loss_reference():
    labels = torch.tensor([0, 2])
    attract = centroid_attract(FEATURES, labels, CENTROIDS)
    repel = centroid_repel(FEATURES, labels, CENTROIDS, margin=10.0)
    torch.testing.assert_close(attract, t(0.08500000000000002), rtol=0, atol=1e-12)
    torch.testing.assert_close(repel, t(9.06), rtol=0, atol=1e-12)
    torch.testing.assert_close(attract + 0.01 * repel, t(0.17560000000000003), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        centroid_attract(FEATURES, labels, CENTROIDS, weight=0.01), 0.01 * attract, rtol=0, atol=1e-15
    )


BATCH_V = t([[1.0, 0.5, 0.2], [0.1, 0.2, 1.0], [0.3, -0.4, 0.9], [2.0, 0.0, 1.0], [0.0, 0.1, 0.2]])
BATCH_Y = torch.tensor([0, 2, 2, 0, 3])  # class 1 is absent


def attract_grads(weight, v=BATCH_V, y=BATCH_Y, counts=None, upstream=1.0):
    v = v.clone().requires_grad_(True)
    c = CENTROIDS.clone().requires_grad_(True)
    (upstream * centroid_attract(v, y, c, weight, counts)).backward()
    return v.grad, c.grad


@pytest.mark.parametrize("weight", [1.0, 0.01])
def test_centroid_gradient_is_the_official_formula(weight):
    _, grad_c = attract_grads(weight)
    b = len(BATCH_Y)
    expected = torch.zeros_like(CENTROIDS)
    for k in range(4):
        members = BATCH_V[BATCH_Y == k]
        n_k = len(members)
        expected[k] = (CENTROIDS[k] - members).sum(0) / (1 + n_k) / b
    torch.testing.assert_close(grad_c, expected, rtol=0, atol=1e-15)
    assert (grad_c[1] == 0).all()  # absent class: no update


@pytest.mark.parametrize("weight", [1.0, 0.01])
def test_feature_gradient_is_weight_times_v_minus_c_over_b(weight):
    grad_v, _ = attract_grads(weight)
    torch.testing.assert_close(grad_v, weight * (BATCH_V - CENTROIDS[BATCH_Y]) / len(BATCH_Y), rtol=0, atol=1e-15)


def test_feature_gradient_passes_gradcheck():
    c = CENTROIDS.clone()
    assert torch.autograd.gradcheck(
        lambda v: centroid_attract(v, BATCH_Y, c, 0.01), (BATCH_V.clone().requires_grad_(True),)
    )


def test_outer_loss_scaling_scales_both_gradients():
    grad_v, grad_c = attract_grads(0.01)
    grad_v8, grad_c8 = attract_grads(0.01, upstream=8.0)  # e.g. AMP's GradScaler
    torch.testing.assert_close(grad_v8, 8 * grad_v, rtol=0, atol=1e-15)
    torch.testing.assert_close(grad_c8, 8 * grad_c, rtol=0, atol=1e-15)


def test_summed_counts_make_averaged_gradients_match_one_process():
    """Two processes with the global class counts, gradients averaged (DDP) = one process on the whole batch."""
    v_all, y_all = BATCH_V[:4], BATCH_Y[:4]  # classes 0 and 2 appear in both halves
    halves = [slice(0, 2), slice(2, 4)]
    _, whole = attract_grads(0.01, v_all, y_all)
    counts = torch.bincount(y_all, minlength=4).to(f64)
    averaged = sum(attract_grads(0.01, v_all[s], y_all[s], counts)[1] for s in halves) / 2
    torch.testing.assert_close(averaged, whole, rtol=0, atol=1e-15)
    local = sum(attract_grads(0.01, v_all[s], y_all[s])[1] for s in halves) / 2
    assert (local - whole).abs().max() > 1e-3  # per-process counts would change the update


def test_feature_equal_to_a_centroid_is_finite():
    head = reference_head()
    v = CENTROIDS[:2].clone().requires_grad_(True)
    out = head(v)
    out["logits"].sum().backward()
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(v.grad).all()
    gamma_clamped = head.meta_embedding(v.detach())
    assert torch.isfinite(gamma_clamped).all()
    attract = centroid_attract(v, torch.tensor([0, 1]), CENTROIDS)
    assert attract == 0


def test_zero_features_and_zero_centroids_are_finite():
    head = reference_head()
    with torch.no_grad():
        head.centroids.zero_()
    v = torch.zeros(2, 3, dtype=f64, requires_grad=True)
    out = head(v)
    out["logits"].sum().backward()
    assert (out["logits"] == 0).all() and torch.isfinite(v.grad).all()
    loss = centroid_attract(v, torch.tensor([0, 1]), head.centroids) + centroid_repel(
        v, torch.tensor([0, 1]), head.centroids
    )
    assert torch.isfinite(loss)


def test_reachability_scale_only_changes_the_squash():
    v = FEATURES
    ten, one = reference_head(10.0).meta_embedding(v), reference_head(1.0).meta_embedding(v)
    torch.testing.assert_close(ten, 10 * one, rtol=1e-14, atol=0)
    assert REACHABILITY_EPS > 0


def test_single_class_batch_repel_is_finite():
    v = BATCH_V.clone().requires_grad_(True)
    repel = centroid_repel(v, torch.zeros(5, dtype=torch.long), CENTROIDS)
    repel.backward()
    assert torch.isfinite(v.grad).all()


# -- modulated attention -----------------------------------------------------------------------
def attention_by_hand(layer: ModulatedAttention, x: torch.Tensor) -> torch.Tensor:
    """The official computation written position by position (float64)."""
    b, c, h, w = x.shape
    n = h * w

    def conv(m, inp):
        out = torch.einsum("oc,bchw->bohw", m.weight[:, :, 0, 0], inp)
        return out if m.bias is None else out + m.bias.view(1, -1, 1, 1)

    out = torch.empty_like(x)
    for i in range(b):
        g = conv(layer.g, x[i : i + 1]).reshape(-1, n)  # [C', N]
        theta = conv(layer.theta, x[i : i + 1]).reshape(-1, n)
        phi = conv(layer.phi, x[i : i + 1]).reshape(-1, n)
        y = torch.zeros_like(g)
        for p in range(n):
            scores = torch.stack([theta[:, p] @ phi[:, q] for q in range(n)])
            weights = torch.softmax(scores, 0)
            y[:, p] = sum(weights[q] * g[:, q] for q in range(n))
        sa = conv(layer.conv_mask, y.reshape(1, -1, h, w))[0]
        flat = torch.cat([x[i, ch].reshape(-1) for ch in range(c)])  # (C, H, W) order
        ma = torch.softmax(layer.fc_spatial.weight @ flat + layer.fc_spatial.bias, 0).reshape(h, w)
        out[i] = x[i] + ma.unsqueeze(0) * sa
    return out


def test_modulated_attention_matches_the_official_computation():
    torch.manual_seed(0)
    layer = ModulatedAttention(4, 2, 3).double()
    x = torch.randn(2, 4, 2, 3, dtype=f64)
    torch.testing.assert_close(layer(x), attention_by_hand(layer, x), rtol=0, atol=1e-12)


def test_attention_init_quirk():
    torch.manual_seed(0)
    official = ModulatedAttention(8, 2, 2, init="official")
    as_written = ModulatedAttention(8, 2, 2, init="as_written")
    assert official.conv_mask.weight.abs().sum() > 0  # active from the first step
    assert official.conv_mask.weight.std().item() == pytest.approx((2.0 / 8) ** 0.5, rel=0.5)
    assert (official.g.bias == 0).all() and (official.theta.bias == 0).all()
    x = torch.randn(3, 8, 2, 2)
    torch.testing.assert_close(as_written(x), x)  # zero conv_mask: identity at start


def test_attention_rejects_a_map_of_another_shape():
    with pytest.raises(ValueError, match="built for maps"):
        ModulatedAttention(4, 2, 2)(torch.randn(1, 4, 3, 3))
