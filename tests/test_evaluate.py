"""Evaluation: classifiers on features with known answers."""
import pytest
import torch

from imix_teach.evaluate import extract_features, knn_accuracy, least_squares_accuracy, linear_probe


def _blobs(n_per=60, d=8, classes=3, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(n_per)
    x = centres[y] + spread * torch.randn(len(y), d, generator=g)
    return x, y


def test_all_classifiers_solve_separable_blobs_and_fail_on_random_labels():
    x, y = _blobs()
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(len(y), generator=g)
    train, test = perm[:120], perm[120:]
    assert linear_probe(x[train], y[train], x[test], y[test], epochs=30).accuracy == 1.0
    assert knn_accuracy(x[train], y[train], x[test], y[test], k=10) == 1.0
    assert least_squares_accuracy(x[train], y[train], x[test], y[test]) == 1.0
    noise = torch.randint(0, 3, (180,), generator=g)
    assert knn_accuracy(x[train], noise[train], x[test], noise[test], k=10) < 0.6


def test_knn_weighting_closed_form():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    train_y = torch.tensor([0, 0, 1])
    # The query sits on class 1's point; with k=3 and a sharp temperature class 1 must win.
    assert knn_accuracy(train_x, train_y, torch.tensor([[0.0, 1.0]]), torch.tensor([1]), k=3, temperature=0.05) == 1.0
    # A flat temperature lets the two class-0 votes outweigh it.
    assert knn_accuracy(train_x, train_y, torch.tensor([[0.0, 1.0]]), torch.tensor([1]), k=3, temperature=100.0) == 0.0


def test_least_squares_is_exact_on_a_linear_problem():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert least_squares_accuracy(x, y, torch.tensor([[0.2], [2.8]]), torch.tensor([0, 1])) == 1.0


def test_extract_features_eval_mode_restored_and_deterministic():
    enc = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5))
    enc.train()
    x = torch.randn(10, 4)
    f1 = extract_features(enc, x, batch_size=3)
    f2 = extract_features(enc, x, transform=lambda b: b, batch_size=7)
    assert f1.shape == (10, 3) and torch.allclose(f1, f2) and enc.training


def test_bad_feature_inputs_are_named():
    x, y = _blobs()
    with pytest.raises(ValueError, match="train_x"):
        knn_accuracy(x[:, :2], y, x, y)
    with pytest.raises(ValueError, match="test_x"):
        linear_probe(x, y, x * float("nan"), y)
