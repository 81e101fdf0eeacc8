"""Exercises of notebooks 03-05: every reference solution passes its checker, wrong answers fail with a verdict."""
import torch
import torch.nn.functional as F

from imix_teach.course.exercises import nb03, nb04, nb05, show_solution
from imix_teach.losses import byol_loss, moco_loss


# ----------------------------------------------------------------------------- nb03
def test_nb03_solution_passes(capsys):
    assert nb03.check_imix_npair_loss(nb03.solution_imix_npair_loss)
    assert "[ok]" in capsys.readouterr().out


def test_nb03_stub_is_not_done_and_does_not_raise(capsys):
    assert not nb03.check_imix_npair_loss(lambda f, a, b, lam, perm, tau: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb03_wrong_answers_are_reported_with_the_mistake(capsys):
    def both_mixed(f, a, b, lam, perm, tau):
        return nb03.solution_imix_npair_loss(f, a, lam * b + (1 - lam) * b[perm], lam, perm, tau)

    def unmixed_targets(f, a, b, lam, perm, tau):
        logits = F.normalize(f(lam * a + (1 - lam) * a[perm]), dim=1) @ F.normalize(f(b), dim=1).T / tau
        return F.cross_entropy(logits, torch.arange(a.shape[0]))

    def swapped(f, a, b, lam, perm, tau):
        logits = F.normalize(f(lam * a + (1 - lam) * a[perm]), dim=1) @ F.normalize(f(b), dim=1).T / tau
        return (1 - lam) * F.cross_entropy(logits, torch.arange(a.shape[0])) + lam * F.cross_entropy(logits, perm)

    assert not nb03.check_imix_npair_loss(both_mixed)
    assert "both views were mixed" in capsys.readouterr().out
    assert not nb03.check_imix_npair_loss(unmixed_targets)
    assert "targets were not mixed" in capsys.readouterr().out
    assert not nb03.check_imix_npair_loss(swapped)
    assert "swapped" in capsys.readouterr().out
    assert not nb03.check_imix_npair_loss(lambda f, a, b, lam, perm, tau: 1 / 0)
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_nb03_reference_is_the_library_npair_method():
    from imix_teach.methods import NPair
    from imix_teach.mixing import sample_lambda
    from imix_teach.models import TabularMLP

    torch.manual_seed(0)
    method = NPair(TabularMLP(6, widths=(16, 16, 32)), proj_hidden=16, proj_dim=8).eval()
    a, b = torch.randn(6, 6), torch.randn(6, 6)
    loss = method(a, b, alpha=1.0, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    lam = float(sample_lambda(1.0, generator=g))
    perm = torch.randperm(6, generator=g)
    by_hand = nb03.solution_imix_npair_loss(method.embed, a, b, lam, perm, method.tau)
    assert torch.allclose(loss, by_hand, atol=1e-5)


# ----------------------------------------------------------------------------- nb04
def test_nb04_solutions_pass(capsys):
    assert nb04.check_nk_logits_and_targets(nb04.solution_nk_logits_and_targets)
    assert nb04.check_ema(nb04.solution_ema)
    assert nb04.check_ema_closed_form()
    assert "[x]" not in capsys.readouterr().out


def test_nb04_stubs_are_not_done(capsys):
    assert not nb04.check_nk_logits_and_targets(lambda q, k, mu, t, tau: None)
    assert not nb04.check_ema(lambda t, o, m: None)
    assert "not solved yet" in capsys.readouterr().out


def test_nb04_wrong_answers_are_reported(capsys):
    def queue_first(q, k, mu, t, tau):  # columns in the wrong order
        logits, padded = nb04.solution_nk_logits_and_targets(q, k, mu, t, tau)
        return torch.cat([logits[:, q.shape[0]:], logits[:, :q.shape[0]]], 1), padded

    def k_plus_one(q, k, mu, t, tau):  # the classic form has the wrong shape
        return nb04.k_plus_one_logits(q, k, mu, tau), F.pad(t, (0, mu.shape[0]))

    def no_padding(q, k, mu, t, tau):
        return nb04.solution_nk_logits_and_targets(q, k, mu, t, tau)[0], t

    for wrong in (queue_first, k_plus_one, no_padding):
        assert not nb04.check_nk_logits_and_targets(wrong)
    assert not nb04.check_nk_logits_and_targets(lambda q, k, mu, t, tau: q)
    assert not nb04.check_ema(lambda t, o, m: m * o + (1 - m) * t)
    out = capsys.readouterr().out
    assert "[x]" in out and "m multiplies the *target*" in out


def test_nb04_k_plus_one_with_identity_is_classic_moco():
    g = torch.Generator().manual_seed(0)
    q, k, mu = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    classic = F.cross_entropy(nb04.k_plus_one_logits(q, k, mu, 0.2), torch.zeros(4, dtype=torch.long))
    # (N+K)-way adds the other N - 1 keys as negatives, so its loss is larger.
    assert float(moco_loss(q, k, mu, tau=0.2)) > float(classic)


# ----------------------------------------------------------------------------- nb05
def test_nb05_solution_passes(capsys):
    assert nb05.check_byol_loss(nb05.solution_byol_loss)
    assert "[ok]" in capsys.readouterr().out


def test_nb05_stub_and_wrong_answers(capsys):
    assert not nb05.check_byol_loss(lambda p, f, v: None)
    assert "not solved yet" in capsys.readouterr().out
    assert not nb05.check_byol_loss(lambda p, f, v: nb05.byol_variants(p, f, v)["cosine to F v"])
    assert "re-normalised" in capsys.readouterr().out
    assert not nb05.check_byol_loss(lambda p, f, v: nb05.byol_variants(p, f, v)["squared distance"])
    assert "differs by a constant" in capsys.readouterr().out
    assert not nb05.check_byol_loss(lambda p, f, v: (v * (2 - 2 * p @ f.T)).sum(1).mean())  # no normalisation
    assert "[x]" in capsys.readouterr().out


def test_nb05_variants_linear_equals_library_and_squared_distance_has_same_gradient():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(5, 4, generator=g, requires_grad=True)
    f = torch.randn(5, 4, generator=g)
    v = 0.3 * torch.eye(5) + 0.7 * torch.eye(5)[torch.tensor([1, 0, 3, 2, 4])]
    variants = nb05.byol_variants(p, f, v)
    assert torch.allclose(variants["linear"], byol_loss(p, f, v), atol=1e-6)
    grad_lin, = torch.autograd.grad(variants["linear"], p)
    grad_sq, = torch.autograd.grad(nb05.byol_variants(p, f, v)["squared distance"], p)
    assert torch.allclose(grad_lin, grad_sq, atol=1e-6)


def test_show_solutions(capsys):
    for name in ("nb03.solution_imix_npair_loss", "nb04.solution_nk_logits_and_targets", "nb04.solution_ema",
                 "nb05.solution_byol_loss"):
        show_solution(name)
    assert capsys.readouterr().out.count("def solution_") == 4
