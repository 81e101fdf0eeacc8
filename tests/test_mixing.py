"""MixUp, i-Mix, CutMix and InputMix: exact values, simplex rows, determinism."""
import math

import pytest
import torch

from imix_teach.losses import npair_loss, soft_cross_entropy
from imix_teach.mixing import cutmix, imix, inputmix, inputmix_pair, mix_targets, mixup, sample_lambda


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


# ----------------------------------------------------------------------------- replays by hand
def test_small_alpha_lambda_is_the_log_gamma_recursion_replayed():
    """alpha < 1: lam = sigmoid(log G1 - log G2), log G = log Gamma(alpha + 1) + log(U) / alpha, in float64
    on the CPU, U drawn before the Gamma draws; the same with a generator and with the global RNG."""
    def replay(g):
        log_u = torch.rand(2, 5, dtype=torch.float64, generator=g).log()
        gamma = torch._standard_gamma(torch.full((2, 5), 1.3, dtype=torch.float64), generator=g)
        log_g = gamma.log() + log_u / 0.3
        return torch.sigmoid(log_g[0] - log_g[1]).float()

    lam = sample_lambda(0.3, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(lam, replay(torch.Generator().manual_seed(4)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        lam = sample_lambda(0.3, 5)
        torch.manual_seed(4)
        assert torch.equal(lam, replay(None))


def test_large_alpha_lambda_is_torchs_beta_seeded_from_the_generator():
    """alpha >= 1: one seed in [0, 2^62) drawn from the generator seeds torch's Beta sampler in a fork."""
    lam = sample_lambda(2.0, 4, generator=torch.Generator().manual_seed(6))
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(6)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        expected = torch.distributions.Beta(torch.full((4,), 2.0), torch.full((4,), 2.0)).sample()
    assert torch.equal(lam, expected)


def _replay_cutmix(x, lam, perm, seed):
    """CutMix by hand, one box per entry of lam from a generator seeded with ``seed``: centres cy, cx
    uniform over the image, sides sqrt(1 - lam) * (H, W), rounded and clipped at the border; the box
    comes from x[perm] (every sample for a scalar lam, sample b for lam[b]). Returns (mixed, lam used)."""
    n, _, h, w = x.shape
    lams = lam.reshape(-1).tolist()
    g = torch.Generator().manual_seed(seed)
    cy, cx = (torch.rand(len(lams), generator=g) * size for size in (h, w))
    out, used = x.clone(), []
    for b, share in enumerate(lams):
        half_h, half_w = math.sqrt(1 - share) * h / 2, math.sqrt(1 - share) * w / 2
        y0, y1 = (min(max(round(float(cy[b]) + s * half_h), 0), h) for s in (-1, 1))
        x0, x1 = (min(max(round(float(cx[b]) + s * half_w), 0), w) for s in (-1, 1))
        for i in (range(n) if len(lams) == 1 else [b]):
            out[i, :, y0:y1, x0:x1] = x[perm[i], :, y0:y1, x0:x1]
        used.append(1 - (y1 - y0) * (x1 - x0) / (h * w))
    return out, torch.tensor(used).view(lam.shape)


@pytest.mark.parametrize("shape, per_sample", [((3, 2, 5, 7), False), ((64, 2, 5, 7), True), ((16, 1, 1, 40), True),
                                                ((16, 1, 40, 1), True)])
def test_cutmix_pastes_the_box_its_generator_draws(shape, per_sample):
    """Pixels inside the hand-replayed box come from x[perm], all others from x, and lam_used is
    1 - box area / image area. 64 per-sample boxes on a 5 x 7 image include ones clipped at every border;
    on 1-pixel-high (or -wide) images many boxes round to an empty side and paste nothing."""
    n = shape[0]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*shape, generator=g)
    perm = torch.randperm(n, generator=g)
    lam = torch.cat([torch.tensor([0.0, 1.0]), torch.rand(n - 2, generator=g)]) if per_sample else torch.tensor(0.45)
    out, used = cutmix(x, lam, perm, generator=torch.Generator().manual_seed(11))
    expected, expected_used = _replay_cutmix(x, lam, perm, 11)
    assert torch.equal(out, expected)
    assert used.dtype == torch.float32 and torch.allclose(used, expected_used, atol=1e-6)
    assert not torch.equal(out, x)


def test_cutmix_without_checks_or_generator_is_the_same_cutmix():
    """check=False takes lam as float32 however it comes (a float64 tensor here), like check=True;
    without a generator the box comes from the global RNG."""
    x, perm = torch.randn(4, 1, 6, 6), torch.tensor([1, 2, 3, 0])
    lam = torch.tensor(0.5, dtype=torch.float64)
    checked = cutmix(x, lam, perm, generator=torch.Generator().manual_seed(1))
    unchecked = cutmix(x, lam, perm, generator=torch.Generator().manual_seed(1), check=False)
    assert torch.equal(checked[0], unchecked[0]) and unchecked[1].dtype == checked[1].dtype == torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        assert torch.equal(cutmix(x, lam, perm)[0], checked[0])


def test_inputmix_is_its_dirichlet_and_two_permutations_replayed():
    """Coefficients 0.5 + 0.5 l1, 0.5 l2, 0.5 l3 with l = e / sum(e), e = -log U (U: n x 3 uniforms),
    then partners randperm, randperm, all from the one generator; trailing dims are broadcast."""
    x = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    e = -torch.log(torch.rand(5, 3, generator=g))
    p1, p2 = torch.randperm(5, generator=g), torch.randperm(5, generator=g)
    l = (e / e.sum(1, keepdim=True)).view(5, 3, 1, 1)
    expected = (0.5 + 0.5 * l[:, 0]) * x + 0.5 * l[:, 1] * x[p1] + 0.5 * l[:, 2] * x[p2]
    assert torch.allclose(inputmix(x, generator=torch.Generator().manual_seed(3)), expected, atol=1e-6)
    pair = inputmix_pair(x[:2], x[2:4], generator=torch.Generator().manual_seed(3))
    whole = inputmix(x[:4], generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat(pair), whole)  # the pair is one InputMix batch of 2N, split again


def test_inputmix_takes_a_batch_of_scalars_and_keeps_a_half_precision_dtype():
    """x of shape (N,) is N scalar inputs; fp16 and float64 inputs come back in their own dtype."""
    x = torch.arange(6.0)
    assert inputmix(x, generator=torch.Generator().manual_seed(0)).shape == (6,)
    for dtype in (torch.float16, torch.float64):
        assert inputmix(x.to(dtype), generator=torch.Generator().manual_seed(0)).dtype == dtype


def test_imix_is_lambda_then_perm_then_the_mix_replayed():
    """imix draws lam (no max(lam, 1 - lam) unless asked), then perm, from its generator; "cutmix" then
    draws the box from the same generator and mixes the targets with the clipped share."""
    x, n = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(0)), 6
    g = torch.Generator().manual_seed(3)
    lam = sample_lambda(1.0, generator=g)
    perm = torch.randperm(n, generator=g)
    plain = imix(x, 1.0, generator=torch.Generator().manual_seed(3))
    assert float(lam) < 0.5 and torch.equal(plain.lam, lam) and torch.equal(plain.perm, perm)
    assert plain.mode == "mixup" and torch.equal(plain.inputs, mixup(x, lam, perm))
    boxed = imix(x, 1.0, mode="cutmix", generator=torch.Generator().manual_seed(3))
    expected, used = cutmix(x, lam, perm, generator=g)
    assert boxed.inputs.shape == x.shape and torch.equal(boxed.inputs, expected) and torch.equal(boxed.lam, used)
    assert torch.equal(boxed.targets, mix_targets(torch.eye(n), used, perm))


def test_mixed_apply_to_draws_the_second_cutmix_box_from_the_generator_it_is_given():
    """apply_to(view, g) in "cutmix" mode is cutmix(view, lam, perm) with a box drawn from g."""
    a, b = torch.randn(2, 5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    first = imix(a, 1.0, mode="cutmix", generator=torch.Generator().manual_seed(2))
    second, lam2 = first.apply_to(b, torch.Generator().manual_seed(8))
    expected, used = cutmix(b, first.lam, first.perm, generator=torch.Generator().manual_seed(8))
    assert torch.equal(second, expected) and torch.equal(lam2, used)


def test_mixup_and_mix_targets_mix_in_the_dtype_of_their_input():
    """A float32 lam is cast to x's (or the targets') dtype before 1 - lam: in float64, 1 - lam for
    lam = float32(1/3) is 0.66666665673..., which float32 would round to 0.66666662693... fp16 stays fp16."""
    x, perm = torch.randn(4, 3, dtype=torch.float64), torch.tensor([3, 0, 1, 2])
    for lam in (torch.tensor(1 / 3), torch.full((4,), 1 / 3)):
        lam64 = lam.double().view(-1, *([1] * (lam.dim())))
        assert torch.equal(mixup(x, lam, perm), lam64 * x + (1 - lam64) * x[perm])
        eye = torch.eye(4, dtype=torch.float64)
        assert torch.equal(mix_targets(eye, lam, perm), lam64 * eye + (1 - lam64) * eye[perm])
    assert mixup(x.half(), torch.full((4,), 0.3), perm).dtype == torch.float16
    assert mixup(torch.arange(4.0), 0.25, perm).tolist() == [2.25, 0.25, 1.25, 2.25]  # (N,): N scalar inputs


def test_mix_targets_one_hot_encodes_class_ids_with_num_classes():
    """Class ids [0, 1, 1] with num_classes=4 become 4 columns, though the ids only reach 1."""
    mixed = mix_targets(torch.tensor([0, 1, 1]), 0.5, torch.tensor([1, 2, 0]), num_classes=4)
    assert mixed.tolist() == [[0.5, 0.5, 0, 0], [0, 1.0, 0, 0], [0.5, 0.5, 0, 0]]


def test_everything_mixing_returns_lives_on_the_inputs_device():
    """On the meta device (shapes only, no CPU fallback), a coefficient, box, index or label tensor
    left on the CPU fails or shows; a CPU generator may draw the randomness."""
    x, perm = torch.empty(4, 2, 5, 7, device="meta"), torch.tensor([1, 0, 3, 2])
    g = torch.Generator().manual_seed(0)
    outputs = [mixup(x, torch.rand(4), perm, check=False), inputmix(x, generator=g, check=False),
               *cutmix(x, torch.rand(4), perm, generator=g, check=False), sample_lambda(1.0, device="meta"),
               mix_targets(torch.eye(4, device="meta"), torch.rand(4), perm, check=False)]
    for mode in ("mixup", "cutmix"):
        outputs += imix(x, 1.0, mode=mode, generator=g, check=False)[:4]
    assert all(t.device.type == "meta" for t in outputs)
    assert sample_lambda(1.0).device.type == "cpu"


def test_mixing_with_check_false_reads_no_tensor_value_on_the_host(monkeypatch):
    """check=False is the training step's path: no bool(t), t.item(), float(t) (each a GPU sync) in
    mixup, mix_targets, cutmix, inputmix, imix (either mode) or Mixed.apply_to. lam is fixed, as torch's
    Beta sampler reads its parameters."""
    import imix_teach.mixing as mixing

    x, perm, g = torch.randn(4, 1, 6, 6), torch.tensor([1, 0, 3, 2]), torch.Generator().manual_seed(0)
    monkeypatch.setattr(mixing, "sample_lambda", lambda alpha, n=None, **kw: torch.full(() if n is None else (n,), 0.3))

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    for attr in ("__bool__", "item", "tolist", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, attr, host_read)
    mixup(x, torch.tensor(0.3), perm, check=False)
    mix_targets(torch.eye(4), torch.tensor(0.3), perm, check=False)
    cutmix(x, torch.tensor(0.3), perm, generator=g, check=False)
    inputmix(x, generator=g, check=False)
    for mode in ("mixup", "cutmix"):
        imix(x, 1.0, mode=mode, generator=g, check=False).apply_to(x, g)


_X, _PERM = torch.randn(3, 2), torch.tensor([2, 0, 1])
_IMAGES, _NAN = torch.randn(3, 1, 4, 4), torch.tensor([[0.0, float("nan")]] * 3)


@pytest.mark.parametrize("call, error, message", [
    (lambda: sample_lambda(0.0), ValueError, r"^alpha must be a finite number > 0"),
    (lambda: mixup(_X, True, _PERM), TypeError, r"^lam must be a number or a tensor of shape \(\) or \(3,\), got bool$"),
    (lambda: mixup(_X, "0.5", _PERM), TypeError, r"^lam must be a number .* got str$"),
    (lambda: mixup(_X, 0.5, [2, 0, 1]), TypeError, r"^perm must be a torch.Tensor"),
    (lambda: mixup(_X, torch.full((3, 1), 0.5), _PERM), ValueError, r"^lam must be a scalar or shape \(3,\), got shape \(3, 1\)$"),
    (lambda: mixup(_X, torch.full((4,), 0.5), _PERM), ValueError, r"^lam must be a scalar or shape \(3,\), got shape \(4,\)$"),
    (lambda: mixup(_X, 1.5, _PERM), ValueError, r"^lam must lie in \[0, 1\]$"),
    (lambda: mixup(_X, -0.1, _PERM), ValueError, r"^lam must lie in \[0, 1\]$"),
    (lambda: mixup(_X, float("nan"), _PERM), ValueError, r"^lam must lie in \[0, 1\]$"),
    (lambda: mixup(_X, torch.tensor([0.5, 1.5, 0.5]), _PERM), ValueError, r"^lam must lie in \[0, 1\]$"),
    (lambda: mixup(_X, 0.5, _PERM.view(3, 1)), ValueError, r"^perm must have shape \(3,\), got \(3, 1\)$"),
    (lambda: mixup(_X, 0.5, _PERM[:2]), ValueError, r"^perm must have shape \(3,\), got \(2,\)$"),
    (lambda: mixup(_X, 0.5, torch.tensor([0, 1, 3])), ValueError, r"^perm must hold integer indices in \[0, 3\)"),
    (lambda: mixup(_X, 0.5, torch.tensor([-1, 0, 1])), ValueError, r"^perm must hold integer indices in \[0, 3\)"),
    (lambda: mixup(_NAN, 0.5, _PERM), ValueError, r"^x contains NaN or inf"),
    (lambda: mixup(torch.tensor(1.0), 0.5, _PERM), ValueError, r"^x must have a batch dimension, got a 0-d tensor$"),
    (lambda: mix_targets([0, 1, 2], 0.5, _PERM), TypeError, r"^targets must be a torch.Tensor"),
    (lambda: mix_targets(torch.tensor([0, 1, 2]), 0.5, _PERM), ValueError,
     r"^targets are class ids: pass num_classes to one-hot encode them$"),
    (lambda: mix_targets(torch.tensor([0, 1, 5]), 0.5, _PERM, num_classes=3), ValueError,
     r"^targets class ids must lie in \[0, 3\)"),
    (lambda: mix_targets(torch.ones(3), 0.5, _PERM), ValueError, r"^targets must be 2-D"),
    (lambda: mix_targets(torch.eye(3).long(), 0.5, _PERM), TypeError, r"^targets must be a floating-point tensor"),
    (lambda: mix_targets(torch.eye(3) * 2, 0.5, _PERM), ValueError, r"^targets rows must sum to 1"),
    (lambda: cutmix(_IMAGES.tolist(), 0.5, _PERM), TypeError, r"^x must be a torch.Tensor"),
    (lambda: cutmix(_X, 0.5, _PERM), ValueError, r"^x must be \(N, C, H, W\) for cutmix, got shape \(3, 2\)$"),
    (lambda: cutmix(_NAN.view(3, 1, 1, 2), 0.5, _PERM), ValueError, r"^x contains NaN or inf"),
    (lambda: cutmix(_IMAGES, 1.5, _PERM), ValueError, r"^lam must lie in \[0, 1\]$"),
    (lambda: inputmix(_PERM), TypeError, r"^x must be a floating-point tensor"),
    (lambda: inputmix(torch.zeros(0, 3)), ValueError, r"^x must be a non-empty batch \(N, \.\.\.\), got shape \(0, 3\)$"),
    (lambda: inputmix(torch.tensor(1.0)), ValueError, r"^x must be a non-empty batch \(N, \.\.\.\), got shape \(\)$"),
    (lambda: inputmix(_NAN), ValueError, r"^x contains NaN or inf"),
    (lambda: inputmix_pair(_NAN, _X), ValueError, r"^view1 contains NaN or inf"),
    (lambda: inputmix_pair(_X, _NAN), ValueError, r"^view2 contains NaN or inf"),
    (lambda: inputmix_pair(_X.tolist(), _X), TypeError, r"^view1 must be a torch.Tensor"),
    (lambda: inputmix_pair(_PERM, _PERM), TypeError, r"^view1 must be a floating-point tensor"),
    (lambda: inputmix_pair(_X[:2], _X), ValueError, r"^view1 and view2 must have the same shape, got \(2, 2\) and \(3, 2\)$"),
    (lambda: imix(_X, 1.0, mode="cut"), ValueError, r"^mode must be 'mixup' or 'cutmix', got 'cut'$"),
    (lambda: imix(_X.tolist(), 1.0), TypeError, r"^x must be a torch.Tensor"),
    (lambda: imix(torch.tensor(1.0), 1.0), ValueError, r"^x must have a batch dimension \(N, \.\.\.\), got a 0-d tensor$"),
    (lambda: imix(_X[:1], 1.0), ValueError, r"^x has batch size 1"),
    (lambda: imix(_X, 1.0, targets=torch.eye(3).long(), check=False), TypeError, r"^targets must be a floating-point"),
    (lambda: imix(_X, 1.0, targets=torch.eye(3).tolist()), TypeError, r"^targets must be a torch.Tensor"),
    (lambda: imix(_NAN, 1.0), ValueError, r"^x contains NaN or inf"),
    (lambda: imix(_X, 1.0, targets=torch.eye(3) * 2), ValueError, r"^targets rows must sum to 1"),
])
def test_mixing_errors_begin_with_the_argument_they_are_about(call, error, message):
    """The contract for bad input: the error's first word names the argument, then what was wrong."""
    with pytest.raises(error, match=message):
        call()


def test_lam_and_perm_edge_cases_are_accepted():
    """lam 0 and 1 (as ints, floats or a per-sample tensor) and a perm with repeats are valid; lam comes
    back as float32 whatever its type (int, float64 tensor)."""
    from imix_teach.mixing import _check_lam_perm

    for lam in (0, 1, 0.0, 1.0, torch.tensor([0.0, 1.0, 0.5]), torch.tensor(1.0, dtype=torch.float64)):
        assert _check_lam_perm(lam, torch.tensor([0, 0, 2]), 3).dtype == torch.float32
    assert torch.equal(mixup(_X, 0, _PERM), _X[_PERM]) and torch.equal(mixup(_X, 1, _PERM), _X)


def test_a_generator_gives_the_same_draws_whatever_the_inputs_device():
    """The draws come from the generator on its own device: mixing a meta batch consumes exactly what
    mixing a CPU batch does, and without a generator nothing is drawn from the CPU's global RNG."""
    x_cpu, x_meta = torch.randn(6, 3), torch.empty(6, 3, device="meta")
    for mix in (lambda x, g: inputmix(x, generator=g, check=False), lambda x, g: imix(x, 1.0, generator=g, check=False)):
        g_cpu, g_meta = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        mix(x_cpu, g_cpu), mix(x_meta, g_meta)
        assert torch.equal(g_cpu.get_state(), g_meta.get_state())
    state = torch.get_rng_state()
    inputmix(x_meta, check=False)
    imix(x_meta, 1.0, generator=torch.Generator().manual_seed(0), check=False)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.random.fork_rng(devices=[]):  # imix without a generator: only torch's Beta sampler uses the CPU RNG
        torch.manual_seed(0)
        imix(x_meta, 1.0, check=False)
        after_imix = torch.get_rng_state()
        torch.manual_seed(0)
        sample_lambda(1.0)
        assert torch.equal(after_imix, torch.get_rng_state())
