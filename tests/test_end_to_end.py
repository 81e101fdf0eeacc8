"""Short real runs on scikit-learn's digits: every method learns with and without i-Mix."""
import pytest
import torch

from imix_teach.data import load
from imix_teach.engine import floor, run


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train"), load("digits", "test")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["npair", "simclr", "moco", "byol", "supnpair"])
@pytest.mark.parametrize("alpha", [None, 1.0])
def test_short_pretraining_lowers_the_loss_and_probe_beats_chance(digits, method, alpha):
    train, test = digits
    settings = dict(alpha=alpha, epochs=4, batch_size=64, probe_epochs=20, probes=("linear", "knn"), progress=False)
    r = run(method, train.subset(torch.arange(384)), test, **settings)
    assert r.history.epoch_loss[-1] < r.history.epoch_loss[0]
    # A random encoder already separates digits well (kNN ~0.77): pretraining must beat the same weights untrained.
    untrained = floor(method, train.subset(torch.arange(384)), test, **settings)
    assert r.knn > untrained.knn, f"{method}: kNN {r.knn:.3f} after pretraining, {untrained.knn:.3f} before"
