"""Losses against closed-form values, direct computations and the linearity of Appendix B."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from imix_teach.losses import (
    byol_loss,
    moco_loss,
    npair_loss,
    simclr_loss,
    simclr_targets,
    soft_cross_entropy,
    supervised_targets,
    unit,
)
from imix_teach.mixing import mix_targets


def _emb(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("n,tau", [(2, 0.2), (4, 0.5), (8, 1.0)])
def test_npair_identical_orthonormal_views_closed_form(n, tau):
    # logits = I / tau, so loss_i = log(1 + (N - 1) exp(-1 / tau)) for every i.
    eye = torch.eye(n)
    expected = math.log(1 + (n - 1) * math.exp(-1 / tau))
    assert npair_loss(eye, eye, tau=tau).item() == pytest.approx(expected, rel=1e-6)


def test_npair_scale_invariant_and_identity_default():
    a, p = _emb()
    plain = npair_loss(a, p)
    assert npair_loss(3 * a, 0.5 * p).item() == pytest.approx(plain.item(), rel=1e-6)
    assert npair_loss(a, p, torch.eye(6)).item() == pytest.approx(plain.item(), rel=1e-6)


def test_npair_matches_direct_formula():
    a, p = _emb()
    tau = 0.3
    an, pn = F.normalize(a, dim=1), F.normalize(p, dim=1)
    direct = 0.0
    for i in range(6):
        sims = torch.stack([an[i] @ pn[k] for k in range(6)]) / tau
        direct += -(sims[i] - torch.logsumexp(sims, 0))
    assert npair_loss(a, p, tau=tau).item() == pytest.approx(direct.item() / 6, rel=1e-5)


def test_soft_cross_entropy_gradient_is_softmax_minus_targets():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 7, generator=g, requires_grad=True)
    targets = torch.softmax(torch.randn(5, 7, generator=g), 1)
    soft_cross_entropy(logits, targets).backward()
    expected = (torch.softmax(logits.detach(), 1) - targets) / 5
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_soft_cross_entropy_ids_equal_one_hot():
    logits, _ = _emb(5, 4)
    ids = torch.tensor([0, 3, 1, 1, 2])
    assert soft_cross_entropy(logits, ids).item() == pytest.approx(
        soft_cross_entropy(logits, F.one_hot(ids, 4).float()).item(), rel=1e-6
    )


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.77, 1.0])
def test_every_loss_is_linear_in_targets(lam):
    """Appendix B: loss(x, lam v_i + (1-lam) v_j) = lam loss(x, v_i) + (1-lam) loss(x, v_j)."""
    a, p = _emb(6, 5, seed=2)
    queue = torch.randn(11, 5)
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    eye = torch.eye(6)
    mixed = mix_targets(eye, lam, perm)
    other = eye[perm]
    for fn in (
        lambda t: npair_loss(a, p, t),
        lambda t: moco_loss(a, p, queue, t),
        lambda t: byol_loss(a, p, t),
        lambda t: soft_cross_entropy(a @ p.T, t),
    ):
        assert fn(mixed).item() == pytest.approx(lam * fn(eye).item() + (1 - lam) * fn(other).item(), rel=1e-5, abs=1e-6)
    base = simclr_targets(3)
    perm3 = torch.tensor([2, 0, 1])
    perm6 = torch.cat([perm3, perm3 + 3])
    mixed2n = mix_targets(base, lam, perm6)
    anchors = torch.cat([a[:3], p[:3]])
    cands = torch.cat([p[3:], a[3:]])
    lhs = simclr_loss(anchors, cands, mixed2n).item()
    rhs = lam * simclr_loss(anchors, cands, base).item() + (1 - lam) * simclr_loss(anchors, cands, base[perm6]).item()
    assert lhs == pytest.approx(rhs, rel=1e-5, abs=1e-6)


def test_byol_one_hot_is_two_minus_two_cosine():
    p, f = _emb(4, 3, seed=3)
    expected = (2 - 2 * F.cosine_similarity(p, f, dim=1)).mean()
    assert byol_loss(p, f).item() == pytest.approx(expected.item(), rel=1e-6)
    assert byol_loss(p, f, torch.eye(4)).item() == pytest.approx(expected.item(), rel=1e-6)
    # Perfect predictions give zero loss; the target side gets no gradient (it is an EMA constant).
    assert byol_loss(f * 2.0, f).item() == pytest.approx(0.0, abs=1e-6)
    p_req, f_req = p.clone().requires_grad_(True), f.clone().requires_grad_(True)
    byol_loss(p_req, f_req).backward()
    assert f_req.grad is None and p_req.grad.abs().sum() > 0


def test_moco_loss_matches_n_plus_k_way_formula_and_queue_gets_no_mass():
    q, k = _emb(4, 3, seed=4)
    queue = torch.randn(5, 3)
    tau = 0.2
    cands = torch.cat([F.normalize(k, dim=1), F.normalize(queue, dim=1)])
    logits = F.normalize(q, dim=1) @ cands.T / tau
    expected = F.cross_entropy(logits, torch.arange(4))
    assert moco_loss(q, k, queue, tau=tau).item() == pytest.approx(expected.item(), rel=1e-6)
    # Keys are constants: gradients flow into queries only.
    k_req = k.clone().requires_grad_(True)
    q_req = q.clone().requires_grad_(True)
    moco_loss(q_req, k_req, queue).backward()
    assert k_req.grad is None and q_req.grad.abs().sum() > 0


def test_simclr_matches_nt_xent_direct_formula():
    z1, z2 = _emb(3, 4, seed=5)
    tau = 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(6):
        pos = (i + 3) % 6
        others = [j for j in range(6) if j != i]
        denom = torch.logsumexp(torch.stack([z[i] @ z[j] / tau for j in others]), 0)
        total += -(z[i] @ z[pos] / tau - denom)
    zz = torch.cat([z1, z2])
    assert simclr_loss(zz, zz, tau=tau).item() == pytest.approx(total.item() / 6, rel=1e-5)


def test_supervised_targets_rows_normalised():
    t = supervised_targets(torch.tensor([0, 1, 0, 2]))
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert torch.allclose(t[0], torch.tensor([0.5, 0, 0.5, 0]))
    assert torch.allclose(t[3], torch.tensor([0, 0, 0, 1.0]))


def test_lower_tau_sharpens_softmax_and_lowers_loss_for_aligned_views():
    eye = torch.eye(4)
    assert npair_loss(eye, eye, tau=0.1) < npair_loss(eye, eye, tau=1.0)


def test_the_contrastive_losses_default_to_tau_0_2():
    """npair, moco and simclr called without tau use the paper's 0.2: closed forms for orthonormal views.

    Each anchor has cosine 1 with its positive and 0 with every other candidate, so its loss is
    log(1 + (number of negatives) * exp(-1 / 0.2)).
    """
    n = 4
    eye = torch.eye(n, n + 1)  # the last axis is orthogonal to every anchor: the MoCo queue lives there
    queue = torch.zeros(3, n + 1)
    queue[:, n] = 1.0
    closed = lambda negatives: math.log(1 + negatives * math.exp(-1 / 0.2))  # noqa: E731
    assert npair_loss(eye, eye).item() == pytest.approx(closed(n - 1), rel=1e-6)
    assert moco_loss(eye, eye, queue).item() == pytest.approx(closed(n - 1 + 3), rel=1e-6)
    both = torch.cat([eye, eye])  # view 2 = view 1: the positive of i is i + N, 2N - 2 negatives
    assert simclr_loss(both, both).item() == pytest.approx(closed(2 * n - 2), rel=1e-6)


def test_the_smallest_tau_counts_the_anchor_rows_not_the_candidates():
    """tau's lower limit is 4 * rows / float32 max with rows = anchors (the loss is a mean over them):
    2 queries against 2 keys and 62 queue entries take tau = 16 / max, which 64 rows would refuse."""
    q = torch.eye(2, 4)
    keys = q.roll(1, dims=0)  # each query's own key is orthogonal to it, the other key equals it
    queue = torch.zeros(62, 4)
    queue[:, 3] = 1.0
    tau = 16 / torch.finfo(torch.float32).max
    assert moco_loss(q, keys, queue, tau=tau).item() == pytest.approx(1 / tau, rel=1e-5)


def test_each_loss_checks_the_targets_it_is_given():
    """Targets whose rows sum to 2 are refused, naming targets, by every loss that takes them."""
    a, p = _emb(4, 3, seed=7)
    bad = torch.full((4, 4), 0.5)
    both = torch.cat([a, p])
    calls = [lambda: npair_loss(a, p, bad), lambda: moco_loss(a, p, torch.randn(5, 3), bad),
             lambda: byol_loss(a, p, bad), lambda: simclr_loss(both, both, torch.full((8, 8), 0.25))]
    for call in calls:
        with pytest.raises(ValueError, match="^targets rows must sum to 1"):
            call()


def test_the_losses_raise_no_warnings():
    """Every loss runs clean under -W error (a deprecated implicit softmax dim would warn)."""
    a, p = _emb(4, 3, seed=8)
    soft = mix_targets(torch.eye(4), 0.3, torch.tensor([1, 2, 3, 0]))
    both = torch.cat([a, p])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        soft_cross_entropy(a @ p.T, soft)
        npair_loss(a, p, soft)
        moco_loss(a, p, torch.randn(5, 3), soft)
        simclr_loss(both, both)


def test_unit_guards_rows_whose_squared_norm_would_overflow_or_underflow():
    """Huge rows (3e30, or 2e19 in each of 4 columns: squared norm 1.6e39 > float32 max), tiny rows
    (3e-20) and a zero row, side by side with an ordinary one: each row is scaled on its own."""
    x = torch.tensor([[3e30, 4e30, 0, 0], [2e19] * 4, [3e-20, 4e-20, 0, 0], [3.0, 4.0, 0, 0], [0.0] * 4])
    expected = torch.tensor([[0.6, 0.8, 0, 0], [0.5] * 4, [0.6, 0.8, 0, 0], [0.6, 0.8, 0, 0], [0.0] * 4])
    assert torch.allclose(unit(x), expected, atol=1e-6)


def test_unit_is_f_normalize_bit_for_bit_on_every_ordinary_row():
    """Rows whose largest |entry| is 1e-6 (the lower limit itself), 0.01 ... 0.99, or 3e18 ... 9e18 up to
    the upper limit itself, sqrt(float32 max) / sqrt(4) (the squared norm still fits), take F.normalize's path."""
    r = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    top = torch.finfo(torch.float32).max ** 0.5 / 2
    s = torch.tensor([1e-6, 0.01, 0.3, 0.99, 3e18, 5e18, 9e18, top]).repeat_interleave(8).unsqueeze(1)
    x = r / r.abs().amax(1, keepdim=True) * s
    assert torch.equal(unit(x), F.normalize(x, dim=1))


def test_simclr_offset_removes_the_anchors_own_slot_among_gathered_candidates():
    """Rank 1 of 3: this batch's clean rows sit at 6..11 of 18 candidates. Anchor i drops slot 6 + i,
    and its positive is slot 6 + (i + 3) % 6; checked against the NT-Xent formula term by term."""
    g = torch.Generator().manual_seed(9)
    anchors, before, after = (torch.randn(6, 4, generator=g) for _ in range(3))
    cands = torch.cat([before, anchors, after])
    a, z = F.normalize(anchors, dim=1), F.normalize(cands, dim=1)
    total = 0.0
    for i in range(6):
        keep = [j for j in range(18) if j != 6 + i]
        logits = a[i] @ z[keep].T / 0.5
        total += -(logits[keep.index(6 + (i + 3) % 6)] - torch.logsumexp(logits, 0))
    targets = F.pad(simclr_targets(3), (6, 6))
    assert simclr_loss(anchors, cands, targets, 0.5, offset=6).item() == pytest.approx(total.item() / 6, rel=1e-5)


def test_the_losses_make_their_index_tensors_on_the_embeddings_device():
    """On the meta device (shapes only, no CPU fallback) a label or mask tensor made on the CPU fails:
    every loss must build its aranges, masks and default targets where the embeddings are."""
    a, queue = torch.empty(4, 3, device="meta"), torch.empty(5, 3, device="meta")
    for loss in (npair_loss(a, a, check=False), moco_loss(a, a, queue, check=False), simclr_loss(a, a, check=False)):
        assert loss.device.type == "meta"
    assert simclr_targets(2, "meta").device.type == "meta"
