"""Exercises of notebooks 01 and 02: every reference solution passes its checker, wrong answers fail."""
import math

import torch
import torch.nn.functional as F

from imix_teach import supervised
from imix_teach.course.exercises import nb01, nb02, show_solution
from imix_teach.losses import npair_loss, simclr_loss


# ----------------------------------------------------------------------------- nb01
def test_nb01_solution_passes(capsys):
    assert nb01.check_mixup_batch(nb01.solution_mixup_batch)
    assert "[ok]" in capsys.readouterr().out


def test_nb01_stub_is_not_done_and_does_not_raise(capsys):
    assert not nb01.check_mixup_batch(lambda x, y, lam, perm: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb01_wrong_answers_are_reported(capsys):
    # labels left unmixed
    assert not nb01.check_mixup_batch(lambda x, y, lam, perm: (nb01.solution_mixup_batch(x, y, lam, perm)[0], y))
    # lam and 1 - lam swapped
    assert not nb01.check_mixup_batch(lambda x, y, lam, perm: nb01.solution_mixup_batch(x, y, 1 - torch.as_tensor(lam), perm))
    # a single tensor instead of a pair
    assert not nb01.check_mixup_batch(lambda x, y, lam, perm: x)
    # an answer that raises is a verdict, not a crash
    assert not nb01.check_mixup_batch(lambda x, y, lam, perm: (x * lam + (1 - lam) * x[perm], y))
    assert "[x]" in capsys.readouterr().out


def test_nb01_ece_known_values():
    labels = torch.tensor([0, 1, 0, 1])
    perfect = F.one_hot(labels, 2).float()  # confidence 1, all correct
    assert supervised.expected_calibration_error(perfect, labels) == 0.0
    wrong = F.one_hot(1 - labels, 2).float()  # confidence 1, all wrong
    assert math.isclose(supervised.expected_calibration_error(wrong, labels), 1.0)
    # confidence 0.75 everywhere, 3 of 4 right: calibrated
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert math.isclose(supervised.expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])), 0.0, abs_tol=1e-6)
    # same confidence, half right: gap 0.25
    assert math.isclose(supervised.expected_calibration_error(probs, torch.tensor([0, 0, 1, 1])), 0.25, abs_tol=1e-6)


def test_nb01_train_classifier_runs_tiny():
    from imix_teach.data import load

    train = load("digits", "train", per_class=6)
    test = load("digits", "test", per_class=3)
    for alpha in (None, 1.0):
        r = supervised.train_classifier(train, test, alpha=alpha, epochs=1, batch_size=16, width=4, device="cpu",
                                  augment=supervised.supervised_augment(train))
        assert 0.0 <= r.accuracy <= 1.0 and 0.0 <= r.ece <= 1.0 and math.isfinite(r.nll)
        assert r.probs.shape == (len(test), 10) and len(r.epoch_loss) == 1


def test_nb01_show_solution(capsys):
    show_solution("nb01.solution_mixup_batch")
    assert "def solution_mixup_batch" in capsys.readouterr().out


# ----------------------------------------------------------------------------- nb02
def test_nb02_solutions_pass():
    assert nb02.check_npair_logits(nb02.solution_npair_logits)
    assert nb02.check_npair_from_logits(nb02.solution_npair_from_logits)
    assert nb02.check_closed_form(8, 0.2)


def test_nb02_stubs_are_not_done(capsys):
    assert not nb02.check_npair_logits(lambda a, p, tau: None)
    assert not nb02.check_npair_from_logits(lambda logits, targets: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb02_wrong_answers_are_reported():
    # forgot to normalise
    assert not nb02.check_npair_logits(lambda a, p, tau: a @ p.T / tau)
    # forgot the temperature
    assert not nb02.check_npair_logits(lambda a, p, tau: F.normalize(a, dim=1) @ F.normalize(p, dim=1).T)
    # ignores the (mixed) targets: only right for the identity
    assert not nb02.check_npair_from_logits(lambda logits, t: F.cross_entropy(logits, torch.arange(len(logits))))
    # softmax over the wrong axis
    assert not nb02.check_npair_from_logits(lambda logits, t: -(t * F.log_softmax(logits, dim=0)).sum(1).mean())
    # sum instead of mean over anchors
    assert not nb02.check_npair_from_logits(lambda logits, t: -(t * F.log_softmax(logits, dim=1)).sum())


def test_nb02_closed_forms_match_library():
    for n in (2, 5, 16):
        for tau in (0.1, 0.2, 1.0):
            views = torch.eye(n, n + 3)
            assert math.isclose(float(npair_loss(views, views, tau=tau)), nb02.npair_identical_orthonormal(n, tau),
                                rel_tol=1e-5, abs_tol=1e-6)
            both = torch.cat([views, views])
            assert math.isclose(float(simclr_loss(both, both, tau=tau)), nb02.simclr_identical_orthonormal(n, tau),
                                rel_tol=1e-5, abs_tol=1e-6)
