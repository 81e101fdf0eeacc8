"""Property-based fuzz of the public functions, as a user who makes mistakes would call them.

For any valid input the result obeys the math (shapes, ranges, invariances, closed forms); for any
invalid one the error is a TypeError or ValueError whose message names the argument, never a raw
torch error, a NaN or a silently wrong number. Hypothesis draws the cases (small ``max_examples``
so the file runs in a few seconds; ``deadline=None`` because the machine is shared).
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imix_teach import _checks, evaluate, losses, mixing
from imix_teach.data import load
from imix_teach.methods import build_method
from imix_teach.models import TabularMLP
from imix_teach.train import pretrain
from helpers import pretrain_flat

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**31 - 1)
# Wrong kinds of argument a user passes: lists, numpy-less scalars, strings, None, int and bool tensors.
not_a_float_tensor = st.sampled_from([
    [[1.0, 2.0], [3.0, 4.0]], 3.0, "x", None, torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.bool),
])


def _named(error_types, name, fn):
    with pytest.raises(error_types, match=name):
        fn()


# ----------------------------------------------------------------------------- mixing
@FUZZ
@given(alpha=st.floats(1e-3, 1e3), n=st.one_of(st.none(), st.integers(1, 50)), seed=seeds)
def test_sample_lambda_shape_range_determinism(alpha, n, seed):
    state = torch.get_rng_state()
    lam = mixing.sample_lambda(alpha, n, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(state, torch.get_rng_state())
    assert lam.shape == (() if n is None else (n,)) and lam.dtype == torch.float32
    assert bool(((lam >= 0) & (lam <= 1)).all())
    assert torch.equal(lam, mixing.sample_lambda(alpha, n, generator=torch.Generator().manual_seed(seed)))


@FUZZ
@given(alpha=st.sampled_from([0.0, -1.0, float("nan"), float("inf"), "1", None, True]),
       n=st.sampled_from([None, 0, -2, 2.5, "3", True]))
def test_sample_lambda_rejects_bad_alpha_and_n(alpha, n):
    _named((TypeError, ValueError), "alpha", lambda: mixing.sample_lambda(alpha))
    if n is not None:
        _named(ValueError, "n must", lambda: mixing.sample_lambda(1.0, n))


@FUZZ
@given(n=st.integers(2, 12), shape=st.lists(st.integers(1, 4), max_size=3), per_sample=st.booleans(),
       max_lam=st.booleans(), alpha=st.floats(1e-3, 100), seed=seeds)
def test_imix_outputs_are_convex_mixes_with_simplex_targets(n, shape, per_sample, max_lam, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    out = mixing.imix(x, alpha, per_sample=per_sample, max_lam=max_lam, generator=g)
    lam = out.lam.view(-1, *([1] * len(shape)))
    assert torch.allclose(out.inputs, lam * x + (1 - lam) * x[out.perm], atol=1e-6)
    assert torch.allclose(out.targets.sum(1), torch.ones(n)) and bool((out.targets >= 0).all())
    assert torch.allclose(out.targets, mixing.mix_targets(torch.eye(n), out.lam, out.perm))
    if max_lam:
        assert bool((out.lam >= 0.5).all())


@FUZZ
@given(n=st.integers(2, 8), bad=not_a_float_tensor, seed=seeds)
def test_imix_rejects_wrong_inputs_and_targets(n, bad, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    if not torch.is_tensor(bad):
        _named(TypeError, "x", lambda: mixing.imix(bad, 1.0))
    nan_x = x.clone()
    nan_x[seed % n, 0] = float("nan")
    _named(ValueError, "x", lambda: mixing.imix(nan_x, 1.0))
    _named(ValueError, "x", lambda: mixing.imix(x[:1], 1.0))
    scaled = torch.eye(n) * (1 + seed % 5)  # rows sum to 1..5: only 1 is allowed
    if seed % 5:
        _named(ValueError, "targets", lambda: mixing.imix(x, 1.0, targets=scaled))
    _named(ValueError, "targets", lambda: mixing.imix(x, 1.0, targets=torch.eye(n + 1)))
    _named((TypeError, ValueError), "targets", lambda: mixing.imix(x, 1.0, targets=torch.eye(n).long()))


@FUZZ
@given(n=st.integers(1, 8), c=st.integers(1, 6), lam=st.floats(0, 1), seed=seeds)
def test_mixup_and_mix_targets_follow_their_formula_and_name_bad_input(n, c, lam, seed):
    g = torch.Generator().manual_seed(seed)
    x, perm = torch.randn(n, c, generator=g), torch.randperm(n, generator=g)
    assert torch.allclose(mixing.mixup(x, lam, perm), lam * x + (1 - lam) * x[perm])
    ids = torch.randint(0, c, (n,), generator=g)
    mixed = mixing.mix_targets(ids, lam, perm, num_classes=c)
    assert torch.allclose(mixed.sum(1), torch.ones(n), atol=1e-6)
    _named(TypeError, "x", lambda: mixing.mixup(x.tolist(), lam, perm))
    _named(TypeError, "perm", lambda: mixing.mixup(x, lam, perm.tolist()))
    _named(TypeError, "targets", lambda: mixing.mix_targets(ids.tolist(), lam, perm, num_classes=c))
    _named(ValueError, "targets", lambda: mixing.mix_targets(ids + c, lam, perm, num_classes=c))
    _named(ValueError, "perm", lambda: mixing.mixup(x, lam, torch.ones(n, dtype=torch.bool)))


@FUZZ
@given(n=st.integers(1, 10), d=st.integers(1, 5), seed=seeds)
def test_inputmix_keeps_the_principal_input_at_least_half(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    out = mixing.inputmix(torch.eye(n), generator=g)  # row i = sum of coefficients on one-hot rows
    assert torch.allclose(out.sum(1), torch.ones(n), atol=1e-6)
    assert bool((out.diagonal() >= 0.5 - 1e-6).all())
    _named(TypeError, "x", lambda: mixing.inputmix(torch.randn(n, d).tolist()))


# ----------------------------------------------------------------------------- losses
@FUZZ
@given(n=st.integers(2, 8), d=st.integers(1, 6), k=st.integers(1, 6), tau=st.floats(0.05, 1.0),
       log_scale=st.lists(st.floats(-30, 20), min_size=2, max_size=2), seed=seeds)
def test_losses_are_invariant_to_embedding_scale_from_1e_minus_30_to_1e20(n, d, k, tau, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    a, p, q = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    assume(bool((a.abs().amax(1) > 1e-3).all() and (p.abs().amax(1) > 1e-3).all()))
    sa, sp = (10.0 ** s for s in log_scale)
    t = mixing.mix_targets(torch.eye(n), float(torch.rand((), generator=g)), torch.randperm(n, generator=g))
    pairs = [
        (losses.npair_loss(a, p, t, tau), losses.npair_loss(a * sa, p * sp, t, tau)),
        (losses.moco_loss(a, p, q, t, tau), losses.moco_loss(a * sa, p * sp, q * sp, t, tau)),
        (losses.byol_loss(a, p, t), losses.byol_loss(a * sa, p * sp, t)),
        (losses.simclr_loss(torch.cat([a, p]), torch.cat([a, p]), None, tau),
         losses.simclr_loss(torch.cat([a, p]) * sa, torch.cat([a, p]) * sa, None, tau)),
    ]
    for plain, scaled in pairs:
        assert math.isfinite(scaled.item()) and scaled.item() == pytest.approx(plain.item(), rel=1e-4, abs=1e-5)


@FUZZ
@given(n=st.integers(1, 6), d=st.integers(1, 6), seed=seeds)
def test_unit_equals_f_normalize_in_value_and_gradient_where_that_is_accurate(n, d, seed):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, requires_grad=True)
    w = torch.randn(n, d, dtype=torch.float64)
    ours, ref = losses.unit(x), torch.nn.functional.normalize(x, dim=1)
    assert torch.allclose(ours, ref, atol=1e-12) and torch.allclose(ours.norm(dim=1), torch.ones(n, dtype=torch.float64))
    g_ours, = torch.autograd.grad((ours * w).sum(), x)
    g_ref, = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(g_ours, g_ref, atol=1e-10)
    assert torch.equal(losses.unit(torch.zeros(n, d)), torch.zeros(n, d))  # a zero row stays zero, no NaN


@FUZZ
@given(n=st.integers(2, 8), d=st.integers(2, 8), tau=st.sampled_from([1e-8, 1e-4, 0.01, 0.2]),
       dtype=st.sampled_from([torch.float16, torch.bfloat16]), seed=seeds)
def test_low_precision_embeddings_and_tiny_tau_give_finite_losses_close_to_float64(n, d, tau, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    a, p = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    exact = losses.npair_loss(a, p, tau=tau).item()
    low = losses.npair_loss(a.to(dtype), p.to(dtype), tau=tau).item()
    assert math.isfinite(low)
    # bf16 keeps 8 bits of mantissa: cosines are off by ~1e-2, the loss by that over tau.
    assert low == pytest.approx(exact, rel=0.05, abs=0.05 + 0.02 / tau)


@FUZZ
@given(bad=not_a_float_tensor, n=st.integers(2, 6))
def test_losses_name_wrong_types(bad, n):
    a, q = torch.randn(n, 3), torch.randn(4, 3)
    _named(TypeError, "anchors", lambda: losses.npair_loss(bad, a))
    _named(TypeError, "positives", lambda: losses.npair_loss(a, bad))
    _named(TypeError, "queries", lambda: losses.moco_loss(bad, a, q))
    _named(TypeError, "queue", lambda: losses.moco_loss(a, a, bad))
    _named(TypeError, "predictions", lambda: losses.byol_loss(bad, a))
    _named(TypeError, "logits", lambda: losses.soft_cross_entropy(bad, torch.arange(n)))
    _named((TypeError, ValueError), "targets", lambda: losses.soft_cross_entropy(a, [0] * n))


@FUZZ
@given(n=st.integers(1, 6), c=st.integers(1, 5), seed=seeds)
def test_soft_cross_entropy_ids_in_range_match_one_hot_and_out_of_range_are_named(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    logits, ids = torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    one_hot = torch.nn.functional.one_hot(ids, c).float()
    assert losses.soft_cross_entropy(logits, ids).item() == pytest.approx(
        losses.soft_cross_entropy(logits, one_hot).item(), rel=1e-5, abs=1e-6)
    _named(ValueError, "targets", lambda: losses.soft_cross_entropy(logits, ids + c))
    _named(ValueError, "targets", lambda: losses.soft_cross_entropy(logits, ids - c))
    _named(ValueError, "logits", lambda: losses.soft_cross_entropy(torch.zeros(0, c), torch.zeros(0, dtype=torch.long)))


def test_simclr_needs_two_pairs():
    one_pair = torch.randn(2, 4)
    _named(ValueError, "anchors", lambda: losses.simclr_loss(one_pair, one_pair))


# ----------------------------------------------------------------------------- method inputs
@FUZZ
@given(n=st.integers(2, 6), m=st.integers(0, 6), d=st.integers(1, 4), bad=not_a_float_tensor)
def test_views_check_names_mismatched_or_wrongly_typed_views(n, m, d, bad):
    v = torch.randn(n, d)
    _checks.views(v, torch.randn(n, d))
    if m != n:
        _named(ValueError, "view1 and view2", lambda: _checks.views(v, torch.randn(m, d)))
    _named(ValueError, "view1", lambda: _checks.views(v[:1], v[:1]))
    _named(TypeError, "view2", lambda: _checks.views(v, bad))


_METHOD_KWARGS = {"npair": {}, "simclr": {}, "moco": dict(queue_size=8), "byol": dict(pred_hidden=8)}


@pytest.mark.parametrize("name", sorted(_METHOD_KWARGS))
def test_methods_name_views_of_different_sizes(name):
    torch.manual_seed(0)
    model = build_method(name, TabularMLP(3, widths=(8, 8, 16)), proj_hidden=8, proj_dim=4, **_METHOD_KWARGS[name])
    for alpha in (None, 1.0):
        _named(ValueError, "view", lambda: model(torch.randn(4, 3), torch.randn(3, 3), alpha))


@pytest.mark.parametrize("bad", [dict(log_every=0), dict(warmup_epochs=-1), dict(epochs=1.5), dict(inputs=[[0.0] * 3] * 8)])
def test_pretrain_names_bad_arguments(bad):
    torch.manual_seed(0)
    model = build_method("npair", TabularMLP(3, widths=(8, 8, 16)), proj_hidden=8, proj_dim=4)
    args = dict(inputs=torch.randn(8, 3), epochs=1, batch_size=4, progress=False) | bad
    name = next(iter(bad))
    _named((TypeError, ValueError), name, lambda: pretrain_flat(model, args.pop("inputs"), lambda x, g: x, **args))


# ----------------------------------------------------------------------------- evaluate
@FUZZ
@given(n=st.integers(2, 30), d=st.integers(1, 5), c=st.integers(1, 4), k=st.integers(1, 50), seed=seeds)
def test_classifiers_return_accuracies_in_0_1(n, d, c, k, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)
    for acc in (evaluate.knn_accuracy(x, y, x, y, k=k), evaluate.least_squares_accuracy(x, y, x, y),
                evaluate.linear_probe(x, y, x, y, epochs=2, lrs=(0.1, 1.0)).accuracy):
        assert 0.0 <= acc <= 1.0


@FUZZ
@given(case=st.sampled_from([
    ("train_x", dict(train_x=torch.zeros(0, 3), train_y=torch.zeros(0, dtype=torch.long))),
    ("test_x", dict(test_x=torch.zeros(0, 3), test_y=torch.zeros(0, dtype=torch.long))),
    ("train_y", dict(train_y=torch.tensor([0, -1, 1, 0]))),
    ("train_y", dict(train_y=torch.tensor([0.0, 1.0, 1.0, 0.0]))),
    ("train_x", dict(train_x=[[0.0] * 3] * 4)),
    ("train_x", dict(train_x=torch.ones(4, 3, dtype=torch.long))),
    ("lrs", dict(lrs=())), ("lrs", dict(lrs=(float("nan"),))), ("lrs", dict(lrs=(-0.1, 1.0))), ("lrs", dict(lrs=0.1)),
    ("batch_size", dict(batch_size=0)), ("epochs", dict(epochs=0)), ("batch_size", dict(batch_size=2.5)),
]))
def test_linear_probe_names_bad_arguments(case):
    name, bad = case
    args = dict(train_x=torch.randn(4, 3), train_y=torch.tensor([0, 1, 1, 0]), test_x=torch.randn(2, 3),
                test_y=torch.tensor([1, 0]), epochs=1) | bad
    _named((TypeError, ValueError), name, lambda: evaluate.linear_probe(**args))


@FUZZ
@given(bad=st.sampled_from([dict(k=0), dict(k=1.5), dict(temperature=0.0), dict(temperature=float("nan")),
                            dict(batch_size=0)]))
def test_knn_names_bad_arguments(bad):
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    _named((TypeError, ValueError), next(iter(bad)), lambda: evaluate.knn_accuracy(x, y, x, y, **bad))


# ----------------------------------------------------------------------------- data.load
@settings(max_examples=15, deadline=None)
@given(name=st.one_of(st.sampled_from(["digits", "DIGITS", "digit", "", "mnist"]), st.integers(), st.none()),
       split=st.sampled_from(["train", "test", "val", "Train", None, 3]))
def test_load_names_unknown_datasets_and_splits(name, split):
    valid = isinstance(name, str) and name.lower() == "digits" and split in ("train", "test")
    if valid:
        data = load(name, split, per_class=2)
        assert len(data) == 20 and set(data.labels.tolist()) == set(range(10))
    else:
        _named(ValueError, "name" if not (isinstance(name, str) and name.lower() == "digits") else "split",
               lambda: load(name, split))


@settings(max_examples=20, deadline=None)
@given(option=st.sampled_from(["image_size", "test_size", "seed", "per_class"]),
       value=st.one_of(st.integers(-5, 40), st.floats(0.5, 20), st.sampled_from(["8", True, [8]])))
def test_load_options_take_valid_values_or_name_the_option(option, value):
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= {
        "image_size": 4, "test_size": 10, "seed": 0, "per_class": 1}[option]
    if valid:
        data = load("digits", "test", **{option: value})
        assert data.inputs.dtype == torch.uint8 and int(data.labels.max()) < 10
    else:
        _named((TypeError, ValueError), option, lambda: load("digits", "test", **{option: value}))


@pytest.mark.parametrize("name", ["covtype", "higgs", "fsdd", "cifar10"])
def test_missing_data_names_the_path_looked_at(tmp_path, name):
    _named(FileNotFoundError, str(tmp_path), lambda: load(name, root=tmp_path, download=False))
