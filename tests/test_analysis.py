"""imix_teach.course.analysis: Fréchet distance against closed forms, collapse diagnostics, class splits, sweeps."""
import math

import numpy as np
import pytest
import torch

from imix_teach.course.analysis import (
    effective_rank,
    embedding_spread,
    evaluate_encoder,
    frechet_distance,
    gaussian_frechet_distance,
    instance_accuracy,
    plot_sweep,
    retrieval_gap,
    split_classes,
    summarize,
    sweep,
    sweep_table,
    train_test_gap,
    view_retrieval_accuracy,
)
from helpers import result


# ----------------------------------------------------------------------------- Fréchet distance
def test_gaussian_frechet_distance_identical_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    cov = a @ a.T + np.eye(5)
    assert gaussian_frechet_distance(np.ones(5), cov, np.ones(5), cov) == pytest.approx(0.0, abs=1e-9)


def test_gaussian_frechet_distance_diagonal_closed_form():
    # Commuting (diagonal) covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()  # 5 + 1 + 1 = 7
    assert expected == pytest.approx(7.0)
    assert gaussian_frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_gaussian_frechet_distance_non_commuting_matches_scipy_form():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    cross = np.real(scipy_linalg.sqrtm(c1 @ c2))
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * cross)
    assert gaussian_frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-7)
    # symmetric in its two arguments
    assert gaussian_frechet_distance(mu2, c2, mu1, c1) == pytest.approx(expected, rel=1e-7)


def test_gaussian_frechet_distance_1d_is_squared_w2():
    # 1-D: W2^2 = (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    assert gaussian_frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9.0 + 1.0)


def test_frechet_distance_of_identical_sets_is_zero():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, x.clone(), normalize=True) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_samples_approaches_the_gaussians():
    rng = np.random.default_rng(2)
    n, d = 200_000, 3
    a = rng.normal(size=(n, d)) * np.array([1.0, 2.0, 3.0])
    b = rng.normal(size=(n, d)) * np.array([2.0, 2.0, 1.0]) + np.array([1.0, 0.0, 0.0])
    expected = 1.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2  # 6
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_shift_only_gives_squared_shift():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    assert frechet_distance(x, x + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)


def test_frechet_distance_normalize_ignores_scale():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(4))
    y = torch.randn(300, 5, generator=torch.Generator().manual_seed(5))
    assert frechet_distance(x, 7.0 * y, normalize=True) == pytest.approx(frechet_distance(x, y, normalize=True), rel=1e-6)


@pytest.mark.parametrize("a, b, match", [
    (torch.zeros(5, 3), torch.zeros(5, 4), "same D"),
    (torch.zeros(1, 3), torch.zeros(5, 3), "at least 2 rows"),
    (torch.full((4, 2), float("nan")), torch.zeros(4, 2), "finite"),
])
def test_frechet_distance_rejects_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)


# ----------------------------------------------------------------------------- diagnostics
def test_instance_accuracy_perfect_and_chance():
    x = torch.eye(6)
    assert instance_accuracy(x, x) == 1.0
    assert instance_accuracy(x, x[[1, 2, 3, 4, 5, 0]]) == 0.0
    with pytest.raises(ValueError, match="first and second"):
        instance_accuracy(torch.zeros(3, 2), torch.zeros(4, 2))


def test_effective_rank_bounds():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(5000, 4, generator=g)
    assert effective_rank(spread) == pytest.approx(4.0, rel=0.05)
    line = torch.randn(100, 1, generator=g) * torch.tensor([[1.0, 2.0, 3.0]])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)


def test_train_test_gap():
    r = result("npair", None, 0, linear=0.6, train_accuracy=0.9)
    assert train_test_gap(r) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="linear"):
        train_test_gap(result("npair", None, 0, knn=0.5))


def test_split_classes_relabels(tmp_path):
    from imix_teach.data import load

    digits = load("digits", "test")
    part = split_classes(digits, [7, 3])
    assert part.classes == [digits.classes[7], digits.classes[3]]
    assert set(part.labels.tolist()) == {0, 1}
    assert len(part) == int(((digits.labels == 7) | (digits.labels == 3)).sum())
    # the images follow their labels: class 7's rows are the new class 0's rows
    assert torch.equal(part.inputs[part.labels == 0], digits.inputs[digits.labels == 7])
    with pytest.raises(ValueError, match="keep"):
        split_classes(digits, [3, 3])


# ----------------------------------------------------------------------------- sweeps
def _fake_run(value, variant, seed):
    base = 0.5 + 0.01 * value + (0.1 if variant == "i-Mix" else 0.0)
    return {"knn": base + 0.01 * seed, "linear": base}


def test_sweep_summarize_and_table():
    rows = sweep([1, 2], _fake_run, seeds=(0, 2), verbose=False)
    assert len(rows) == 2 * 2 * 2
    assert {"value", "variant", "seed", "knn", "linear", "seconds"} <= set(rows[0])
    stats = summarize(rows, "knn")
    mu, sd, n = stats[("i-Mix", 2)]
    assert n == 2 and mu == pytest.approx(100 * (0.5 + 0.02 + 0.1 + 0.01))
    assert sd == pytest.approx(100 * np.std([0.0, 0.02], ddof=1))
    table = sweep_table(rows, "linear", name="width")
    assert table.splitlines()[0].startswith("| width | baseline | i-Mix | gain")
    assert "+10.0" in table


def test_sweep_accepts_run_results_and_plots():
    import matplotlib

    matplotlib.use("Agg")

    def run_one(value, variant, seed):
        return result("npair", None if variant == "baseline" else 1.0, seed, linear=0.5, knn=0.4 + 0.01 * math.log(value))

    rows = sweep([1, 4], run_one, verbose=False)
    assert rows[0]["knn"] == pytest.approx(0.4) and rows[0]["least_squares"] is None
    ax = plot_sweep(rows, "knn", log_x=True, xlabel="epochs")
    assert len(ax.lines) >= 2
    categorical = sweep(["mixup", "cutmix"], lambda v, var, s: {"knn": 0.5}, variants=("i-Mix",), verbose=False)
    ax = plot_sweep(categorical, "knn")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mixup", "cutmix"]


def test_evaluate_encoder_matches_run_protocol():
    from imix_teach.data import load
    from imix_teach.models import build_encoder

    digits = load("digits", "test")
    train, test = digits.subset(torch.arange(300)), digits.subset(torch.arange(300, 500))
    torch.manual_seed(0)
    out = evaluate_encoder(build_encoder(train.input_shape, "small", 8), train, test,
                           evaluate=("linear", "knn", "least_squares"), probe_epochs=5)
    assert set(out) == {"linear", "train_accuracy", "knn", "least_squares"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["knn"] > 0.3  # random conv features already beat chance (0.1) on digits
    with pytest.raises(ValueError, match="evaluate"):
        evaluate_encoder(build_encoder(train.input_shape, "small", 8), train, test, evaluate=("probe",))


def test_embedding_spread_limits():
    assert embedding_spread(torch.ones(50, 8)) < 1e-6  # collapsed
    spread = embedding_spread(torch.randn(4000, 8, generator=torch.Generator().manual_seed(0)))
    assert 0.9 < spread < 1.1  # isotropic


def test_view_retrieval_accuracy_bounds():
    from imix_teach.data import load
    from imix_teach.models import build_encoder

    data = load("digits", "train", per_class=5)
    torch.manual_seed(0)
    encoder = build_encoder(tuple(data.input_shape), "small", 4)
    acc = view_retrieval_accuracy(encoder, data, batch_size=16, batches=2)
    assert 0.0 <= acc <= 1.0
    assert encoder.training  # the train/eval mode is restored

    class Identity(torch.nn.Module):  # identical views are always retrieved: patch augment to the transform
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x.flatten(1) * self.w

    from dataclasses import replace
    clean = replace(data, augmenter=lambda x, g: data.transform(x))
    assert view_retrieval_accuracy(Identity(), clean, batch_size=16, batches=2) == 1.0
    gap = retrieval_gap(Identity(), clean, clean, batch_size=16, batches=2)
    assert gap == {"retrieval_train": 1.0, "retrieval_test": 1.0, "retrieval_gap": 0.0}
