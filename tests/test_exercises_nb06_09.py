"""Exercises of notebooks 06-09: every reference solution passes its checker; wrong or missing answers fail."""
import torch

from imix_teach.course.exercises import nb06, nb07, nb08, nb09, show_solution


def test_nb06_mix_any_domain(capsys):
    assert nb06.check_mix_any_domain(nb06.solution_mix_any)
    # forgetting the per-sample broadcast breaks (N, ...) inputs with (N,) lam
    assert not nb06.check_mix_any_domain(lambda x, lam, perm: lam * x + (1 - lam) * x[perm])
    assert not nb06.check_mix_any_domain(lambda x, lam, perm: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb06_masking_noise(capsys):
    assert nb06.check_masking_noise(nb06.solution_mask_rows)
    assert not nb06.check_masking_noise(lambda x, p, g: None)
    assert "not solved yet" in capsys.readouterr().out
    assert not nb06.check_masking_noise(lambda x, p, g: x)  # nothing masked
    # one mask for all calls (seeded afresh): views would be identical
    assert not nb06.check_masking_noise(lambda x, p, g: nb06.solution_mask_rows(x, p, torch.Generator().manual_seed(0)))
    # whole rows masked
    assert not nb06.check_masking_noise(lambda x, p, g: x * (torch.rand(x.shape[0], 1, generator=g) >= p))
    assert not nb06.check_masking_noise(lambda x, p, g: 1 / 0)  # a crash is a verdict


def test_nb07_pretext_accuracy(capsys):
    assert nb07.check_pretext_accuracy(nb07.solution_pretext_accuracy)
    # without normalisation the dot product prefers long vectors: wrong on the noisy cases
    assert not nb07.check_pretext_accuracy(
        lambda a, b: float(((a @ b.T).argmax(1) == torch.arange(a.shape[0])).float().mean()))
    assert not nb07.check_pretext_accuracy(lambda a, b: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb07_inputmix_coefficients():
    assert nb07.check_inputmix_coefficients(nb07.solution_inputmix_coefficients)
    assert not nb07.check_inputmix_coefficients(lambda l: l)  # plain Dirichlet: no principal input
    coef = nb07.solution_inputmix_coefficients(nb07._dirichlet_cases()[0][0])
    assert torch.allclose(coef.sum(1), torch.ones(coef.shape[0])) and bool((coef[:, 0] >= 0.5).all())


def test_nb08_gain_per_value(capsys):
    assert nb08.check_gain_per_value(nb08.solution_gain_per_value)
    assert not nb08.check_gain_per_value(lambda rows, metric: None)
    assert "not solved yet" in capsys.readouterr().out
    # a fraction instead of percentage points
    assert not nb08.check_gain_per_value(
        lambda rows, metric: {k: v / 100 for k, v in nb08.solution_gain_per_value(rows, metric).items()})
    # keeping the value that has no baseline
    assert not nb08.check_gain_per_value(
        lambda rows, metric: {**nb08.solution_gain_per_value(rows, metric), 2.0: 0.0})


def test_nb09_supervised_targets(capsys):
    assert nb09.check_supervised_targets(nb09.solution_supervised_targets)
    # rows not normalised
    assert not nb09.check_supervised_targets(lambda y: (y[:, None] == y[None, :]).float())
    assert not nb09.check_supervised_targets(lambda y: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb09_frechet_distance():
    assert nb09.check_frechet_distance(nb09.solution_frechet_distance)
    # only the mean term: wrong whenever the covariances differ
    assert not nb09.check_frechet_distance(lambda a, b: float(((a.mean(0) - b.mean(0)) ** 2).sum()))


def test_solutions_are_printable(capsys):
    for name in ("nb06.solution_mix_any", "nb06.solution_mask_rows", "nb07.solution_pretext_accuracy",
                 "nb07.solution_inputmix_coefficients", "nb08.solution_gain_per_value",
                 "nb09.solution_supervised_targets", "nb09.solution_frechet_distance"):
        show_solution(name)
        assert "def solution_" in capsys.readouterr().out
