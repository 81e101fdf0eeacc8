"""MixUp, i-Mix, CutMix and InputMix: exact values, simplex rows, determinism."""
import pytest
import torch

from imix_teach.losses import npair_loss, soft_cross_entropy
from imix_teach.mixing import cutmix, imix, inputmix, mix_targets, mixup, sample_lambda


def test_sample_lambda_shapes_range_and_generator_determinism():
    assert sample_lambda(1.0).shape == ()
    lam = sample_lambda(0.5, 1000, generator=torch.Generator().manual_seed(0))
    assert lam.shape == (1000,) and bool(((lam >= 0) & (lam <= 1)).all())
    again = sample_lambda(0.5, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lam, again)
    state = torch.get_rng_state()
    sample_lambda(1.0, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state()), "a generator draw must not touch the global RNG"


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_sample_lambda_matches_beta_moments(alpha):
    lam = sample_lambda(alpha, 20000, generator=torch.Generator().manual_seed(0))
    var = 1 / (4 * (2 * alpha + 1))  # Var of Beta(a, a)
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(var, rel=0.05)


def test_mixup_exact_values_scalar_and_per_sample():
    x = torch.arange(6.0).view(3, 2)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(mixup(x, 0.25, perm), 0.25 * x + 0.75 * x[perm])
    lam = torch.tensor([1.0, 0.5, 0.0])
    out = mixup(x, lam, perm)
    assert torch.allclose(out[0], x[0]) and torch.allclose(out[2], x[1])
    assert torch.allclose(out[1], 0.5 * (x[1] + x[0]))


def test_mix_targets_rows_stay_on_simplex_and_lam_one_is_identity():
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    eye = torch.eye(8)
    for lam in (torch.tensor(0.3), torch.rand(8)):
        mixed = mix_targets(eye, lam, perm)
        assert torch.allclose(mixed.sum(1), torch.ones(8)) and bool((mixed >= 0).all())
    assert torch.equal(mix_targets(eye, 1.0, perm), eye)
    ids = mix_targets(torch.tensor([0, 2, 1]), 0.5, torch.tensor([1, 2, 0]), num_classes=3)
    assert torch.allclose(ids[0], torch.tensor([0.5, 0.0, 0.5]))


def test_imix_with_lam_one_gives_the_plain_npair_loss():
    a, p = torch.randn(5, 4), torch.randn(5, 4)
    perm = torch.tensor([4, 3, 2, 1, 0])
    assert npair_loss(mixup(a, 1.0, perm), p, mix_targets(torch.eye(5), 1.0, perm)).item() == pytest.approx(
        npair_loss(a, p).item(), rel=1e-6
    )


def test_algorithm_1_equals_soft_target_form():
    """lam*CE(logits, arange) + (1-lam)*CE(logits, perm) == CE(logits, lam*I + (1-lam)*I[perm])."""
    logits = torch.randn(6, 6)
    perm = torch.randperm(6)
    lam = 0.35
    alg1 = lam * soft_cross_entropy(logits, torch.arange(6)) + (1 - lam) * soft_cross_entropy(logits, perm)
    soft = soft_cross_entropy(logits, mix_targets(torch.eye(6), lam, perm))
    assert alg1.item() == pytest.approx(soft.item(), rel=1e-6)


@pytest.mark.parametrize("per_sample,max_lam", [(False, False), (True, False), (True, True)])
def test_imix_returns_consistent_inputs_and_targets(per_sample, max_lam):
    x = torch.randn(8, 3)
    m = imix(x, 1.0, per_sample=per_sample, max_lam=max_lam, generator=torch.Generator().manual_seed(0))
    assert m.lam.shape == ((8,) if per_sample else ())
    assert torch.allclose(m.inputs, mixup(x, m.lam, m.perm))
    assert torch.allclose(m.targets, mix_targets(torch.eye(8), m.lam, m.perm))
    if max_lam:
        assert bool((m.lam >= 0.5).all())


def test_cutmix_pastes_a_box_and_reports_its_true_area():
    x = torch.zeros(4, 1, 8, 8)
    x[2:] = 1.0
    perm = torch.tensor([2, 3, 0, 1])
    for lam in (torch.tensor(0.5), torch.tensor([0.9, 0.2, 0.5, 0.0])):
        out, used = cutmix(x, lam, perm, generator=torch.Generator().manual_seed(3))
        assert used.shape == lam.shape
        # Samples 0, 1 are zeros receiving ones: the pasted fraction is exactly 1 - lam_used.
        pasted = out[:2].mean(dim=(1, 2, 3))
        lam_used = used.expand(4)[:2]
        assert torch.allclose(pasted, 1 - lam_used)


def test_inputmix_keeps_principal_weight_at_least_half():
    # One-hot rows make the coefficients visible: the sample's own slot keeps >= 0.5.
    x = torch.eye(16)
    out = inputmix(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.sum(1), torch.ones(16))
    assert bool((out.diagonal() >= 0.5 - 1e-6).all())


@pytest.mark.parametrize("alpha", [1e-3, 0.1, 1.0, 2.0, 100.0])
def test_sample_lambda_follows_beta_distribution_even_for_tiny_alpha(alpha):
    """KS test against scipy's Beta(alpha, alpha) cdf, plus the mass inside (lo, hi).

    The test looks at lam in (1e-6, 1 - 1e-6): outside it float32 cannot resolve lam (near 1 the
    spacing is 6e-8, and for alpha = 1e-3 most draws lie below 1e-38), and ties at 0.0 or 1.0
    break KS. torch's own Beta sampler fails this at alpha = 1e-3: 0/0 underflow puts ~25% of its
    draws at exactly 0.5, where the true mass in (1e-6, 1 - 1e-6) is 1.4%.
    """
    stats = pytest.importorskip("scipy.stats")
    n, lo, hi = 20_000, 1e-6, 1 - 1e-6
    lam = sample_lambda(alpha, n, generator=torch.Generator().manual_seed(0)).double().numpy()
    beta = stats.beta(alpha, alpha)
    p_inside = beta.cdf(hi) - beta.cdf(lo)
    inside = lam[(lam > lo) & (lam < hi)]
    sigma = (n * p_inside * (1 - p_inside)) ** 0.5
    assert abs(len(inside) - n * p_inside) <= 5 * sigma + 1, f"{len(inside)} draws inside ({lo}, {hi}), expected {n * p_inside:.0f}"
    ks = stats.kstest(inside, lambda x: (beta.cdf(x) - beta.cdf(lo)) / p_inside)
    assert ks.pvalue > 1e-3, ks
    assert abs((lam < 0.5).mean() - 0.5) < 0.02  # symmetric


def test_sample_lambda_tiny_alpha_means_almost_no_mixing():
    lam = sample_lambda(1e-3, 10_000, generator=torch.Generator().manual_seed(0))
    middle = float(((lam > 0.1) & (lam < 0.9)).float().mean())
    assert middle < 0.01  # Beta(1e-3, 1e-3) puts 0.2 % of its mass in (0.1, 0.9)


def test_mixed_apply_to_mixes_another_batch_with_the_same_partners():
    from imix_teach.mixing import imix, mixup

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8)
    first = imix(a, 1.0, generator=g)
    second, lam = first.apply_to(b)
    assert torch.equal(second, mixup(b, first.lam, first.perm)) and torch.equal(lam, first.lam)
    boxed = imix(a, 1.0, mode="cutmix", generator=g)
    second, lam = boxed.apply_to(b, g)
    # Every pixel is b's own or b[perm]'s at the same place, and the share taken from b[perm] is 1 - lam.
    from_partner = (second == b[boxed.perm]) & (second != b)
    assert torch.equal(torch.where(from_partner, b[boxed.perm], b), second) and boxed.mode == "cutmix"
    share = from_partner[:, 0].flatten(1).float().mean(1)  # one box for the batch: the same for each sample
    assert torch.allclose(share, torch.full((6,), 1 - float(lam))) and float(lam) < 1
    assert bool(from_partner.any(1).eq(from_partner.all(1)).all())  # the box spans all channels
