"""SPEC §4: every public function rejects bad input with a ValueError that names the argument."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from imix_teach import losses, mixing


def _raises(fn, name):
    with pytest.raises(ValueError, match=name):
        fn()


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_alpha_must_be_positive(alpha):
    _raises(lambda: mixing.sample_lambda(alpha), "alpha")
    _raises(lambda: mixing.imix(torch.randn(4, 2), alpha), "alpha")


@pytest.mark.parametrize("tau", [0.0, -0.5])
def test_tau_must_be_positive(tau):
    a = torch.randn(4, 3)
    _raises(lambda: losses.npair_loss(a, a, tau=tau), "tau")
    _raises(lambda: losses.moco_loss(a, a, torch.randn(5, 3), tau=tau), "tau")
    _raises(lambda: losses.simclr_loss(a, a, tau=tau), "tau")


def test_batch_of_one_is_rejected():
    a = torch.randn(1, 3)
    _raises(lambda: losses.npair_loss(a, a), "anchors")
    _raises(lambda: losses.moco_loss(a, a, torch.randn(2, 3)), "queries")
    # BYOL needs no negatives: one pair is fine and gives 2 - 2 cos = 0 for identical vectors.
    assert losses.byol_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    _raises(lambda: mixing.imix(a, 1.0), "x")


def test_shape_mismatches_are_named():
    a = torch.randn(4, 3)
    _raises(lambda: losses.npair_loss(a, torch.randn(5, 3)), "positives")
    _raises(lambda: losses.npair_loss(a, a, torch.eye(3)), "targets")
    _raises(lambda: losses.moco_loss(a, a, torch.randn(5, 2)), "queue")
    _raises(lambda: losses.byol_loss(a, torch.randn(4, 2)), "target_embeddings")
    _raises(lambda: losses.soft_cross_entropy(a, torch.eye(4)), "targets")
    _raises(lambda: mixing.mixup(a, 0.5, torch.arange(3)), "perm")
    _raises(lambda: mixing.mixup(a, torch.rand(3), torch.arange(4)), "lam")
    _raises(lambda: mixing.mix_targets(torch.eye(4), 0.5, torch.arange(5)), "perm")


def test_targets_off_the_simplex_are_rejected():
    a = torch.randn(4, 3)
    bad_sum = torch.eye(4) * 0.9
    negative = torch.eye(4) * 2 - torch.eye(4)[[1, 2, 3, 0]]
    for t in (bad_sum, negative):
        _raises(lambda: losses.npair_loss(a, a, t), "targets")
        _raises(lambda: losses.moco_loss(a, a, torch.randn(2, 3), t), "targets")
        _raises(lambda: losses.byol_loss(a, a, t), "targets")
        _raises(lambda: losses.soft_cross_entropy(a @ a.T, t), "targets")
        _raises(lambda: mixing.mix_targets(t, 0.5, torch.arange(4)), "targets")


_finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 9),
    d=st.integers(1, 6),
    k=st.integers(1, 7),
    tau=st.floats(0.05, 2.0),
    bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    where=st.integers(0, 10_000),
    seed=st.integers(0, 2**16),
)
def test_property_finite_inputs_work_and_any_nonfinite_entry_is_named(n, d, k, tau, bad, where, seed):
    g = torch.Generator().manual_seed(seed)
    a, p, queue = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    perm = torch.randperm(n, generator=g)
    lam = float(torch.rand((), generator=g))
    targets = mixing.mix_targets(torch.eye(n), lam, perm)
    for value in (
        losses.npair_loss(a, p, targets, tau),
        losses.moco_loss(a, p, queue, targets, tau),
        losses.byol_loss(a, p, targets),
        losses.soft_cross_entropy(a @ p.T, targets),
    ):
        assert math.isfinite(value.item()) and value.item() >= -1e-5
    def poison(t):
        flat = t.clone().view(-1)
        flat[where % flat.numel()] = bad
        return flat.view(t.shape)

    poisoned = poison(a)
    _raises(lambda: losses.npair_loss(poisoned, p, targets, tau), "anchors")
    _raises(lambda: losses.npair_loss(a, poisoned, targets, tau), "positives")
    _raises(lambda: losses.moco_loss(a, p, poison(queue), targets, tau), "queue")
    _raises(lambda: losses.byol_loss(poisoned, p, targets), "predictions")
    _raises(lambda: mixing.mixup(poisoned, lam, perm), "x")
    _raises(lambda: losses.soft_cross_entropy(poisoned @ p.T, targets), "logits")
