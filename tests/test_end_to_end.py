"""Short real runs on scikit-learn's digits: every method learns with and without i-Mix."""
import pytest
import torch

from imix_teach.data import load
from imix_teach.engine import run


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train"), load("digits", "test")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["npair", "simclr", "moco", "byol", "supnpair"])
@pytest.mark.parametrize("alpha", [None, 1.0])
def test_short_pretraining_lowers_the_loss_and_probe_beats_chance(digits, method, alpha):
    train, test = digits
    r = run(method, train.subset(torch.arange(384)), test, alpha=alpha, epochs=4, batch_size=64,
            probe_epochs=20, probes=("linear", "knn"), progress=False)
    assert r.history.epoch_loss[-1] < r.history.epoch_loss[0]
    assert r.linear > 0.6 and r.knn > 0.4  # chance is 0.1 on ten balanced classes
