"""Notebook 04 (i-Mix on MoCo): the (N+K)-way logits and targets, and the EMA update, as exercises.

Exercise 1: :func:`check_nk_logits_and_targets` — build MoCo's (N+K)-way logits (queries against
the batch's keys, then the queue) and the virtual-label targets padded with zeros for the queue
(Eq. 8); the loss from them must equal the library's :func:`~imix_teach.losses.moco_loss`.
Exercise 2 (short): :func:`check_ema` — the EMA update theta_k <- m theta_k + (1 - m) theta_q,
checked against the library's :func:`~imix_teach.methods.ema_update`.

Also here: :func:`k_plus_one_logits`, the classic (K+1)-way logits of Eq. 7, used in the
notebook to show why its labels cannot be mixed.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...losses import moco_loss, soft_cross_entropy
from ...methods import ema_update
from ...mixing import mix_targets
from . import check_function, compare, not_solved


# ----------------------------------------------------------------------------- the classic form
def k_plus_one_logits(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo's classic (K+1)-way logits (Eq. 7): row i = [s(q_i, k_i), s(q_i, mu_1..K)] / tau. (N, 1 + K).

    Column 0 holds a *different* key in every row (row i's own k_i), so every row's label is
    "column 0": there is no column where instance j's key appears in row i, and no place to put
    the (1 - lam) share of a mixed label.
    """
    q, k, mu = F.normalize(queries, dim=1), F.normalize(keys, dim=1), F.normalize(queue, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    return torch.cat([positive, q @ mu.T], dim=1) / tau


# ----------------------------------------------------------------------------- exercise 1
def solution_nk_logits_and_targets(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor,
                                   targets: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N+K)-way logits and targets (Eq. 8). queries, keys: (N, D); queue: (K, D); targets: (N, N).

    Returns logits (N, N + K) = normalize(q) @ [normalize(keys); normalize(queue)].T / tau and
    targets (N, N + K) = [targets, zeros(N, K)]: the queue holds only negatives.
    """
    q = F.normalize(queries, dim=1)
    candidates = torch.cat([F.normalize(keys, dim=1), F.normalize(queue, dim=1)])  # (N + K, D), shared by all rows
    logits = q @ candidates.T / tau
    padded = torch.cat([targets, torch.zeros(targets.shape[0], queue.shape[0])], dim=1)
    return logits, padded


def _nk_cases() -> list[tuple]:
    g = torch.Generator().manual_seed(4)
    cases = []
    for n, k, d, tau in ((4, 6, 3, 0.2), (6, 10, 8, 0.5), (5, 3, 4, 0.07)):
        queries = 2 * torch.randn(n, d, generator=g)  # not normalised: the logits must normalise
        keys = queries + 0.5 * torch.randn(n, d, generator=g)
        queue = torch.randn(k, d, generator=g)
        perm = torch.randperm(n, generator=g)
        lam = float(torch.rand((), generator=g))
        cases.append((queries, keys, queue, torch.eye(n), tau))  # plain MoCo, (N+K)-way
        cases.append((queries, keys, queue, mix_targets(torch.eye(n), lam, perm), tau))  # i-Mix
    return cases


def _reference_logits(queries, keys, queue, targets, tau):
    return torch.cat([F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T,
                      F.normalize(queries, dim=1) @ F.normalize(queue, dim=1).T], dim=1) / tau


def check_nk_logits_and_targets(student: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """``student(queries, keys, queue, targets, tau) -> (logits, padded_targets)`` vs the library."""
    cases = _nk_cases()
    try:
        probe = student(*cases[0])
    except Exception as err:  # a student's bug is a verdict, not a crash
        print(f"[x] nk_logits_and_targets: raised {type(err).__name__}: {err}.")
        return False
    if probe is None:
        return not_solved("nk_logits_and_targets")
    if not (isinstance(probe, tuple) and len(probe) == 2):
        print("[x] nk_logits_and_targets: return a pair (logits, padded_targets).")
        return False

    def part(i):
        def get(*case):
            out = student(*case)
            return None if out is None else out[i]
        return get

    def loss_from_student(*case):
        logits, padded = student(*case)
        return soft_cross_entropy(torch.as_tensor(logits), torch.as_tensor(padded))

    ok = check_function("(N+K)-way logits", part(0), _reference_logits, cases, atol=1e-4,
                        hint="Columns: the N keys of the batch first, then the K queue entries; "
                             "normalise every row; divide by tau.")
    ok = ok and check_function("(N+K)-way targets", part(1),
                               lambda q, k, mu, t, tau: F.pad(t, (0, mu.shape[0])), cases,
                               hint="Keep the N target columns as they are and append K zero columns for the queue.")
    ok = ok and check_function("loss from your logits and targets", loss_from_student,
                               lambda q, k, mu, t, tau: moco_loss(q, k, mu, t, tau), cases, atol=1e-4)
    return ok


# ----------------------------------------------------------------------------- exercise 2
def solution_ema(target: torch.Tensor, online: torch.Tensor, m: float) -> torch.Tensor:
    """One EMA step of a parameter tensor: m * target + (1 - m) * online (the target moves slowly)."""
    return m * target + (1 - m) * online


def _library_ema(target: torch.Tensor, online: torch.Tensor, m: float) -> torch.Tensor:
    """Run the library's ema_update on one-parameter modules holding ``target`` and ``online``."""
    t_mod, o_mod = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    t_mod.weight = nn.Parameter(target.clone(), requires_grad=False)
    o_mod.weight = nn.Parameter(online.clone())
    ema_update(t_mod, o_mod, m)
    return t_mod.weight.detach()


def check_ema(student: Callable[..., torch.Tensor]) -> bool:
    """``student(target, online, m) -> new target`` vs the library's ema_update."""
    g = torch.Generator().manual_seed(5)
    target, online = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    cases = [(target, online, 0.99), (target, online, 0.9), (target, online, 0.0), (target, online, 1.0)]
    ok = check_function("ema", student, _library_ema, cases, atol=1e-6,
                        hint="theta_target <- m * theta_target + (1 - m) * theta_online; m = 1 freezes the target.")
    if not ok:
        try:
            swapped = student(target, online, 0.9)
            if swapped is not None and torch.allclose(torch.as_tensor(swapped), 0.9 * online + 0.1 * target):
                print("    hint: m multiplies the *target* (the slow copy), not the online weights.")
        except Exception:
            pass
    return ok


def check_ema_closed_form(m: float = 0.99, steps: int = 100) -> bool:
    """After ``steps`` EMA steps towards a constant online value 1 from 0, the target is 1 - m**steps."""
    t_mod, o_mod = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        t_mod.weight.zero_()
        o_mod.weight.fill_(1.0)
    for _ in range(steps):
        ema_update(t_mod, o_mod, m)
    return compare(f"EMA after {steps} steps with m={m}", t_mod.weight.detach().reshape(()), 1 - m ** steps)
